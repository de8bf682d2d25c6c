"""Explanations name the values that drove an action, and are cheap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from local_agents.explain import explain_cell_change
from simulators.cluster import Cluster, ClusterConfig, NodeSpec, ServiceSpec, Workload
from simulators.rewards import RewardWeights

REPO = Path(__file__).resolve().parents[2]


def test_sentence_names_queue_latency_slo_cpu_rate_and_weights() -> None:
    c = Cluster(
        ClusterConfig((NodeSpec("cloud-7", cpus=4),), (ServiceSpec("api", initial_replicas=1, slo_ms=300),)),
        Workload(np.full((3, 1), 40.0)),
    )
    c.step()  # 40 req/s on one 25 req/s replica: a queue builds and latency passes the SLO
    text = explain_cell_change(c, 0, 0, 1, 2, "hpa wants 2", RewardWeights(sla=0.5, latency=0.3))
    assert text.startswith("api on cloud-7: 1 -> 2 replicas (hpa wants 2); queue 15")
    assert "over SLO 300 ms" in text and "node cpu 25%" in text and "25 req/s" in text
    assert text.endswith("weights sla 0.50 latency 0.30 cost 0.15")


def test_explanation_benchmark_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "local_agents.explain", "--nodes", "10", "--seconds", "0.05"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["explanations_per_s"] > 1000
