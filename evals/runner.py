"""The eval runner: every controller on every scenario of a suite, on the same seeds, in worker processes. Called by
``ama eval``; writes DIR/results.json (one record per run), DIR/series/*.json (downsampled time series for the
plots), then evals.report's DIR/report.md and PNG plots.

A scenario that fails validation is reported with its file and field and the others still run; a controller that
crashes on one run is recorded as failed with its error and the rest continue. Failed expectations are results, not
errors.

``bound`` is a pseudo-controller: it runs no simulation. Its record holds evals.bound's frontier for the scenario at
the seed (the least cost any controller can run it at while finishing a given number of requests within their SLO)
under ``metrics["bound"]``, and, as its ``cost`` / ``ok_requests`` / ``sla_violation_rate``, the frontier point at a
violation level of evals.bound.REPORTED_LEVEL (there the violation rate is the share of arrivals not finished
within their SLO). Every ordinary record's ``ok_requests`` is what evals.report compares with that frontier.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.bound import REPORTED_LEVEL, compile_relaxation, frontier
from evals.metrics import check_expectations, downsample, recovery_threshold, run_metrics
from local_agents.controllers import Controller
from local_agents.registry import make_controller
from simulators.errors import ConfigError, InputError
from simulators.metrics import RunRecorder
from simulators.scenarios import load_scenario, scenario_files

BOUND = "bound"
"""The pseudo-controller whose record is the scenario's cost lower bound (evals.bound), not a run."""
PSEUDO_CONTROLLERS = (BOUND,)
"""Names ``ama eval --controllers`` takes that are not local_agents.registry controllers."""


@dataclass(frozen=True)
class RunTask:
    file: str
    controller: str
    seed: int
    out_dir: str
    placement: str = "least-loaded"
    duration_s: float | None = None


@dataclass
class SuitePlan:
    """What a suite run will do: valid scenarios with their seeds, and the invalid ones with their errors."""

    scenarios: list[dict[str, Any]]
    tasks: list[RunTask]
    first_seed: int = 0
    """The tasks' seeds are each scenario's own seed + first_seed .. first_seed + seeds - 1."""


def plan_suite(
    suite: str | None,
    controllers: Sequence[str],
    seeds: int,
    out_dir: Path,
    files: Sequence[Path] | None = None,
    duration_s: float | None = None,
    placement: str = "least-loaded",
    first_seed: int = 0,
) -> SuitePlan:
    """Validate the suite's scenarios and list the runs: each controller on each valid scenario, seeds
    ``scenario.seed + k`` for ``first_seed <= k < first_seed + seeds``, so every controller sees the same arrivals
    (a ``first_seed`` away from 0, e.g. local_agents.mappo.VALIDATION_SEED_OFFSET, selects among candidates on seeds
    the reported test runs never use)."""
    paths = list(files) if files is not None else scenario_files(suite)
    if not paths:
        raise InputError(f"suite {suite!r} has no scenarios (scenario files list their suites under 'suites:')")
    scenarios, tasks = [], []
    for path in paths:
        try:
            scenario = load_scenario(path, duration_s=duration_s)
        except InputError as exc:
            scenarios.append({"name": path.stem, "file": str(path), "error": str(exc), "threshold": None})
            continue
        scenarios.append({"name": scenario.name, "file": str(path), "error": None, "threshold": recovery_threshold(scenario.spec.expect)})
        for controller in controllers:
            for k in range(first_seed, first_seed + seeds):
                tasks.append(RunTask(str(path), controller, scenario.spec.seed + k, str(out_dir), placement, duration_s))
    return SuitePlan(scenarios, tasks, first_seed)


MANAGERS = ("rule", "llm", "rule-unverified", "llm-unverified")
"""What may follow ``+`` in a controller name: the manager's planner, verified in the twin (manager.verify) unless
``-unverified`` (the planner's plan applied as the guard leaves it: the ablation of verification)."""


def split_controller(name: str) -> tuple[str, str]:
    """``"hpa+rule"`` -> ("hpa", "rule"): a local controller with the manager on top; ``"hpa"`` -> ("hpa", "off").
    ConfigError naming the choices for an unknown manager."""
    local, _, manager = name.partition("+")
    if manager and manager not in MANAGERS:
        raise ConfigError(f"unknown manager {manager!r} in {name!r}; use CONTROLLER+ one of {', '.join(MANAGERS)}")
    return local, manager or "off"


