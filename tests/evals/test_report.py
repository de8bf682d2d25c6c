"""evals.report on small fake eval folders: the tables' numbers (checked against values computed here), failed runs,
invalid scenarios, failed expectations, the PNGs, and the command line."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evals.report import DASH, main, mean_ci, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[2]


def metrics(cost: float, minutes: float, rate: float, p95: float | None = 400.0, **extra: Any) -> dict[str, Any]:
    return {
        "sla_violation_rate": rate,
        "sla_violation_minutes": minutes,
        "p50_latency_ms": 80.0,
        "p95_latency_ms": p95,
        "p99_latency_ms": 2000.0,
        "cost": cost,
        "node_cost": 6.7,
        "energy_kwh": 0.99,
        "cold_starts": 3.0,
        "drops": 100.0,
        "wasted_mem_gb_s": 10.0,
        "scale_actions": 20.0,
        "requests": 100000.0,
        "time_to_recover_s": 120.0,
        "explained_actions": 5,
        "recoveries": [{"type": "traffic_spike", "label": "spike", "at_s": 600.0, "recover_s": 120.0}],
        "manager": None,
        **extra,
    }


def series(scale: float, points: int = 60, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    t = [30.0 * k for k in range(points)]
    arrivals = [200.0 + 150.0 * math.sin(k / 8.0) + (400.0 if 20 <= k < 30 else 0.0) for k in range(points)]
    return {
        "time_s": t,
        "arrivals_rps": arrivals,
        "served_rps": [a * 0.98 for a in arrivals],
        "replicas": [round(a / 25.0 * scale) for a in arrivals],
        "p95_ms": [0.0 if k == 0 else 80.0 * (1 + 10 * (20 <= k < 26)) * scale for k in range(points)],
        "violation_rate": [0.3 * scale if 20 <= k < 26 else 0.0 for k in range(points)],
        "cost_per_h": [a / 100.0 for a in arrivals],
        "power_w": [1000.0 for _ in arrivals],
        "slo_ms": 300.0,
        "events": events or [],
    }


def record(scenario: str, controller: str, seed: int, m: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    ok = m is not None
    return {
        "scenario": scenario,
        "file": f"evals/scenarios/{scenario}.yaml",
        "controller": controller,
        "seed": seed,
        "status": "ok" if ok else "failed",
        "error": None if ok else "RuntimeError: simulator crashed at tick 42",
        "metrics": m,
        "expectations": [{"metric": "drops", "max": 1000.0, "min": None, "value": 100.0, "passed": True}] if ok else [],
        "series_file": f"series/{scenario}__{controller}__{seed}.json" if ok else None,
        "wall_s": 1.0,
        **extra,
    }


SPIKE_EVENTS = [
    {"type": "traffic_spike", "label": "traffic spike x4 on api", "start_s": 600.0, "end_s": 900.0},
    {"type": "node_failure", "label": "node cloud-3 fails", "start_s": 900.0, "end_s": None},
]


def write_eval(out: Path, results: dict[str, Any], scales: dict[str, float], events: dict[str, list[dict[str, Any]]]) -> None:
    (out / "series").mkdir(parents=True)
    (out / "results.json").write_text(json.dumps(results))
    for r in results["runs"]:
        if r["series_file"]:
            s = series(scales[r["controller"]], events=events.get(r["scenario"]))
            (out / r["series_file"]).write_text(json.dumps(s))


@pytest.fixture
def two_seed_eval(tmp_path: Path) -> Path:
    """2 scenarios, hpa/kpa/oracle, seeds 7 and 8; hpa fails on failover seed 8; kpa's p95 is null on failover seed 8;
    kpa misses an expectation on spike seed 8; one invalid scenario."""
    runs = [
        record("spike", "hpa", 7, metrics(2.0, 10.0, 0.10)),
        record("spike", "hpa", 8, metrics(4.0, 20.0, 0.20)),
        record("spike", "kpa", 7, metrics(1.0, 5.0, 0.04)),
        record("spike", "kpa", 8, metrics(3.0, 10.0, 0.06)),
        record("spike", "oracle", 7, metrics(0.5, 0.0, 0.0)),
        record("spike", "oracle", 8, metrics(1.0, 0.0, 0.0)),
        record("failover", "hpa", 7, metrics(2.0, 6.0, 0.05)),
        record("failover", "hpa", 8, None),
        record("failover", "kpa", 7, metrics(2.5, 3.0, 0.03, p95=500.0)),
        record("failover", "kpa", 8, metrics(2.0, 5.0, 0.02, p95=None)),
        record("failover", "oracle", 7, metrics(1.0, 0.0, 0.0)),
        record("failover", "oracle", 8, metrics(1.0, 0.0, 0.0)),
    ]
    runs[3]["expectations"].append({"metric": "sla_violation_rate", "max": 0.05, "min": None, "value": 0.06, "passed": False})
    results = {
        "suite": "smoke",
        "created_at": "2025-01-02T03:04:05+00:00",
        "command": "ama eval --suite smoke --controllers hpa,kpa,oracle --seeds 2",
        "controllers": ["hpa", "kpa", "oracle"],
        "seeds": [7, 8],
        "scenarios": [
            {"name": "spike", "file": "evals/scenarios/spike.yaml", "error": None, "threshold": 0.05},
            {"name": "failover", "file": "evals/scenarios/failover.yaml", "error": None, "threshold": 0.05},
            {"name": "broken", "file": "evals/scenarios/broken.yaml", "error": "unknown event type 'meteor'", "threshold": 0.05},
        ],
        "runs": runs,
    }
    out = tmp_path / "eval"
    write_eval(out, results, {"hpa": 1.0, "kpa": 1.3, "oracle": 0.7}, {"spike": SPIKE_EVENTS})
    return out


@pytest.fixture
def single_seed_eval(tmp_path: Path) -> Path:
    """No hpa, one seed, one scenario without events; kpa's series is empty; the oracle reports manager metrics."""
    manager = {"time_to_detect_s": 30.0, "anomalies_correct": 1, "approvals_requested": 2, "unsafe_blocked": 0}
    runs = [
        record("calm", "kpa", 3, metrics(3.0, 2.0, 0.01, time_to_recover_s=None, recoveries=[])),
        record("calm", "oracle", 3, metrics(1.5, 0.0, 0.0, manager=manager)),
    ]
    results = {
        "suite": "custom",
        "created_at": "2025-01-02T03:04:05+00:00",
        "command": "ama eval -s calm.yaml --controllers kpa,oracle",
        "controllers": ["kpa", "oracle"],
        "seeds": [3],
        "scenarios": [{"name": "calm", "file": "calm.yaml", "error": None, "threshold": 0.05}],
        "runs": runs,
    }
    out = tmp_path / "single"
    write_eval(out, results, {"kpa": 1.0, "oracle": 0.7}, {})
    (out / runs[0]["series_file"]).write_text(json.dumps({**series(1.0), "time_s": [], "arrivals_rps": [], "replicas": []}))
    return out


