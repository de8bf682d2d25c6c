"""Simulator throughput benchmark: ``python -m simulators.bench [--json]``. Run by hand and recorded in
BENCHMARKS.md. Three figures per size: the batch API of the core (``Cluster.step``: arrays of replica targets and
offload shares in, per-cell outcome arrays out: ``batch_node_steps_per_s``), the env's batch API (``step_arrays``:
the same plus observations, masks and rewards for every node: ``batch_env_node_steps_per_s``), and the PettingZoo
ParallelEnv API with its per-agent dicts (``pettingzoo_agent_steps_per_s``).

Each size is a cluster of N nodes (cloud and edge, 8 services) under Poisson load; the policy is random over the
valid actions (changes every tick, the worst case for replica bookkeeping), drawn before timing starts.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import time
from typing import Any

import numpy as np

from simulators.env import SCALE_CHOICES, ClusterEnv
from simulators.scenarios import ScenarioSpec, compile_scenario

SIZES = (100, 1_000, 10_000)


def bench_scenario(nodes: int, services: int = 8, ticks: int = 400, seed: int = 0) -> ScenarioSpec:
    """A synthetic scenario of ``nodes`` nodes (7/8 cloud, 1/8 edge) and ``services`` services at ~50% load."""
    edge = max(nodes // 8, 1)
    replicas = 2 * nodes
    return ScenarioSpec.model_validate(
        {
            "name": f"bench-{nodes}",
            "seed": seed,
            "duration_s": ticks,
            "cluster": {
                "nodes": [
                    {"prefix": "cloud", "count": nodes - edge, "tier": "cloud", "cpus": 32, "mem_gb": 128},
                    {"prefix": "edge", "count": edge, "tier": "edge", "cpus": 8, "mem_gb": 32, "price_per_h": 0.1},
                ]
            },
            "services": [
                {
                    "name": f"svc{j}",
                    "work_ms": 40,
                    "slo_ms": 300,
                    "min_replicas": 1,
                    "max_replicas": 10 * nodes,
                    "initial_replicas": replicas,
                }
                for j in range(services)
            ],
            "workload": [{"service": f"svc{j}", "type": "poisson", "rps": replicas * 12.5} for j in range(services)],
            "events": [{"at_s": ticks // 2, "type": "straggler", "node": "cloud-0", "slowdown": 3, "duration_s": 60}],
        }
    )


def _random_actions(env: ClusterEnv, rng: np.random.Generator, count: int) -> list[np.ndarray]:
    """Random action batches (N, S+2); a masked choice is taken as hold by the env, as a policy's would not be."""
    n, s = env.n_nodes, env.n_services
    return [rng.integers(0, SCALE_CHOICES, size=(n, s + 2)) for _ in range(count)]


def measure(nodes: int, services: int = 8, min_seconds: float = 1.0) -> dict[str, Any]:
    scenario = compile_scenario(bench_scenario(nodes, services))
    env = ClusterEnv(scenario)
    rng = np.random.default_rng(0)
    batches = _random_actions(env, rng, 16)
    result: dict[str, Any] = {"nodes": nodes, "services": services}

    cluster = scenario.make_cluster()
    targets = [np.maximum(cluster.replicas() + rng.integers(-1, 2, cluster.warm.shape), 0) for _ in range(16)]
    offload = np.zeros(nodes)
    result["batch_node_steps_per_s"] = _rate(
        lambda k: cluster.step(targets[k % 16], offload), nodes, min_seconds, cluster.reset, cluster.horizon
    )

    env.reset_arrays()
    result["batch_env_node_steps_per_s"] = _rate(
        lambda k: env.step_arrays(batches[k % 16]), nodes, min_seconds, env.reset_arrays, env.max_ticks
    )

    agents = env.possible_agents
    dict_batches = [dict(zip(agents, b, strict=True)) for b in batches]
    env.reset()
    result["pettingzoo_agent_steps_per_s_default_gc"] = _rate(
        lambda k: env.step(dict_batches[k % 16]), nodes, min_seconds, env.reset, env.max_ticks
    )
    # What ama's long-running entry points do: freeze the start-up objects so the collector's full passes (set off
    # by the thousands of per-agent dicts each step) skip them.
    gc.collect()
    gc.freeze()
    env.reset()
    try:
        result["pettingzoo_agent_steps_per_s"] = _rate(
            lambda k: env.step(dict_batches[k % 16]), nodes, min_seconds, env.reset, env.max_ticks
        )
    finally:
        gc.unfreeze()
    return result


def _rate(step: Any, agents: int, min_seconds: float, reset: Any, horizon: int) -> float:
    """Agent-steps per second of ``step`` over at least ``min_seconds`` (resets excluded from the timing)."""
    for k in range(5):
        step(k)
    done_steps, elapsed, tick = 0, 0.0, 5
    while elapsed < min_seconds:
        if tick + 50 >= horizon:
            reset()
            tick = 0
        start = time.perf_counter()
        for k in range(50):
            step(k)
        elapsed += time.perf_counter() - start
        done_steps += 50
        tick += 50
    return round(done_steps * agents / elapsed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Simulator throughput: node-steps/s of the core and batch API, agent-steps/s through PettingZoo."
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated node counts (default: %(default)s)")
    parser.add_argument("--services", type=int, default=8, help="services per cluster (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum timed seconds per measurement (default: %(default)s)")
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",") if x]
    rows = [measure(n, args.services, args.seconds) for n in sizes]
    report = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "python": platform.python_version(), "results": rows}
    if args.json:
        print(json.dumps(report))
        return
    print(f"{'nodes':>7} {'batch node-steps/s':>18} {'env batch steps/s':>19} {'pettingzoo agent-steps/s':>25} {'(default gc)':>13}")
    for r in rows:
        print(
            f"{r['nodes']:>7} {r['batch_node_steps_per_s']:>18,} {r['batch_env_node_steps_per_s']:>19,}"
            f" {r['pettingzoo_agent_steps_per_s']:>25,} {r['pettingzoo_agent_steps_per_s_default_gc']:>13,}"
        )


if __name__ == "__main__":
    main()