def manager_settings(manager: str) -> tuple[str, Any]:
    """(the runtime's manager, its VerifySettings) for a name of MANAGERS."""
    from manager.verify import VerifySettings

    planner, _, unverified = manager.partition("-")
    return planner, VerifySettings(candidates=0) if unverified else VerifySettings()


def run_one(task: RunTask) -> dict[str, Any]:
    """One controller (optionally with the manager: ``hpa+rule``) on one scenario and seed; never raises (a failure
    is a record with its error)."""
    started = time.perf_counter()
    record: dict[str, Any] = {"file": task.file, "controller": task.controller, "seed": task.seed, "scenario": Path(task.file).stem}
    try:
        scenario = load_scenario(task.file, seed=task.seed, duration_s=task.duration_s)
        record["scenario"] = scenario.name
        local, manager = split_controller(task.controller)
        if local == BOUND:
            if manager != "off":
                raise ValueError(f"{BOUND} runs no controller, so no manager on top of it: use {BOUND!r}")
            record.update(status="ok", error=None, metrics=bound_metrics(scenario), series_file=None, expectations=[])
            record["wall_s"] = round(time.perf_counter() - started, 3)
            return record
        if manager == "off":
            recorder, explained, manager_stats, extra = _run_local(scenario, local, task)
        else:
            recorder, explained, manager_stats, extra = _run_with_manager(scenario, local, manager, task)
        threshold = recovery_threshold(scenario.spec.expect)
        metrics = {**run_metrics(recorder, scenario.events, threshold, explained, manager_stats), **extra}
        series_name = f"series/{scenario.name}__{task.controller}__{task.seed}.json"
        _write_series(Path(task.out_dir) / series_name, recorder, scenario)
        record.update(status="ok", error=None, metrics=metrics, series_file=series_name)
        record["expectations"] = check_expectations(metrics, scenario.spec.expect, task.controller)
    except Exception as exc:  # a crashing controller is a failed run, recorded; the suite goes on
        where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        at = f" (at {Path(where.filename).name}:{where.lineno})" if where else ""
        record.update(status="failed", error=f"{type(exc).__name__}: {exc}{at}", metrics=None, expectations=[], series_file=None)
    record["wall_s"] = round(time.perf_counter() - started, 3)
    return record


def bound_metrics(scenario: Any) -> dict[str, Any]:
    """The ``bound`` record's metrics: the frontier, and its point at REPORTED_LEVEL as the record's cost."""
    found = frontier(compile_relaxation(scenario))
    point = next(p for p in found.points if p["violation_level"] == REPORTED_LEVEL)
    requests = found.requests
    return {
        "cost": point["cost"],
        "ok_requests": point["ok_target"],
        "requests": requests,
        "sla_violation_rate": 1.0 - point["ok_target"] / requests if requests > 0 else 0.0,
        "bound": {**found.to_json(), "reported_level": REPORTED_LEVEL},
    }


def _run_local(scenario: Any, name: str, task: RunTask) -> tuple[RunRecorder, int, None, dict[str, Any]]:
    controller = make_controller(name, placement=task.placement, seed=task.seed)
    recorder, explained = run_controller(scenario, controller)
    return recorder, explained, None, controller_stats(controller)


def controller_stats(controller: Controller) -> dict[str, Any]:
    """What a controller counted about itself (the MARL controller's shield and OOD guard), as ``controller`` metrics."""
    stats = getattr(controller, "stats", None)
    as_dict = getattr(stats, "as_dict", None)
    return {"controller": dict(as_dict())} if callable(as_dict) else {}


def run_controller(scenario: Any, controller: Controller, keep_series: bool = True) -> tuple[RunRecorder, int]:
    """A compiled scenario run to its end under one local controller: (its metrics recorder, actions explained).
    Also used by the MARL trainer's periodic evaluation."""
    cluster = scenario.make_cluster()
    controller.reset(cluster)
    recorder = RunRecorder(cluster, keep_series=keep_series)
    explained = 0
    for _ in range(cluster.horizon):
        decision = controller.act(cluster)
        explained += len(decision.reasons)
        decision.apply(cluster)
        recorder.record()
    return recorder, explained


