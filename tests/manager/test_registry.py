"""One registry of anomaly types: every type in manager.anomalies.ANOMALY_KINDS has a detector, a rule of the rule
planner, a rank in the graph's priorities and a description, and every anomaly event a scenario can inject is the
ground truth of exactly one type. A type added in one place and forgotten in another fails here."""

from __future__ import annotations

from typing import get_args

from evals.detection import INJECTED
from manager.anomalies import ANOMALY_KINDS, ANOMALY_TYPES, Detectors
from manager.graph import PRIORITY
from manager.planners import RULES, describe_anomaly, rule_keys
from simulators.scenarios import EventEntry

EVENT_TYPES = {get_args(model.model_fields["type"].annotation)[0] for model in get_args(get_args(EventEntry)[0])}
ENDS_ANOTHER = {"node_recovery"}
"""Events that end an anomaly rather than start one."""


def test_every_type_has_a_detector_a_rule_a_priority_and_a_description() -> None:
    detectors = Detectors()
    assert len(set(ANOMALY_TYPES)) == len(ANOMALY_TYPES)
    for kind in ANOMALY_KINDS:
        assert callable(getattr(detectors, kind.detector, None)), kind.name
        assert all(key in RULES for key in rule_keys(kind.name)), kind.name
        assert kind.name in PRIORITY, kind.name
        assert kind.target in ("service", "node", "tier", "cluster"), kind.name
        described = describe_anomaly({"type": kind.name, "target": "x", "severity": 2.0})
        assert described.startswith(kind.name.replace("_", " ") + " on x"), described
    assert set(RULES) == {key for kind in ANOMALY_KINDS for key in rule_keys(kind.name)}  # no rule for a type that is gone


def test_every_injected_event_is_the_ground_truth_of_one_type() -> None:
    assert set(INJECTED) == EVENT_TYPES - ENDS_ANOTHER, "a scenario event type no anomaly type detects (or the reverse)"
    causes = [event for kind in ANOMALY_KINDS for event in kind.injected_by]
    assert len(causes) == len(set(causes)), "an event type injects two anomaly types"
    assert set(INJECTED.values()) <= set(ANOMALY_TYPES)
