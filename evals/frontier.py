"""SLA-cost frontiers on a suite: ``python -m evals.frontier [--controllers marl,node-rule,FILE] [--factors ...]``.
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
"""(scenario file, controller label, weight factor, seed offset, duration cut, policy file or None)."""

Entry = tuple[str, str, str | None]
"""(label, controller name, policy file): ``marl`` (the shipped policy), ``node-rule``, or a policy file."""


def parse_controllers(text: str, default_policy: str | None) -> list[Entry]:
    """``--controllers``: comma-separated ``marl``, ``node-rule`` or policy files (``LABEL=FILE`` to name one; a bare
    file is labelled by its folder)."""
    entries: list[Entry] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        label, _, value = item.rpartition("=") if "=" in item else ("", "", item)
        if value in ("marl", "node-rule"):
            entries.append((label or value, value, default_policy if value == "marl" else None))
        elif value.endswith(".npz"):
            if not Path(value).is_file():
                raise ValueError(f"--controllers: no policy file {value}")
            entries.append((label or Path(value).parent.name, "marl", value))
        else:
            raise ValueError(f"--controllers: {item!r} is not marl, node-rule or a policy .npz")
    if len({label for label, _, _ in entries}) != len(entries):
        raise ValueError("--controllers: two entries share a label; name them LABEL=FILE")
    return entries


def run_task(task: Task, component: str, kinds: dict[str, str] | None = None) -> dict[str, Any]:
    """One run: HPA, or a weight-conditioned controller with ``component``'s weight scaled by the factor from the
    first tick (``kinds`` maps a label to ``marl`` or ``node-rule``; absent: ``marl``)."""
    from local_agents.marl import MarlController
    from local_agents.registry import make_controller

    file, label, factor, offset, duration_s, policy = task
    base = load_scenario(file, duration_s=duration_s)
    scenario = compile_scenario(base.spec.model_copy(update={"seed": base.spec.seed + offset}), base.path)
    defaults = RewardWeights()
    weights = defaults.replace(**{component: getattr(defaults, component) * factor})
    kind = "hpa" if label == "hpa" else (kinds or {}).get(label, "marl")
    if kind == "hpa":
        controller = make_controller("hpa", seed=scenario.spec.seed)
    elif kind == "node-rule":
        controller = make_controller("node-rule", seed=scenario.spec.seed)
        controller.set_weights(weights)  # type: ignore[attr-defined]
    else:
        controller = MarlController(policy, seed=scenario.spec.seed, weights=weights, explain=False)
    summary = run_controller(scenario, controller, keep_series=False)[0].summary()
    return {"file": file, "controller": label, "factor": factor, "offset": offset,
            "violation_minutes": summary["sla_violation_minutes"], "cost": summary["cost"]}  # fmt: skip


def per_scenario(rows: list[dict[str, Any]], label: str, factor: float) -> dict[str, tuple[float, float]]:
    """Scenario -> (mean violation minutes over seeds, mean per-seed cost over HPA's), for one controller and factor."""
    hpa = {(r["file"], r["offset"]): r for r in rows if r["controller"] == "hpa"}
    minutes: dict[str, list[float]] = {}
    ratios: dict[str, list[float]] = {}
    for r in rows:
        if r["controller"] != label or r["factor"] != factor:
            continue
        minutes.setdefault(r["file"], []).append(r["violation_minutes"])
        base = hpa[(r["file"], r["offset"])]["cost"]
        if base > 0:
            ratios.setdefault(r["file"], []).append(r["cost"] / base)
    return {f: (float(np.mean(minutes[f])), float(np.mean(ratios[f])) if f in ratios else float("nan")) for f in minutes}


def _aggregate(values: list[tuple[float, float]]) -> tuple[float, float]:
    """(total violation minutes, geometric-mean cost ratio), as the eval report aggregates."""
    return sum(v for v, _ in values), geometric_mean([c for _, c in values if c == c]) or float("nan")


def frontier(rows: list[dict[str, Any]], factors: list[float], label: str = "marl") -> list[dict[str, float]]:
    """Per factor, against HPA, as the eval report aggregates (evals.report): violation minutes as the total of the
    scenarios' means over seeds, cost as the geometric mean over scenarios of the mean per-seed ratio."""
    hpa = {(r["file"], r["offset"]): r for r in rows if r["controller"] == "hpa"}
    files = sorted({f for f, _ in hpa})
    hpa_minutes = sum(float(np.mean([r["violation_minutes"] for (g, _), r in hpa.items() if g == f])) for f in files)
    points = []
    for factor in factors:
        total, cost = _aggregate(list(per_scenario(rows, label, factor).values()))
        points.append({"controller": label, "factor": factor, "violation_minutes": total, "hpa_violation_minutes": hpa_minutes,
                       "violation_minutes_vs_hpa": total / max(hpa_minutes, 1e-9), "cost_vs_hpa": cost})  # fmt: skip
    return points


def _pareto(points: list[tuple[float, float]]) -> np.ndarray:
    """The efficient (cost, violation minutes) points, cheapest first, each with fewer violations than all cheaper."""
    kept: list[tuple[float, float]] = []
    for cost, minutes in sorted(points):
        if not kept or minutes < kept[-1][1]:
            kept.append((cost, minutes))
    return np.asarray(kept)


def gaps(learned: tuple[float, float], reference: list[tuple[float, float]]) -> tuple[float, float]:
    """How far a (cost, violation minutes) point sits below the reference's frontier (its efficient points joined by
    straight lines): (violation minutes minus the frontier's at equal cost, cost minus the frontier's at equal
    violation minutes); negative is better. Beyond the frontier's ends the comparison is made only where it cannot
    flatter the learned point (cheaper than every reference point, or fewer violations than every one); elsewhere
    NaN."""
    front = _pareto(reference)
    cost, minutes = learned
    costs, front_minutes = front[:, 0], front[:, 1]
    at_cost = float(np.interp(cost, costs, front_minutes)) if cost <= costs[-1] else float("nan")
    by_minutes = front[::-1]  # fewest violations first
    at_minutes = float(np.interp(minutes, by_minutes[:, 1], by_minutes[:, 0])) if minutes <= by_minutes[-1, 1] else float("nan")
    return minutes - at_cost, cost - at_minutes


def compare(
    rows: list[dict[str, Any]], learned: str, reference: str, factors: list[float], resamples: int = 2000, seed: int = 0
) -> list[dict[str, float]]:
    """For each factor of ``learned``: its gaps to ``reference``'s frontier (over the same factors), with 95%
    bootstrap CIs from resampling the scenarios (paired: both controllers ran the same scenarios and seeds). Below the
    frontier when either CI lies wholly under zero."""
    tables = {(label, f): per_scenario(rows, label, f) for label in (learned, reference) for f in factors}
    files = sorted(set.intersection(*(set(t) for t in tables.values())))
    rng = np.random.default_rng(seed)
    draws = [np.arange(len(files))] + [rng.integers(len(files), size=len(files)) for _ in range(resamples)]

    def cost_and_minutes(label: str, factor: float, pick: list[str]) -> tuple[float, float]:
        minutes, cost = _aggregate([tables[(label, factor)][p] for p in pick])
        return cost, minutes

    samples = np.zeros((len(draws), len(factors), 2))  # per draw and factor: the two gaps
    for d, idx in enumerate(draws):
        pick = [files[i] for i in idx]
        front = [cost_and_minutes(reference, f, pick) for f in factors]
        for j, factor in enumerate(factors):
            samples[d, j] = gaps(cost_and_minutes(learned, factor, pick), front)
    results = []
    for j, factor in enumerate(factors):
        values = samples[:, j]
        row: dict[str, float] = {"factor": factor}
        for k, name in enumerate(("minutes_at_equal_cost", "cost_at_equal_minutes")):
            observed, spread = values[0, k], values[1:, k]
            spread = spread[~np.isnan(spread)]
            low, high = np.percentile(spread, [2.5, 97.5]) if spread.size > 0.9 * resamples else (float("nan"),) * 2
            row.update({name: float(observed), f"{name}_low": float(low), f"{name}_high": float(high)})
        row["below"] = float(row["minutes_at_equal_cost_high"] < 0 or row["cost_at_equal_minutes_high"] < 0)
        results.append(row)
    return results


def plot(points: list[dict[str, Any]], component: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.fill_between([0, 1.0], 0, 0.5, color="tab:green", alpha=0.12, label="target: ≤ 0.5x HPA's violation min at ≤ 1.0x its cost")
    labels = list(dict.fromkeys(p["controller"] for p in points))
    for label in labels:
        mine = [p for p in points if p["controller"] == label]
        xs, ys = [p["cost_vs_hpa"] for p in mine], [p["violation_minutes_vs_hpa"] for p in mine]
        ax.plot(xs, ys, "o-", label=f"{label}, {component} weight scaled")
        for p in mine:
            ax.annotate(f"x{p['factor']:g}", (p["cost_vs_hpa"], p["violation_minutes_vs_hpa"]), textcoords="offset points", xytext=(5, 4),
                        fontsize=7)  # fmt: skip
    ax.plot([1.0], [1.0], "s", color="tab:red", label="HPA")
    xs_all = [p["cost_vs_hpa"] for p in points]
    ys_all = [p["violation_minutes_vs_hpa"] for p in points]
    title = f"SLA-cost frontier as the {component} weight moves"
    ax.set(xlabel="geo-mean cost / HPA's", ylabel="SLA-violation minutes / HPA's", title=title)
    ax.set_xlim(min(0.8, *xs_all) - 0.05, max(1.1, *xs_all) + 0.05)
    ax.set_ylim(0, max(1.1, *ys_all) + 0.05)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Where weight-conditioned controllers sit between SLA and cost as one reward weight moves; with the "
        "node rule among them, whether each learned policy is below the node rule's frontier (95% bootstrap CIs)."
    )
    parser.add_argument("--policy", type=Path, default=None, help="policy .npz that 'marl' runs (default: the shipped one)")
    parser.add_argument("--controllers", default="marl",
                        help="comma-separated: marl, node-rule or policy files, LABEL=FILE to name one (default: %(default)s)")  # fmt: skip
    parser.add_argument("--suite", default="standard", help="scenario suite (default: %(default)s)")
    parser.add_argument("--component", default="cost", choices=REWARD_COMPONENTS, help="the weight to scale (default: %(default)s)")
    parser.add_argument("--factors", default="1,2,3,4", help="comma-separated factors on that weight (default: %(default)s)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per scenario: its own + 0..N-1 (default: %(default)s)")
    parser.add_argument("--seed-offset", type=int, default=0,
                        help="first seed offset (default: %(default)s; the trainer's validation seeds are +500)")  # fmt: skip
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
    try:
        entries = parse_controllers(args.controllers, str(args.policy) if args.policy else None)
    except ValueError as exc:
        parser.error(str(exc))
    if not entries:
        parser.error("--controllers: name at least one")
    files = [str(f) for f in scenario_files(args.suite)]
    if not files:
        parser.error(f"--suite: no scenario files in suite {args.suite!r}")
    offsets = range(args.seed_offset, args.seed_offset + args.seeds)
    kinds = {label: kind for label, kind, _ in entries}
    tasks: list[Task] = [(f, "hpa", 1.0, k, args.duration_s, None) for f in files for k in offsets]
    tasks += [(f, label, x, k, args.duration_s, policy) for label, _, policy in entries for f in files for x in factors for k in offsets]
    from ui.cli import progress_bar

    rows = []
    with progress_bar("runs") as bar, ProcessPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        job = bar.add_task("frontier", total=len(tasks))
        for row in pool.map(run_task, tasks, [args.component] * len(tasks), [kinds] * len(tasks)):
            rows.append(row)
            bar.advance(job)
    points = [p for label, _, _ in entries for p in frontier(rows, factors, label)]
    learned = [label for label, kind, _ in entries if kind == "marl"]
    comparisons = {label: compare(rows, label, "node-rule", factors) for label in learned} if "node-rule" in kinds else {}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"component": args.component, "suite": args.suite, "seeds": list(offsets), "controllers": entries, "points": points,
              "against_node_rule": comparisons, "runs": rows}  # fmt: skip
    (args.out / "frontier.json").write_text(json.dumps(report))
    plot(points, args.component, args.out / "frontier.png")
    for p in points:
        meets = p["violation_minutes_vs_hpa"] <= 0.5 and p["cost_vs_hpa"] <= 1.0
        print(
            f"{p['controller']}: {args.component} weight x{p['factor']:g}: violation minutes {p['violation_minutes']:.1f} "
            f"({p['violation_minutes_vs_hpa']:.2f}x HPA's {p['hpa_violation_minutes']:.1f}), "
            f"geo-mean cost {p['cost_vs_hpa']:.3f}x HPA's{' — in the target region' if meets else ''}"
        )
    for label, rows_ in comparisons.items():
        for c in rows_:
            print(
                f"{label} x{c['factor']:g} against the node rule's frontier: violation minutes at equal cost "
                f"{c['minutes_at_equal_cost']:+.2f} [{c['minutes_at_equal_cost_low']:+.2f}, {c['minutes_at_equal_cost_high']:+.2f}], "
                f"cost at equal violation minutes {c['cost_at_equal_minutes']:+.3f} "
                f"[{c['cost_at_equal_minutes_low']:+.3f}, {c['cost_at_equal_minutes_high']:+.3f}]"
                f"{' — below it' if c['below'] else ''}"
            )
    print(f"plot: {args.out / 'frontier.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