def _run_with_manager(scenario: Any, local: str, manager: str, task: RunTask) -> tuple[RunRecorder, int, dict[str, Any], dict[str, Any]]:
    """The runtime with the manager, an operator who approves every proposal at once, and the detectors scored
    (``detection``: per anomaly type, counts that pool over runs into precision, recall and time to detect)."""
    import tempfile

    from evals.detection import ground_truth, score
    from manager.loop import Runtime, RuntimeSettings
    from tools.decision_log import DecisionLog

    with tempfile.TemporaryDirectory() as tmp:
        log = DecisionLog(f"sqlite:///{tmp}/log.db")
        planner, verify = manager_settings(manager)
        settings = RuntimeSettings(
            scenario=Path(task.file), controller=local, manager=planner, seed=task.seed, ticks=scenario.ticks,
            checkpoints=Path(tmp) / "checkpoints.db", auto_approve="eval-operator", keep_series=True, verify=verify,
        )  # fmt: skip
        runtime = Runtime(settings, log)
        runtime.run()
        rows = log.decisions(run_id=runtime.run_id, actor="manager", limit=100_000)
        log.close()
    detection = score(runtime.reports, ground_truth(scenario))
    stats = {
        "time_to_detect_s": detection["mean_time_to_detect_s"],
        "anomalies_detected": sum(d["detect_s"] is not None for d in detection["anomalies"]),
        "anomalies_injected": len(detection["anomalies"]),
        "approvals_requested": sum(r.risk == "high" for r in rows),
        "unsafe_blocked": sum(r.action == "note" and r.explanation.startswith("refused") for r in rows),
        "weight_changes": sum(r.action == "set_reward_weights" for r in rows),
        "incidents": len(runtime.opened),
        "incidents_failed": runtime.incidents_failed,
        "restores_offered": sum(r.action == "restore_node" for r in rows),
        "verified": sum(r.action == "verify" for r in rows),
        "status_quo_kept": sum(r.action == "verify" and json.loads(r.result_json or "{}")["verification"]["chosen"] is None for r in rows),
        "llm_fallbacks": sum(r.action == "note" and " planner failed (" in r.explanation for r in rows),
    }
    extra = {"detection": detection["counts"], "twin_checks": runtime.twin_checks, **controller_stats(runtime.controller)}
    return runtime.metrics, runtime.explained, stats, extra


def _write_series(path: Path, recorder: RunRecorder, scenario: Any) -> None:
    keys = ("arrivals_rps", "served_rps", "replicas", "p95_ms", "violation_rate", "cost_per_h", "power_w")
    data: dict[str, Any] = downsample({k: recorder.series[k] for k in keys}, recorder.cluster.tick_s)
    data["slo_ms"] = float(recorder.cluster.slo_ms.min())
    tick_s = recorder.cluster.tick_s
    data["events"] = [
        {"type": e.type, "label": e.label, "start_s": e.at_tick * tick_s, "end_s": None if e.end_tick is None else e.end_tick * tick_s}
        for e in scenario.events
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def run_suite(
    plan: SuitePlan,
    out_dir: Path,
    suite: str,
    controllers: Sequence[str],
    seeds: int,
    jobs: int = 1,
    command: str = "",
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run every task (``jobs`` worker processes; 1 runs them here), write results.json and return it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    if jobs <= 1:
        for task in plan.tasks:
            records.append(run_one(task))
            if progress:
                progress(records[-1])
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_one, task) for task in plan.tasks]
            for future in as_completed(futures):
                records.append(future.result())
                if progress:
                    progress(records[-1])
    order = {(t.file, t.controller, t.seed): k for k, t in enumerate(plan.tasks)}
    records.sort(key=lambda r: order[(r["file"], r["controller"], r["seed"])])
    results = {
        "suite": suite,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "controllers": list(controllers),
        "seeds": list(range(plan.first_seed, plan.first_seed + seeds)),
        "seed_rule": "each scenario runs at its own seed + k for every k in seeds",
        "scenarios": plan.scenarios,
        "runs": records,
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    return results
