"""Weight responsiveness of the MARL node agents: ``python -m evals.responsiveness [--policy P] [--out DIR]``. Run by
hand for BENCHMARKS.md (and with a tiny budget by the tests); reads a scenario and the policy, writes
``responsiveness.json`` and ``responsiveness.png``.

The same scenario, seed and policy randomness run twice per experiment: once with the default weights throughout,
once with one weight multiplied (energy x3, then SLA x3) from ``switch_s`` on, as a manager's rewrite would do. The
runs are identical up to the switch, so every difference after it is the rewrite's effect: energy used (all of it,
and the part above the nodes' idle power, which is all that replicas can change while nodes stay on), nodes powered
(the agents put empty nodes to sleep), replicas, and SLA violations over the ``window_s`` seconds after the switch,
rewritten vs default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from local_agents.act import load_policy
from local_agents.marl import MarlController
from simulators.rewards import RewardWeights
from simulators.scenarios import SCENARIO_DIR, load_scenario


def trace(
    scenario_path: Path, duration_s: float, policy: Any, seed: int, switch_s: float, weights_after: RewardWeights | None
) -> dict[str, np.ndarray]:
    """Per-tick energy (J), SLA-violating requests and finished requests of one run; the weights change at switch_s."""
    scenario = load_scenario(scenario_path, seed=seed, duration_s=duration_s)
    cluster = scenario.make_cluster()
    controller = MarlController(policy, seed=seed, explain=False)
    controller.reset(cluster)
    energy, dynamic, violations, finished, replicas, powered_nodes = [], [], [], [], [], []
    for _ in range(cluster.horizon):
        if weights_after is not None and cluster.time_s >= switch_s and controller.weights != weights_after:
            controller.set_weights(weights_after)
        decision = controller.act(cluster)
        decision.apply(cluster)
        o = cluster.out
        energy.append(float(o.node_power_w.sum()) * cluster.tick_s)
        powered = o.node_power_w > 0
        dynamic.append(float((o.node_power_w - cluster.power_idle * powered).sum()) * cluster.tick_s)
        violations.append(float(o.violations.sum()))
        finished.append(float(o.served.sum() + o.drops.sum()))
        replicas.append(float(cluster.replicas().sum()))
        powered_nodes.append(float(powered.sum()))
    series = {"energy_j": energy, "dynamic_energy_j": dynamic, "violations": violations, "finished": finished, "replicas": replicas,
              "powered_nodes": powered_nodes}  # fmt: skip
    return {k: np.array(v) for k, v in series.items()}


def experiment(
    scenario: Path, duration_s: float, policy: Any, seeds: list[int], switch_s: float, window_s: float, component: str, factor: float
) -> dict[str, Any]:
    base = RewardWeights()
    rewritten = base.replace(**{component: getattr(base, component) * factor})
    rows = []
    for seed in seeds:
        default = trace(scenario, duration_s, policy, seed, switch_s, None)
        changed = trace(scenario, duration_s, policy, seed, switch_s, rewritten)
        window = slice(int(switch_s), int(switch_s + window_s))
        rows.append(
            {
                "seed": seed,
                "energy_change": float(changed["energy_j"][window].sum() / max(default["energy_j"][window].sum(), 1e-9) - 1.0),
                "dynamic_energy_change": float(
                    changed["dynamic_energy_j"][window].sum() / max(default["dynamic_energy_j"][window].sum(), 1e-9) - 1.0
                ),
                "replicas_change": float(changed["replicas"][window].mean() / max(default["replicas"][window].mean(), 1e-9) - 1.0),
                "powered_nodes_default": float(default["powered_nodes"][window].mean()),
                "powered_nodes_rewritten": float(changed["powered_nodes"][window].mean()),
                "violation_rate_default": float(default["violations"][window].sum() / max(default["finished"][window].sum(), 1e-9)),
                "violation_rate_rewritten": float(changed["violations"][window].sum() / max(changed["finished"][window].sum(), 1e-9)),
                "series": {label: {k: v.tolist() for k, v in run.items()} for label, run in (("default", default), ("rewritten", changed))},
            }
        )
    return {
        "component": component, "factor": factor, "weights_after": rewritten.as_dict(), "switch_s": switch_s, "window_s": window_s,
        "energy_change_mean": float(np.mean([r["energy_change"] for r in rows])),
        "dynamic_energy_change_mean": float(np.mean([r["dynamic_energy_change"] for r in rows])),
        "replicas_change_mean": float(np.mean([r["replicas_change"] for r in rows])),
        "powered_nodes_default_mean": float(np.mean([r["powered_nodes_default"] for r in rows])),
        "powered_nodes_rewritten_mean": float(np.mean([r["powered_nodes_rewritten"] for r in rows])),
        "violation_rate_default_mean": float(np.mean([r["violation_rate_default"] for r in rows])),
        "violation_rate_rewritten_mean": float(np.mean([r["violation_rate_rewritten"] for r in rows])),
        "runs": rows,
    }  # fmt: skip


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Per experiment, the mean over seeds of what the rewrite should move (energy per tick, or SLA-violating
    requests per tick, a 10 s moving average), default vs rewritten weights; for the energy rewrite also the nodes
    powered."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 4), squeeze=False)
    for ax, result in zip(axes[0], results, strict=True):
        key = "energy_j" if result["component"] == "energy" else "violations"
        for label in ("default", "rewritten"):
            mean = np.mean([run["series"][label][key] for run in result["runs"]], axis=0)
            smooth = np.convolve(mean, np.ones(10) / 10, mode="valid")
            ax.plot(np.arange(smooth.size) + 9, smooth if key == "violations" else smooth / 1000.0, label=f"{label} weights")
        if key == "energy_j":
            nodes = ax.twinx()
            for label, style in (("default", ":"), ("rewritten", "--")):
                mean = np.mean([run["series"][label]["powered_nodes"] for run in result["runs"]], axis=0)
                nodes.plot(mean, style, color="grey", label=f"nodes powered, {label}")
            nodes.set_ylabel("nodes powered")
            nodes.legend(fontsize=8, loc="lower left")
        ax.axvline(result["switch_s"], color="grey", linestyle="--", label=f"{result['component']} weight x{result['factor']:g}")
        ax.axvspan(result["switch_s"], result["switch_s"] + result["window_s"], color="grey", alpha=0.1)
        title = f"{result['component']} weight x{result['factor']:g} at t={result['switch_s']:.0f}s (mean of {len(result['runs'])} seeds)"
        ylabel = "energy per tick (kJ)" if key == "energy_j" else "SLA-violating requests per tick"
        ax.set(title=title, xlabel="simulated seconds", ylabel=ylabel)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Does a manager's weight rewrite change the MARL agents' behaviour at once?")
    parser.add_argument("--policy", type=Path, default=None, help="policy .npz (default: the shipped one)")
    parser.add_argument("--scenario", type=Path, default=SCENARIO_DIR / "spike-then-failure.yaml", help="scenario (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seed offsets from the scenario's seed (default: %(default)s)")
    parser.add_argument("--switch-s", type=float, default=240.0, help="when the weight changes (default: %(default)s)")
    parser.add_argument("--window-s", type=float, default=60.0, help="seconds after the switch that are compared (default: %(default)s)")
    parser.add_argument("--duration-s", type=float, default=None, help="cut the scenario (default: switch + window + 60 s)")
    parser.add_argument("--out", type=Path, default=Path("out/responsiveness"), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    duration = args.duration_s or args.switch_s + args.window_s + 60.0
    base = load_scenario(args.scenario, duration_s=duration)
    args.out.mkdir(parents=True, exist_ok=True)
    seeds = [base.spec.seed + int(k) for k in args.seeds.split(",")]
    results = [
        experiment(args.scenario, duration, policy, seeds, args.switch_s, args.window_s, "energy", 3.0),
        experiment(args.scenario, duration, policy, seeds, args.switch_s, args.window_s, "sla", 3.0),
    ]
    (args.out / "responsiveness.json").write_text(json.dumps(results))
    plot(results, args.out / "responsiveness.png")
    for r in results:
        print(
            f"{r['component']} x{r['factor']:g} at {r['switch_s']:.0f}s, next {r['window_s']:.0f}s over {len(seeds)} seeds: "
            f"energy {r['energy_change_mean']:+.1%} (above idle power {r['dynamic_energy_change_mean']:+.1%}), "
            f"nodes powered {r['powered_nodes_default_mean']:.1f} -> {r['powered_nodes_rewritten_mean']:.1f}, "
            f"replicas {r['replicas_change_mean']:+.1%}, "
            f"SLA violations {r['violation_rate_default_mean']:.2%} -> {r['violation_rate_rewritten_mean']:.2%}"
        )
    print(f"plot: {args.out / 'responsiveness.png'}")


if __name__ == "__main__":
    main()
