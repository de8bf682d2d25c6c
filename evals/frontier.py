"""The MARL policy's SLA-cost frontier on a suite: ``python -m evals.frontier [--component cost] [--factors ...]``.
Run by hand for BENCHMARKS.md (and with a tiny budget by the tests); reads the scenario files and a policy, writes
``frontier.json`` and ``frontier.png``.

The policy is weight-conditioned, so one policy has many operating points: the weights the manager (or an operator)
sets move it along a frontier between SLA and cost. Each factor scales one reward weight (the others at their
defaults) for a whole run of every scenario and seed; HPA runs once per scenario and seed as the reference. Per
factor: total SLA-violation minutes against HPA's, and the geometric mean over scenarios of cost against HPA's (each
scenario weighing the same, by its mean per-seed ratio: as in the eval report). The plot marks the target region (at
most half HPA's violation minutes at no more than its cost).
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from evals.report import geometric_mean
from evals.runner import run_controller
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from simulators.scenarios import compile_scenario, load_scenario, scenario_files

Task = tuple[str, str, float, int, float | None, str | None]
"""(scenario file, "hpa" or "marl", weight factor, seed offset, duration cut, policy file)."""


def run_task(task: Task, component: str) -> dict[str, Any]:
    """One run: HPA, or the policy with ``component``'s weight scaled by the factor from the first tick."""
    from local_agents.marl import MarlController
    from local_agents.registry import make_controller

    file, name, factor, offset, duration_s, policy = task
    base = load_scenario(file, duration_s=duration_s)
    scenario = compile_scenario(base.spec.model_copy(update={"seed": base.spec.seed + offset}), base.path)
    if name == "hpa":
        controller = make_controller("hpa", seed=scenario.spec.seed)
    else:
        defaults = RewardWeights()
        weights = defaults.replace(**{component: getattr(defaults, component) * factor})
        controller = MarlController(policy, seed=scenario.spec.seed, weights=weights, explain=False)
    summary = run_controller(scenario, controller, keep_series=False)[0].summary()
    return {"file": file, "controller": name, "factor": factor, "offset": offset,
            "violation_minutes": summary["sla_violation_minutes"], "cost": summary["cost"]}  # fmt: skip


def frontier(rows: list[dict[str, Any]], factors: list[float]) -> list[dict[str, float]]:
    """Per factor, against HPA, as the eval report aggregates (evals.report): violation minutes as the total of the
    scenarios' means over seeds, cost as the geometric mean over scenarios of the mean per-seed ratio."""
    hpa = {(r["file"], r["offset"]): r for r in rows if r["controller"] == "hpa"}
    files = sorted({f for f, _ in hpa})

    def scenario_mean(values: dict[str, list[float]]) -> dict[str, float]:
        return {f: float(np.mean(v)) for f, v in values.items()}

    hpa_minutes = sum(scenario_mean({f: [r["violation_minutes"] for (g, _), r in hpa.items() if g == f] for f in files}).values())
    points = []
    for factor in factors:
        runs = [r for r in rows if r["controller"] == "marl" and r["factor"] == factor]
        minutes: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for r in runs:
            minutes.setdefault(r["file"], []).append(r["violation_minutes"])
            base = hpa[(r["file"], r["offset"])]["cost"]
            if base > 0:
                ratios.setdefault(r["file"], []).append(r["cost"] / base)
        total = sum(scenario_mean(minutes).values())
        cost = geometric_mean(list(scenario_mean(ratios).values())) or float("nan")
        points.append({"factor": factor, "violation_minutes": total, "hpa_violation_minutes": hpa_minutes,
                       "violation_minutes_vs_hpa": total / max(hpa_minutes, 1e-9), "cost_vs_hpa": cost})  # fmt: skip
    return points


def plot(points: list[dict[str, float]], component: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.fill_between([0, 1.0], 0, 0.5, color="tab:green", alpha=0.12, label="target: ≤ 0.5x HPA's violation min at ≤ 1.0x its cost")
    xs = [p["cost_vs_hpa"] for p in points]
    ys = [p["violation_minutes_vs_hpa"] for p in points]
    ax.plot(xs, ys, "o-", color="tab:blue", label=f"MARL policy, {component} weight scaled")
    for p in points:
        ax.annotate(f"x{p['factor']:g}", (p["cost_vs_hpa"], p["violation_minutes_vs_hpa"]), textcoords="offset points", xytext=(5, 4))
    ax.plot([1.0], [1.0], "s", color="tab:red", label="HPA")
    title = f"SLA-cost frontier as the {component} weight moves"
    ax.set(xlabel="geo-mean cost / HPA's", ylabel="SLA-violation minutes / HPA's", title=title)
    ax.set_xlim(min(0.8, *xs) - 0.05, max(1.1, *xs) + 0.05)
    ax.set_ylim(0, max(1.1, *ys) + 0.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Where the MARL policy sits between SLA and cost as one reward weight moves.")
    parser.add_argument("--policy", type=Path, default=None, help="policy .npz (default: the shipped one)")
    parser.add_argument("--suite", default="standard", help="scenario suite (default: %(default)s)")
    parser.add_argument("--component", default="cost", choices=REWARD_COMPONENTS, help="the weight to scale (default: %(default)s)")
    parser.add_argument("--factors", default="1,2,3,4", help="comma-separated factors on that weight (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario: its own + 0..N-1 (default: %(default)s)")
    parser.add_argument("--duration-s", type=float, default=None, help="cut every scenario (default: whole runs)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("out/frontier"), help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        factors = [float(x) for x in args.factors.split(",")]
    except ValueError:
        parser.error(f"--factors: comma-separated numbers, got {args.factors!r}")
    if any(f <= 0 for f in factors):
        parser.error("--factors: every factor must be > 0")
    files = [str(f) for f in scenario_files(args.suite)]
    if not files:
        parser.error(f"--suite: no scenario files in suite {args.suite!r}")
    policy = str(args.policy) if args.policy else None
    tasks: list[Task] = [(f, "hpa", 1.0, k, args.duration_s, None) for f in files for k in range(args.seeds)]
    tasks += [(f, "marl", x, k, args.duration_s, policy) for f in files for x in factors for k in range(args.seeds)]
    from ui.cli import progress_bar

    rows = []
    with progress_bar("runs") as bar, ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        job = bar.add_task("frontier", total=len(tasks))
        for row in pool.map(run_task, tasks, [args.component] * len(tasks)):
            rows.append(row)
            bar.advance(job)
    points = frontier(rows, factors)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "frontier.json").write_text(json.dumps({"component": args.component, "suite": args.suite, "seeds": args.seeds,
                                                         "points": points, "runs": rows}))  # fmt: skip
    plot(points, args.component, args.out / "frontier.png")
    for p in points:
        meets = p["violation_minutes_vs_hpa"] <= 0.5 and p["cost_vs_hpa"] <= 1.0
        print(
            f"{args.component} weight x{p['factor']:g}: violation minutes {p['violation_minutes']:.1f} "
            f"({p['violation_minutes_vs_hpa']:.2f}x HPA's {p['hpa_violation_minutes']:.1f}), "
            f"geo-mean cost {p['cost_vs_hpa']:.3f}x HPA's{' — in the target region' if meets else ''}"
        )
    print(f"plot: {args.out / 'frontier.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