def table_row(report: str, section: str, controller: str) -> dict[str, str]:
    """The cells of ``controller``'s row in the first table under the heading ``## section``."""
    body = report.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in body.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == controller:
            return dict(zip(header, cells, strict=True))
    raise AssertionError(f"no row for {controller} under {section}")


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 20_000, f"{path} is only {len(data)} bytes"


def t_half_width(values: list[float]) -> float:
    assert len(values) == 2
    return 12.706 * statistics.stdev(values) / math.sqrt(2)


def test_mean_ci_uses_student_t() -> None:
    stat = mean_ci([1.0, 2.0, 3.0])
    assert stat is not None
    assert stat.mean == 2.0
    assert stat.half_width == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    large = mean_ci([float(k) for k in range(40)])
    assert large is not None and large.half_width == pytest.approx(1.96 * statistics.stdev(range(40)) / math.sqrt(40))
    single = mean_ci([5.0])
    assert single is not None and single.half_width is None
    assert mean_ci([]) is None


def test_report_tables(two_seed_eval: Path) -> None:
    path = write_report(two_seed_eval)
    assert path == two_seed_eval / "report.md"
    report = path.read_text()

    kpa = table_row(report, "spike", "kpa")
    ratios = [1.0 / 2.0, 3.0 / 4.0]
    assert t_half_width(ratios) == pytest.approx(1.588, abs=1e-3)
    assert kpa["cost/HPA"] == "0.625 ± 1.59"
    assert kpa["cost/oracle"] == f"2.5 ± {t_half_width([2.0, 3.0]):.3g}" == "2.5 ± 6.35"
    assert kpa["violation min/HPA"] == "0.5 ± 0"  # 5/10 and 10/20: no spread
    assert kpa["SLA violations %"] == "5 ± 12.7"
    assert kpa["cost"] == "2 ± 12.7"
    assert kpa["expectations passed"] == "2/3"
    assert table_row(report, "spike", "hpa")["cost/HPA"] == "1 ± 0"
    assert table_row(report, "spike", "oracle")["violation min/HPA"] == "0 ± 0"

    failover = table_row(report, "failover", "kpa")
    assert failover["cost/HPA"] == "1.25"  # only seed 7: hpa failed on seed 8, so no ± either
    assert failover["p95 ms"] == "500"  # seed 8's p95 is null
    assert failover["time to recover s"] == "120 ± 0"
    assert table_row(report, "failover", "hpa")["runs ok"] == "1/2"

    overall = table_row(report, "All scenarios", "kpa")
    assert overall["geo-mean cost/HPA"] == f"{math.sqrt(0.625 * 1.25):.3g}" == "0.884"
    assert overall["total violation min"] == "11.5"  # 7.5 + 4
    assert overall["mean SLA violations %"] == f"{(0.05 + 0.025) / 2 * 100:.3g}"
    assert overall["expectations passed"] == "4/5"
    assert overall["failed runs"] == "0"
    assert table_row(report, "All scenarios", "hpa")["failed runs"] == "1"
    assert "manager:" not in report


