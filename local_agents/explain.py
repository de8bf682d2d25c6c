"""Plain-language explanations of local actions, made from the observed values that drove them and cheap enough for
thousands of actions per tick (no LLM). Called by the controllers (ServiceScaler's placement reasons, and the MARL
policy's actions) once per changed cell; feeds ActionReason.text and so the decision log.

    "api on cloud-7: 3 -> 4 replicas (hpa wants 12); queue 42, latency 810 ms over SLO 300 ms, node cpu 91%,
     120 req/s; weights sla 0.40 latency 0.20 cost 0.15"
"""

from __future__ import annotations

from simulators.cluster import Cluster
from simulators.rewards import RewardWeights


def cell_state(cluster: Cluster, i: int, j: int) -> str:
    """The cell's telemetry after the last tick: queue, latency against the SLO, node CPU, served rate."""
    o = cluster.out
    parts = []
    queue = float(cluster.queue[i, j])
    if queue >= 0.5:
        parts.append(f"queue {queue:.0f}")
    slo = float(cluster.slo_ms[j])
    if o.served.size and o.served[i, j] > 0:
        latency = float(o.latency_ms[i, j])
        relation = "over" if latency > slo else "within"
        parts.append(f"latency {latency:.0f} ms {relation} SLO {slo:.0f} ms")
    elif cluster.warm[i, j] == 0:
        parts.append("no warm replica here")
    if o.node_util.size:
        parts.append(f"node cpu {float(o.node_util[i]):.0%}")
    if o.served.size:
        parts.append(f"{float(o.served[i, j]) / cluster.tick_s:.0f} req/s")
    return ", ".join(parts)


def explain_cell_change(cluster: Cluster, i: int, j: int, before: int, after: int, why: str, weights: RewardWeights | None) -> str:
    """One sentence for a replica change on one node."""
    head = f"{cluster.service_names[j]} on {cluster.node_names[i]}: {before} -> {after} replicas"
    if why:
        head += f" ({why})"
    state = cell_state(cluster, i, j)
    text = f"{head}; {state}" if state else head
    if weights is not None:
        text += f"; weights {weights.describe(top=3)}"
    return text


def _bench(nodes: int, seconds: float) -> dict[str, float]:
    """Explanations per second for a cluster of ``nodes`` nodes x 8 services after one busy tick."""
    import time

    from simulators.bench import bench_scenario
    from simulators.scenarios import compile_scenario

    cluster = compile_scenario(bench_scenario(nodes)).make_cluster()
    cluster.step()
    weights = RewardWeights()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for k in range(1000):
            explain_cell_change(cluster, k % nodes, k % cluster.n_services, 3, 4, "marl: scale up", weights)
        done += 1000
    rate = done / (time.perf_counter() - start)
    return {"nodes": nodes, "explanations_per_s": round(rate), "ms_for_every_node_once": round(nodes / rate * 1000, 2)}


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Explanation throughput: sentences per second for changed cells (no LLM).")
    parser.add_argument("--nodes", type=int, default=1000, help="cluster size (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds (default: %(default)s)")
    cli = parser.parse_args()
    print(json.dumps(_bench(cli.nodes, cli.seconds)))
