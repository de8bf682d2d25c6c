"""The small spike scenario the manager's tests run (a 4x traffic spike at t=120 s on six cloud nodes, two of them
off: the rule manager raises the SLA weight and proposes adding nodes): used by tests/manager and tests/ui."""

from __future__ import annotations

from pathlib import Path


def spike_scenario(folder: Path, duration_s: float = 400, spike_s: float = 200) -> Path:
    """Write the scenario into ``folder`` and return its path."""
    path = folder / "spike.yaml"
    path.write_text(f"""\
name: spike-with-spare-nodes
seed: 4
duration_s: {duration_s:g}
cluster:
  nodes:
    - {{prefix: cloud, count: 6, tier: cloud, cpus: 8, mem_gb: 32, boot_s: 30, "on": 4}}
services:
  - {{name: api, work_ms: 40, slo_ms: 300, min_replicas: 2, max_replicas: 64, initial_replicas: 8}}
workload:
  - {{service: api, type: poisson, rps: 100}}
events:
  - {{at_s: 120, type: traffic_spike, service: api, factor: 4, duration_s: {spike_s:g}}}
""")
    return path