def test_report_failures_and_plots(two_seed_eval: Path) -> None:
    report = write_report(two_seed_eval).read_text()
    assert "- failover / hpa / seed 8: RuntimeError: simulator crashed at tick 42" in report
    assert "`evals/scenarios/broken.yaml`: unknown event type 'meteor'" in report
    assert "## broken" not in report
    assert "| spike | kpa | 8 | sla_violation_rate | ≤ 0.05 | 0.06 |" in report
    assert "- Command: `ama eval --suite smoke --controllers hpa,kpa,oracle --seeds 2`" in report
    assert "## How to read this" in report
    for name in ("spike", "failover", "frontier"):
        assert f"(plots/{name}.png)" in report
        assert_png(two_seed_eval / "plots" / f"{name}.png")


def test_single_seed_without_hpa(single_seed_eval: Path) -> None:
    report = write_report(single_seed_eval).read_text()
    kpa = table_row(report, "calm", "kpa")
    assert kpa["cost/HPA"] == DASH
    assert kpa["violation min/HPA"] == DASH
    assert kpa["cost/oracle"] == "2"
    assert kpa["cost"] == "3"
    assert kpa["time to recover s"] == DASH
    overall = table_row(report, "All scenarios", "oracle")
    assert overall["geo-mean cost/HPA"] == DASH
    assert overall["manager: time to detect s"] == "30"
    assert table_row(report, "All scenarios", "kpa")["manager: time to detect s"] == DASH
    assert "Every expectation of every successful run held." in report
    assert_png(single_seed_eval / "plots" / "calm.png")
    assert_png(single_seed_eval / "plots" / "frontier.png")


def test_all_runs_failed(tmp_path: Path) -> None:
    runs = [record("calm", "hpa", 1, None)]
    results = {"suite": "x", "created_at": "now", "command": "ama eval", "controllers": ["hpa"], "seeds": [1], "runs": runs}
    results["scenarios"] = [{"name": "calm", "file": "calm.yaml", "error": None, "threshold": 0.05}]
    write_eval(tmp_path, results, {}, {})
    report = write_report(tmp_path).read_text()
    assert "_No time series to plot" in report
    assert table_row(report, "calm", "hpa")["cost"] == DASH
    assert (tmp_path / "plots" / "frontier.png").read_bytes()[:8] == PNG_MAGIC


def test_main_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "results.json" in capsys.readouterr().err


