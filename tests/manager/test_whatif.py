"""The what-if twin knows only the past: on a scenario whose future differs from its past (a 20x surge and a node
failure still to come), the preview forecasts from the arrivals already observed, starts no future anomaly, and
keeps those in force; the forecast itself draws from the recent past only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from local_agents.registry import make_controller
from manager import whatif
from manager.forecast import sample_future
from simulators.cluster import NODE_FAILED
from simulators.scenarios import load_scenario

SCENARIO = """\
name: future-differs
seed: 2
duration_s: 900
cluster:
  nodes:
    - {prefix: cloud, count: 6, cpus: 8, mem_gb: 32, boot_s: 30, "on": 4}
services:
  - {name: api, work_ms: 40, slo_ms: 300, initial_replicas: 4}
workload:
  - {service: api, type: poisson, rps: 50}
events:
  - {at_s: 100, type: straggler, node: cloud-1, slowdown: 3, duration_s: 60}
  - {at_s: 400, type: traffic_spike, service: api, factor: 20, duration_s: 300}
  - {at_s: 450, type: node_failure, node: cloud-0}
"""


def test_the_twin_forecasts_from_the_past_and_knows_no_future_event(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    cluster = load_scenario(path).make_cluster()
    controller = make_controller("hpa")
    controller.reset(cluster)
    for _ in range(120):  # the straggler is in force; the surge and the failure are still to come
        controller.act(cluster).apply(cluster)
    past_max = cluster.workload.arrivals[: cluster.t].max()
    assert cluster.workload.arrivals[cluster.t :].max() > 10 * past_max  # the scenario's future is very different
    fork = cluster.twin(*sample_future(cluster.workload.arrivals[: cluster.t], cluster.workload.work_scale[: cluster.t], 600, 1.0,
                                       np.random.default_rng(0)))  # fmt: skip
    assert fork.workload.arrivals[cluster.t :].max() <= past_max  # drawn from what was seen
    for _ in range(600):
        fork.step()
    assert (fork.state == NODE_FAILED).sum() == 0  # the failure at 450 s was not foreseen
    assert fork.slowdown[fork.node_names.index("cloud-1")] == 3.0  # the straggler in force stays in force
    result = whatif.preview(cluster, controller, [{"name": "add_nodes", "arguments": {"count": 2, "tier": "cloud"}}], 600.0)
    assert result["futures"] == 3 and set(result["spread"]) == set(result["delta"])
    requests = result["status_quo"]["requests"]
    assert requests <= 600 * past_max and abs(requests - 600 * 50) < 0.1 * 600 * 50  # ~50 req/s, not the coming 1,000
    assert "forecast from the past" in whatif.describe(result)
    assert cluster.t == 120 and (cluster.state == NODE_FAILED).sum() == 0  # the preview left the cluster alone


def test_the_forecast_keeps_the_recent_level_and_needs_a_past() -> None:
    rng = np.random.default_rng(1)
    past = np.concatenate([np.full((200, 1), 10.0), np.full((30, 1), 200.0)])  # a surge began 30 s ago
    future, work = sample_future(past, np.ones_like(past), 100, 1.0, rng)
    assert future.shape == (100, 1) and work.shape == (100, 1)
    assert abs(future.mean() - 200.0) < 20.0  # the level is the last 30 s's, not the window's average
    empty, _ = sample_future(np.zeros((0, 2)), np.ones((0, 2)), 5, 1.0, rng)
    assert empty.shape == (5, 2) and not empty.any()
