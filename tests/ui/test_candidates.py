"""The twin's verification on the console: decision rows carrying a ``verification`` result (manager.verify.record's
format) are written into a real decision log, and the Approvals and Decisions pages are rendered through Streamlit's
AppTest: the candidates table lists the status quo first and every candidate with its numbers, marks the chosen one,
and the Decisions page sets what the twin predicted for the chosen plan beside what was realized. A row from before
verification, with only a what-if preview, still shows the preview."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from streamlit.testing.v1 import AppTest

from tools.decision_log import DecisionLog
from ui.console.data import candidates_table, predicted_vs_realized
from ui.console.plots import candidate_bars

VIEWS = Path(__file__).resolve().parents[2] / "ui" / "console" / "views"
TOKEN = "open-sesame"
WEIGHTS = {"latency": 0.2, "sla": 0.4, "utilization": 0.1, "energy": 0.1, "cost": 0.15, "churn": 0.05}


def outcome(objective: float, minutes: float, cost: float, energy: float) -> dict[str, float]:
    return {"objective": objective, "sla_violation_minutes": minutes, "cost": cost, "energy_kwh": energy, "drops": 0.0}


VERIFICATION: dict[str, Any] = {
    "horizon_s": 120.0,
    "futures": 3,
    "objective_weights": WEIGHTS,
    "status_quo": outcome(-41.2, 1.5, 3.1, 0.8),
    "candidates": [
        {
            "name": "rule", "planner": "rule", "weights": {**WEIGHTS, "sla": 0.6, "cost": 0.1}, "expires_in_s": 600.0,
            "actions": [{"name": "add_nodes", "arguments": {"count": 2, "tier": "cloud"}}],
            "predicted": outcome(-38.7, 0.9, 3.4, 0.85), "delta": outcome(2.5, -0.6, 0.3, 0.05),
            "spread": outcome(0.4, 0.2, 0.05, 0.01), "verdict": "chosen",
        },
        {
            "name": "save cost", "planner": "rule", "weights": {**WEIGHTS, "cost": 0.3}, "expires_in_s": None, "actions": [],
            "predicted": outcome(-41.0, 1.9, 2.9, 0.7), "delta": outcome(0.2, 0.4, -0.2, -0.1),
            "spread": outcome(0.9, 0.3, 0.04, 0.02), "verdict": "not better than the status quo by more than its spread",
        },
    ],
    "chosen": "rule",
    "reason": "Verified 2 candidate(s) in the twin over 120 s: chose rule, objective +2.50 ± 0.40 over the status quo.",
    "realized": None,
}  # fmt: skip
PREVIEW = {
    "horizon_s": 300.0,
    "futures": 3,
    "status_quo": {"sla_violation_rate": 0.04, "cost": 1.0, "energy_kwh": 0.5},
    "with_proposal": {"sla_violation_rate": 0.01, "cost": 1.2, "energy_kwh": 0.6},
    "delta": {"sla_violation_rate": -0.03, "cost": 0.2, "energy_kwh": 0.1},
}


def realized(verification: dict[str, Any], minutes: float, cost: float, energy: float) -> dict[str, Any]:
    done = copy.deepcopy(verification)
    done["realized"] = {
        "sla_violation_minutes": minutes,
        "cost": cost,
        "energy_kwh": energy,
        "drops": 0.0,
        "at_s": 720.0,
        "other_changes": 0,
    }
    return done


@pytest.fixture
def rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A run with the incident's verify row (realized written), a verified proposal and a preview-only proposal."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    monkeypatch.setenv("AMA_DATABASE_URL", url)
    monkeypatch.setenv("AMA_CONSOLE_TOKEN", TOKEN)
    monkeypatch.delenv("AMA_LLM_BASE_URL", raising=False)
    log = DecisionLog(url)
    run = log.start_run("spike", "kpa", manager="rule")
    common: dict[str, Any] = {"incident_id": "inc-1", "weights": WEIGHTS}
    ids = {
        "verify": log.record(run, 600, 600.0, "manager", "verify", VERIFICATION["reason"], **common,
                             result={"verification": realized(VERIFICATION, 1.1, 3.3, 0.9)}),
        "proposal": log.record(run, 600, 600.0, "manager", "add_nodes", "add 2 cloud node(s) — waiting for an operator",
                               args={"count": 2, "tier": "cloud"}, risk="high", status="proposed", **common,
                               result={"verification": VERIFICATION}),
        "preview": log.record(run, 300, 300.0, "manager", "add_nodes", "add 1 cloud node(s) — waiting for an operator",
                              args={"count": 1, "tier": "cloud"}, risk="high", status="proposed", **common,
                              result={"preview": PREVIEW}),
    }  # fmt: skip
    log.close()
    return ids


def page(name: str) -> AppTest:
    app = AppTest.from_file(str(VIEWS / name), default_timeout=60)
    app.run()
    assert not app.exception, [e.message for e in app.exception]
    return app


def tables_with(app: AppTest, column: str) -> list[pd.DataFrame]:
    return [d.value for d in app.dataframe if column in d.value.columns]


def test_the_approvals_page_shows_the_verified_candidates_with_the_chosen_one_marked(rows: dict[str, str]) -> None:
    app = page("approvals.py")
    (table,) = tables_with(app, "candidate")  # the verified proposal's; the preview-only one has none
    assert list(table["candidate"]) == ["status quo", "rule", "save cost"]
    assert list(table["chosen"]) == ["", "✓", ""]
    rule = table.set_index("candidate").loc["rule"]
    assert rule["Δobjective"] == "+2.50 ± 0.40" and rule["Δviolation min"] == "-0.60 ± 0.20"
    assert rule["Δcost $"] == "+0.300" and rule["Δenergy kWh"] == "+0.050"
    assert rule["actions"] == "add 2 cloud node(s)"
    assert rule["weights"] == "raise sla 0.40 -> 0.60, lower cost 0.15 -> 0.10 for 10 min"
    assert "objective -41.20" in table.set_index("candidate").loc["status quo", "verdict"]
    assert any(VERIFICATION["reason"] in str(m.value) for m in app.markdown)
    assert app.button(key=f"approve-{rows['proposal']}").disabled  # the controls are there (read-only: nobody signed in)
    assert {"SLA violations", "cost $", "energy kWh"} <= {m.label for m in app.metric}  # the preview-only row's preview


def test_the_decisions_page_sets_predicted_beside_realized_for_the_chosen_candidate(rows: dict[str, str]) -> None:
    app = page("decisions.py")
    app.selectbox(key="f_open").select(rows["verify"]).run()
    assert not app.exception, [e.message for e in app.exception]
    (table,) = tables_with(app, "candidate")
    assert list(table["candidate"]) == ["status quo", "rule", "save cost"] and list(table["chosen"]) == ["", "✓", ""]
    (compared,) = tables_with(app, "realized")
    minutes = compared.set_index("measure").loc["SLA violation minutes"]
    assert (minutes["predicted"], minutes["realized"], minutes["error"]) == (0.9, 1.1, 0.2)  # rule's prediction, not the status quo's
    assert compared.set_index("measure").loc["cost $", "realized"] == 3.3
    assert any("Predicted vs realized" in str(m.value) and "rule" in str(m.value) for m in app.markdown)


def test_a_proposal_not_yet_realized_shows_candidates_and_no_comparison(rows: dict[str, str]) -> None:
    app = page("decisions.py")
    app.selectbox(key="f_open").select(rows["proposal"]).run()
    assert not app.exception
    assert len(tables_with(app, "candidate")) == 1 and tables_with(app, "realized") == []
    app.selectbox(key="f_open").select(rows["preview"]).run()
    assert not app.exception and tables_with(app, "candidate") == []


def test_with_no_candidate_chosen_the_status_quo_is_marked_and_compared() -> None:
    kept = realized({**VERIFICATION, "chosen": None}, 1.7, 3.0, 0.75)
    table = candidates_table(kept)
    assert [r["chosen"] for r in table] == ["✓", "", ""] and table[0]["verdict"].startswith("kept")
    compared = predicted_vs_realized(kept)
    assert compared is not None
    plan, measures = compared
    assert plan == "status quo"
    assert {m["measure"]: (m["predicted"], m["realized"]) for m in measures}["SLA violation minutes"] == (1.5, 1.7)
    assert predicted_vs_realized(VERIFICATION) is None  # not realized yet


def test_the_candidate_plot_draws_each_gain_with_the_chosen_one_in_blue() -> None:
    figure = candidate_bars(VERIFICATION)
    bars = figure.axes[0].patches
    assert [round(b.get_width(), 2) for b in bars] == [2.5, 0.2]
    assert [to_hex(b.get_facecolor()) for b in bars] == ["#1f77b4", "#999999"]