def test_command_line(two_seed_eval: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "evals.report", str(two_seed_eval)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(two_seed_eval / "report.md")
    assert (two_seed_eval / "report.md").is_file()
    helped = subprocess.run([sys.executable, "-m", "evals.report", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0
    assert "DIR" in helped.stdout and "results.json" in helped.stdout


def test_cost_over_the_bound_at_each_runs_own_sla_level(tmp_path: Path) -> None:
    points = [
        {"violation_level": 0.0, "ok_target": 1000.0, "cost": 0.5},
        {"violation_level": 0.01, "ok_target": 990.0, "cost": 0.4},
        {"violation_level": 0.1, "ok_target": 900.0, "cost": 0.25},
    ]
    frontier = {"points": points, "requests": 1000.0}
    bound = {"cost": 0.4, "ok_requests": 990.0, "requests": 1000.0, "sla_violation_rate": 0.01, "bound": frontier}
    runs = [
        record("spike", "hpa", 1, metrics(2.0, 1.0, 0.05, ok_requests=950.0)),  # between 900 and 990: the 0.25 point
        record("spike", "hpa", 2, metrics(1.0, 1.0, 0.0, ok_requests=1000.0)),  # at 1000: the 0.5 point
        record("spike", "bound", 1, bound, series_file=None),
        record("spike", "bound", 2, bound, series_file=None),
        record("calm", "hpa", 1, metrics(1.0, 0.0, 0.0, ok_requests=995.0)),
        record("calm", "bound", 1, bound, series_file=None),
    ]
    results = {"suite": "x", "created_at": "now", "command": "ama eval", "controllers": ["hpa", "bound"], "seeds": [1, 2], "runs": runs}
    results["scenarios"] = [{"name": n, "file": f"{n}.yaml", "error": None, "threshold": 0.05} for n in ("spike", "calm")]
    write_eval(tmp_path, results, {"hpa": 1.0}, {})
    report = write_report(tmp_path).read_text()
    assert table_row(report, "spike", "hpa")["cost/bound @ own SLA"] == f"5 ± {t_half_width([8.0, 2.0]):.3g}"  # 2/0.25, 1/0.5
    assert table_row(report, "calm", "hpa")["cost/bound @ own SLA"] == "2.5"  # 995 is under 1000: the 990 point, 1/0.4
    assert table_row(report, "All scenarios", "hpa")["geo-mean cost/bound @ own SLA"] == f"{math.sqrt(5.0 * 2.5):.3g}"
    assert table_row(report, "spike", "bound")["cost/bound @ own SLA"] == DASH
    assert "clairvoyant heuristic" in report and "no bound" in report
    assert_png(tmp_path / "plots" / "frontier.png")


def test_head_to_head_flapping_and_detection_sections(tmp_path: Path) -> None:
    """The sections the round's targets read: each controller against HPA and with its manager against without;
    moves undone within 10 s and the MARL controller's own counts; detection pooled per anomaly type."""
    detection = {"burst": {"injected": 2, "detected": 1, "reported": 4, "true_reports": 3, "detect_s": [2.0]}}
    own = {"shielded_starting": 5, "shielded_backlog": 2, "ood_node_ticks": 30, "node_ticks": 300}
    runs = []
    for seed in (1, 2):
        runs += [
            record("a", "hpa", seed, metrics(2.0, 10.0, 0.1, drops=10.0, scale_moves=100, moves_undone_10s=0)),
            record("a", "marl", seed, metrics(1.8, 4.0, 0.05, drops=20.0, scale_moves=200, moves_undone_10s=10, controller=own)),
            record("a", "marl+rule", seed, metrics(1.9, 3.0, 0.04, drops=5.0, scale_moves=200, moves_undone_10s=4, detection=detection)),
            record("b", "hpa", seed, metrics(1.0, 2.0, 0.1, scale_moves=50, moves_undone_10s=1)),
            record("b", "marl", seed, metrics(1.0, 3.0, 0.05, scale_moves=50, moves_undone_10s=0, controller=own)),
            record("b", "marl+rule", seed, metrics(1.0, 3.0, 0.05, scale_moves=50, moves_undone_10s=0, detection=detection)),
        ]
    results = {
        "suite": "custom", "created_at": "2025-01-02T03:04:05+00:00", "command": "ama eval", "controllers": ["hpa", "marl", "marl+rule"],
        "seeds": [1, 2], "runs": runs,
        "scenarios": [{"name": n, "file": f"evals/scenarios/{n}.yaml", "error": None, "threshold": 0.05} for n in ("a", "b")],
    }  # fmt: skip
    out = tmp_path / "eval"
    write_eval(out, results, {"hpa": 1.0, "marl": 0.9, "marl+rule": 0.8}, {})
    text = write_report(out).read_text()
    head = text.split("## Head to head")[1].split("##")[0]
    # marl: (4 + 3) / (10 + 2) violation minutes of HPA's; over 1.1x on b (3 > 2.2); more drops on a (20 > 10)
    assert "| marl | hpa | 2 | 0.583 | 0.949 | 1 (50%) | 1 | 1 |" in head
    assert "| marl+rule | marl | 2 | 0.857 |" in head and "| 2 (100%) | 0 | 0 |" in head
    flapping = text.split("## Flapping, shield and OOD guard")[1].split("##")[0]
    assert "| marl | 500 | 4 | 28 | 10 |" in flapping  # 20 of 500 moves undone; 7 shielded in each of 4 runs; 120 of 1,200 node-ticks
    assert "| hpa | 300 | 0.667 | – | – |" in flapping
    detected = text.split("## Anomaly detection")[1].split("##")[0]
    assert "| marl+rule | burst | 8 | 4 | 16 | 0.75 | 0.5 | 2 |" in detected
