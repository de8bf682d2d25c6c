"""Random scenario generator. Called by ``ama scenarios generate`` (ui.cli) and by simulators.scenarios'
``scenario_files("generated-<split>")``; feeds the evals (evals.runner runs the files like hand-written ones) and
anyone who wants many varied scenarios (training curricula, validation sets).

Every scenario is a pure function of its generator seed (``generate_spec(seed)``), and the seeds are split into
disjoint ranges, so a training set never shares a scenario with a validation or test set:

    train       seeds 0 ..         999,999
    validation  seeds 1,000,000 .. 1,999,999
    test        seeds 2,000,000 .. 2,999,999

Scenario ``index`` of a split has seed ``SPLITS[split].start + index``; its name (``gen-<split>-<seed>``) and its
description record both. The one thing outside the seed that changes a scenario is whether the shared traces are
there: without them the trace replays (azure_functions, azure_llm, alibaba_batch) are left out of the choice, so
generation works anywhere (the cache folder is named for it).

What is sampled (u ~ U(a, b) uniform, log-U log-uniform):

- cluster: 2 to 600 nodes, 88% log-U(2, 50) and 12% log-U(50, 600); one to three groups: cloud CPU nodes (always),
  edge nodes (half the clusters), GPU nodes (a third); a group has some nodes off at t=0 (available to add) with
  probability 0.35; tier latencies edge 1-10 ms, cloud 5-40 ms.
- services: 1 to 6 (up to 8 on clusters over 50 nodes); work log-U(1 ms, 10 s); SLO = work times log-U(f, 300)
  with f = max(2, 1.5 x (work + the worst network latency) / work), so a request that does not wait fits its SLO;
  GPU services (a third, only where GPU nodes exist); concurrency 1, or 2-16 for a third of them; cold start
  log-U(0.5, 60) s; CPU and memory per replica drawn to fit on the nodes of one group (half a node at most).
- load: a target mean utilisation u ~ U(0.2, 0.7) of the powered capacity (CPU cores for CPU services, GPUs for GPU
  services, memory for both), shared over the services by a Dirichlet; each service's mean request rate is its share
  of that capacity over its cost per request. Each service gets one workload kind of poisson, diurnal, mmpp, batch,
  azure_functions, azure_llm, alibaba_batch (the replays at random offsets and speedups, scaled to that mean rate).
- events: 0 to 4 of traffic_spike, node_failure (a node_recovery follows most failures that have no duration),
  straggler, network_degradation, cold_start_storm, price_change, at random times in the first 85% of the run.
- duration: log-U(300, 1800) s rounded to the minute (at most 600 s on clusters over 50 nodes), tick 1 s.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulators import workloads
from simulators.errors import ConfigError
from simulators.scenarios import ScenarioSpec, traces_dir

GENERATOR_VERSION = 1
"""Bumped whenever the same seed would give a different scenario (the cache folder is named for it)."""

SPLITS: dict[str, range] = {
    "train": range(0, 1_000_000),
    "validation": range(1_000_000, 2_000_000),
    "test": range(2_000_000, 3_000_000),
}
"""Generator seeds of each split: disjoint ranges, so no scenario is in two splits."""

DEFAULT_COUNTS = {"train": 200, "validation": 40, "test": 40}
"""Scenarios in the ``generated-<split>`` suite when its name gives no count (``generated-test-100`` gives one)."""

MIN_NODES, MAX_NODES = 2, 600
MIN_WORK_MS, MAX_WORK_MS = 1.0, 10_000.0
MIN_SLO_FACTOR, MAX_SLO_FACTOR = 2.0, 300.0
MIN_DURATION_S, MAX_DURATION_S = 300, 1800

WORKLOAD_KINDS = ("poisson", "diurnal", "mmpp", "batch", "azure_functions", "azure_llm", "alibaba_batch")
TRACE_KINDS = {
    "azure_functions": "traces/azure_functions_2019_sample500",
    "azure_llm": "traces/azure_llm_inference_2023/AzureLLMInferenceTrace_{which}.csv",
    "alibaba_batch": "traces/alibaba_batch_v2017/batch_task.csv",
}
EVENT_KINDS = ("traffic_spike", "node_failure", "node_recovery", "straggler", "network_degradation", "cold_start_storm", "price_change")
_DRAWN_EVENTS = ("traffic_spike", "node_failure", "straggler", "network_degradation", "cold_start_storm", "price_change")
_SALT = 0xA3A5CE  # keeps these streams apart from other users of small integer seeds


# ----------------------------------------------------------------------------------------------- seeds and files
def split_seed(split: str, index: int) -> int:
    """The generator seed of scenario ``index`` of ``split``; a ConfigError outside the split's range."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    seeds = SPLITS[split]
    if not 0 <= index < len(seeds):
        raise ConfigError(f"index {index} is outside the {split} split (0 .. {len(seeds) - 1})")
    return seeds.start + index


def split_of(seed: int) -> str:
    """The split a generator seed belongs to."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    raise ConfigError(f"generator seed {seed} is in no split")


def traces_available() -> bool:
    """Whether every trace the replays need is there (else those workload kinds are left out)."""
    root = traces_dir()
    return all((root / path.removeprefix("traces/").format(which="code")).exists() for path in TRACE_KINDS.values())


def write_split(
    split: str, count: int, out_dir: Path, first: int = 0, progress: Callable[[Path], None] | None = None, overwrite: bool = True
) -> list[Path]:
    """Write scenarios ``first .. first + count - 1`` of ``split`` as ``out_dir/<name>.yaml``; returns the paths.
    With ``overwrite=False`` files already there are kept (the suite cache)."""
    if count < 0:
        raise ConfigError(f"count must be >= 0, got {count}")
    with_traces = traces_available()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(first, first + count):
        seed = split_seed(split, index)
        path = out_dir / f"gen-{split}-{seed}.yaml"
        if overwrite or not path.is_file():
            text = scenario_yaml(generate_spec(seed, with_traces))
            partial = path.with_suffix(f".{seed}.tmp")
            partial.write_text(text)
            partial.replace(path)  # atomic: a reader never sees half a file
        paths.append(path)
        if progress is not None:
            progress(path)
    return paths


def scenario_yaml(spec: dict[str, Any]) -> str:
    """The scenario as YAML, validated by the same schema as hand-written files."""
    ScenarioSpec.model_validate(spec)
    return yaml.safe_dump(spec, sort_keys=False, width=140, default_flow_style=None)


# ----------------------------------------------------------------------------------------------- the generator
def generate_spec(seed: int, with_traces: bool | None = None) -> dict[str, Any]:
    """One random scenario (a dict in the scenario file's schema), a pure function of ``seed`` (and of whether the
    traces are there: ``with_traces``, default: look)."""
    split = split_of(seed)
    with_traces = traces_available() if with_traces is None else with_traces
    rng = np.random.default_rng([_SALT, GENERATOR_VERSION, seed])
    large = rng.random() < 0.12
    nodes = round(_log_uniform(rng, 50, MAX_NODES) if large else _log_uniform(rng, MIN_NODES, 50))
    duration = round(_log_uniform(rng, MIN_DURATION_S, 600 if large else MAX_DURATION_S) / 60.0) * 60
    cluster, groups = _cluster(rng, nodes)
    worst_latency = cluster["tier_latency_ms"]["cloud"] + cluster["offload_hop_ms"]
    kinds = [k for k in WORKLOAD_KINDS if with_traces or k not in TRACE_KINDS]
    services = _services(rng, groups, worst_latency, large, kinds)
    load, workload = _workload(rng, groups, services, duration)
    events = _events(rng, groups, services, duration)
    parts = ", ".join(f"{g['count']} {g['prefix']}" + (f" ({g['on']} on)" if "on" in g else "") for g in groups)
    description = (
        f"Generated scenario (split {split}, generator seed {seed}, generator v{GENERATOR_VERSION}): {nodes} nodes ({parts}),"
        f" {len(services)} services, mean utilisation {load:.0%} of the powered capacity;"
        f" workloads {', '.join(w['type'] for w in workload)}; events {', '.join(e['type'] for e in events) or 'none'}."
    )
    return {
        "name": f"gen-{split}-{seed}",
        "description": description,
        "suites": [f"generated-{split}"],
        "seed": seed,
        "duration_s": duration,
        "tick_s": 1.0,
        "cluster": cluster,
        "services": services,
        "workload": workload,
        "events": events,
        "expect": [{"metric": "sla_violation_rate", "max": 0.05}],
    }


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _pick(rng: np.random.Generator, options: list[Any] | tuple[Any, ...]) -> Any:
    return options[int(rng.integers(len(options)))]


def _r(value: float, digits: int = 3) -> float:
    """Rounded for a readable file (three significant digits)."""
    return float(f"{value:.{digits}g}")


def _cluster(rng: np.random.Generator, nodes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Cloud CPU nodes always; edge and GPU groups sometimes, each at least one node."""
    kinds = ["cloud"] + [k for k, p in (("edge", 0.5), ("gpu", 0.33)) if rng.random() < p]
    kinds = kinds[:nodes]
    shares = rng.dirichlet(np.full(len(kinds), 2.0)) * (nodes - len(kinds))
    counts = 1 + np.floor(shares).astype(int)
    counts[0] += nodes - int(counts.sum())
    groups = []
    for kind, count in zip(kinds, counts.tolist(), strict=True):
        if kind == "edge":
            cpus = _pick(rng, [2, 4, 8])
            group = {"prefix": "edge", "count": count, "tier": "edge", "cpus": cpus, "mem_gb": cpus * _pick(rng, [2, 4])}
            group |= {"price_per_h": _r(0.03 * cpus * rng.uniform(0.7, 1.3)), "power_idle_w": 10 * cpus, "power_peak_w": 30 * cpus}
            group["boot_s"] = int(rng.integers(10, 40))
        else:
            cpus = _pick(rng, [8, 16, 32, 64]) if kind == "cloud" else _pick(rng, [32, 64])
            group = {"prefix": "gpu" if kind == "gpu" else "cloud", "count": count, "tier": "cloud", "cpus": cpus}
            group["mem_gb"] = cpus * _pick(rng, [2, 4, 8])
            gpus = _pick(rng, [1, 2, 4, 8]) if kind == "gpu" else 0
            if gpus:
                group["gpus"] = gpus
            price = 0.05 * cpus + 2.5 * gpus
            group |= {"price_per_h": _r(price * rng.uniform(0.8, 1.2)), "power_idle_w": 5 * cpus + 60 * gpus}
            group |= {"power_peak_w": 15 * cpus + 300 * gpus, "boot_s": int(rng.integers(30, 150))}
        if rng.random() < 0.35 and count >= 2:
            group["on"] = max(1, round(count * rng.uniform(0.5, 0.95)))
        groups.append(group)
    cluster = {
        "nodes": groups,
        "tier_latency_ms": {"edge": _r(rng.uniform(1, 10)), "cloud": _r(rng.uniform(5, 40))},
        "offload_hop_ms": _r(rng.uniform(2, 15)),
        "routing": _pick(rng, ["replicas", "least-loaded"]),
    }
    return cluster, groups


def _services(
    rng: np.random.Generator, groups: list[dict[str, Any]], worst_latency_ms: float, large: bool, kinds: list[str]
) -> list[dict[str, Any]]:
    """Services, each with the workload kind it will get (``_kind``, removed before writing): bursty kinds (batch
    and the Alibaba replay) get the looser SLOs batch work has (at least 30x their work)."""
    has_gpu = any(g.get("gpus", 0) for g in groups)
    count = int(rng.integers(1, 9 if large else 7))
    services = []
    for j in range(count):
        kind = _pick(rng, kinds)
        gpu = has_gpu and rng.random() < 0.33
        home = _pick(rng, [g for g in groups if g.get("gpus", 0)] if gpu else groups)
        work = _r(_log_uniform(rng, MIN_WORK_MS, MAX_WORK_MS))
        lowest = min(MAX_SLO_FACTOR, max(MIN_SLO_FACTOR, 1.5 * (work + worst_latency_ms) / work, 30.0 if kind in _BURSTY else 0.0))
        slo = min(max(_r(work * _log_uniform(rng, lowest, MAX_SLO_FACTOR)), MIN_SLO_FACTOR * work), MAX_SLO_FACTOR * work)
        cpu = _pick(rng, [c for c in (0.25, 0.5, 1.0, 2.0, 4.0) if c <= home["cpus"] / 2])
        mem = _log_uniform(rng, 64, min(16_384, home["mem_gb"] * 1024 / 2))
        service = {"name": f"{'g' if gpu else 's'}{j}", "kind": "gpu" if gpu else "cpu", "work_ms": work, "slo_ms": slo}
        service |= {"cold_start_s": _r(_log_uniform(rng, 0.5, 60)), "mem_mb": _r(mem), "cpu": cpu}
        if gpu:
            service["gpus"] = _pick(rng, [n for n in (1, 2) if n <= home["gpus"]])
        service["concurrency"] = int(rng.integers(2, 17)) if rng.random() < 0.33 else 1
        service["timeout_s"] = _r(max(10.0, slo / 1000 * rng.uniform(2, 10)))
        service["min_replicas"] = int(rng.integers(0, 3))
        service["_kind"] = kind
        services.append(service)
    return services


_BURSTY = ("batch", "alibaba_batch")


def _capacity(groups: list[dict[str, Any]], service: dict[str, Any]) -> tuple[float, float]:
    """(replicas that fit on the powered nodes, replicas that fit on all nodes) for one service alone."""
    powered = everywhere = 0.0
    for g in groups:
        fits = [g["cpus"] / service["cpu"], g["mem_gb"] * 1024 / service["mem_mb"]]
        if service["kind"] == "gpu":
            fits.append(g.get("gpus", 0) / service["gpus"])
        per_node = math.floor(min(fits))
        powered += per_node * g.get("on", g["count"])
        everywhere += per_node * g["count"]
    return powered, everywhere


def _workload(
    rng: np.random.Generator, groups: list[dict[str, Any]], services: list[dict[str, Any]], duration: int
) -> tuple[float, list[dict[str, Any]]]:
    """Mean rates from a utilisation target shared over the services; one workload entry per service."""
    load = float(rng.uniform(0.2, 0.7))
    shares = rng.dirichlet(np.full(len(services), 1.5))
    entries = []
    for service, share in zip(services, shares.tolist(), strict=True):
        powered, everywhere = _capacity(groups, service)
        busy = max(0.05, load * share * powered)  # replicas' worth of busy time on average
        per_replica_rps = service["concurrency"] / (service["work_ms"] / 1000.0)
        service["max_replicas"] = max(service["min_replicas"], 1, int(min(everywhere, math.ceil(4 * busy) + 2)))
        initial = math.ceil(busy * rng.uniform(0.5, 1.5))
        service["initial_replicas"] = min(service["max_replicas"], max(service["min_replicas"], initial))
        # a burst a service holding its mean load at 60% utilisation drains within a share of its SLO
        drain = rng.uniform(0.1, 0.5) * min(service["slo_ms"] / 1000.0, service["timeout_s"]) * per_replica_rps * max(1.0, busy / 0.6)
        ceiling = 0.9 * powered * per_replica_rps
        entry = _entry(rng, service.pop("_kind"), service["name"], busy * per_replica_rps, drain, duration, ceiling)
        entries.append(_clip_peaks(entry, ceiling))
    return load, entries


def _clip_peaks(entry: dict[str, Any], ceiling: float) -> dict[str, Any]:
    """Synthetic peaks held under the powered capacity's rate (what the replicas that fit could serve)."""
    if entry["type"] == "diurnal":
        entry["peak_rps"] = max(entry["base_rps"], min(entry["peak_rps"], _r(ceiling)))
    elif entry["type"] == "mmpp":
        entry["rates_rps"] = [min(r, _r(ceiling)) for r in entry["rates_rps"]]
    return entry


def _entry(rng: np.random.Generator, kind: str, name: str, rate: float, burst: float, duration: int, peak: float) -> dict[str, Any]:
    """One workload entry of ``kind`` whose mean rate is about ``rate`` requests per second (at most, for the bursty
    replays, whose bursts are scaled to about ``burst`` requests)."""
    if kind == "poisson":
        return {"service": name, "type": "poisson", "rps": _r(rate)}
    if kind == "diurnal":
        ratio = rng.uniform(1.5, 4.0)
        base = 2 * rate / (1 + ratio)
        period = _r(duration * rng.uniform(0.5, 2.0))
        entry = {"service": name, "type": "diurnal", "base_rps": _r(base), "peak_rps": _r(base * ratio), "period_s": period}
        return entry | {"phase_s": _r(rng.uniform(0, period))}
    if kind == "mmpp":
        states = int(rng.integers(2, 4))
        levels = np.exp(rng.uniform(math.log(0.3), math.log(3.0), states))
        dwell = rng.uniform(30, 300, states)
        levels *= rate / (levels @ dwell / dwell.sum())  # time-weighted mean = rate (jumps go to a uniform other state)
        return {"service": name, "type": "mmpp", "rates_rps": [_r(x) for x in levels], "mean_dwell_s": [_r(x) for x in dwell]}
    if kind == "batch":
        mean = max(1.0, min(burst, rate / 0.01))  # at least one submission per 100 s on average
        entry = {"service": name, "type": "batch", "jobs_per_s": _r(rate / mean), "mean_instances": _r(mean)}
        if rng.random() < 0.5:
            entry |= {"size": "pareto", "shape": _r(rng.uniform(1.2, 2.5))}
        else:
            entry |= {"size": "lognormal", "shape": _r(rng.uniform(0.5, 2.0))}
        return entry | {"max_instances": math.ceil(20 * mean)}
    replay = _replay_entry(rng, kind, name, rate, burst, duration, peak)
    return replay if replay is not None else {"service": name, "type": "poisson", "rps": _r(rate)}


def _replay_entry(
    rng: np.random.Generator, kind: str, name: str, rate: float, burst: float, duration: int, peak: float
) -> dict[str, Any] | None:
    """A trace replay at a random offset and speed, scaled so that its mean over the run is ``rate`` (Azure
    Functions: and its 95th-percentile minute at most ``peak``; Alibaba: and its 99th-percentile busy second at most
    ``burst``). None where the window holds nothing."""
    root = traces_dir()
    if kind == "azure_functions":
        seconds_per_minute = _pick(rng, [6.0, 15.0, 30.0, 60.0])
        per_minute = _azure_functions_counts(str(root / "azure_functions_2019_sample500"))
        minutes = min(per_minute.shape[1], math.ceil(duration / seconds_per_minute))
        start = int(rng.integers(0, per_minute.shape[1] - minutes + 1))
        skip = int(rng.integers(0, per_minute.shape[0]))
        window = per_minute[skip, start : start + minutes] / seconds_per_minute
        scale = min(rate / window.mean(), peak / np.percentile(window, 95)) if window.sum() else 0.0
        entry = {"type": "azure_functions", "path": TRACE_KINDS[kind], "services": [name], "skip_top": skip}
        entry |= {"seconds_per_minute": seconds_per_minute, "start_minute": start, "use_trace_profile": False}
    elif kind == "azure_llm":
        which = _pick(rng, ["code", "conv"])
        speedup = _r(rng.uniform(1, 4))
        span, requests = _azure_llm_span(str(root / "azure_llm_inference_2023" / f"AzureLLMInferenceTrace_{which}.csv"))
        scale = rate / (requests / (span / speedup))
        entry = {"type": "azure_llm", "path": TRACE_KINDS[kind].format(which=which), "service": name, "speedup": speedup, "loop": True}
    else:
        speedup = _pick(rng, [1.0, 2.0, 4.0, 8.0])
        create_s, instances = _alibaba_tasks(str(root / "alibaba_batch_v2017" / "batch_task.csv"))
        span = duration * speedup
        for _ in range(8):  # a window with submissions in at least one second in twenty
            start = float(np.floor(rng.uniform(create_s[0], max(create_s[0], create_s[-1] - span))))
            inside = (create_s >= start) & (create_s < start + span)
            if np.unique(np.floor(create_s[inside])).size >= duration / 20:
                break
        ticks = np.floor((create_s[inside] - start) / speedup).astype(np.int64)
        per_tick = np.bincount(ticks, weights=instances[inside], minlength=duration)
        busy = per_tick[per_tick > 0]
        scale = min(rate / per_tick.mean(), burst / np.percentile(busy, 99)) if busy.size else 0.0
        entry = {"type": "alibaba_batch", "path": TRACE_KINDS[kind], "services": [name], "start_s": start, "speedup": speedup}
    if scale <= 0:
        return None
    entry["scale"] = float(f"{scale:.4g}")
    return entry


@lru_cache(maxsize=4)
def _azure_functions_counts(directory: str) -> np.ndarray:
    """Per-minute counts of the busiest functions, busiest first (what ``skip_top`` indexes)."""
    trace = workloads.read_azure_functions(directory)
    return trace.counts[workloads.top_functions(trace, 10)]


@lru_cache(maxsize=4)
def _azure_llm_span(path: str) -> tuple[float, int]:
    arrival = workloads.read_azure_llm(path).arrival_s
    return float(arrival[-1] + 1.0), int(arrival.size)


@lru_cache(maxsize=2)
def _alibaba_tasks(path: str) -> tuple[np.ndarray, np.ndarray]:
    trace = workloads.read_alibaba_batch(path)
    return trace.create_s, trace.instances


def _events(rng: np.random.Generator, groups: list[dict[str, Any]], services: list[dict[str, Any]], duration: int) -> list[dict[str, Any]]:
    """0 to 4 anomalies at random times; a node_recovery follows most failures that have no duration."""
    names = [f"{g['prefix']}-{i}" for g in groups for i in range(g["count"])]
    tiers = sorted({g["tier"] for g in groups})
    count = int(rng.choice([0, 1, 2, 3, 4], p=[0.1, 0.35, 0.3, 0.15, 0.1]))
    events: list[dict[str, Any]] = []

    def at() -> int:
        return int(rng.integers(int(0.05 * duration), int(0.85 * duration)))

    def some_nodes() -> str | list[str]:
        k = int(rng.integers(1, max(2, len(names) // 20 + 1)))
        picked = sorted(rng.choice(len(names), size=min(k, len(names)), replace=False).tolist())
        return names[picked[0]] if len(picked) == 1 else [names[i] for i in picked]

    def maybe_duration(event: dict[str, Any], probability: float = 0.6) -> dict[str, Any]:
        if rng.random() < probability:
            event["duration_s"] = int(rng.integers(30, max(31, min(600, duration - event["at_s"]))))
        return event

    for _ in range(count):
        kind = _pick(rng, _DRAWN_EVENTS)
        start = at()
        if kind == "traffic_spike":
            service = "*" if rng.random() < 0.25 else _pick(rng, services)["name"]
            event = {"at_s": start, "type": kind, "service": service, "factor": _r(rng.uniform(1.5, 3.0))}
            events.append(event | {"duration_s": int(rng.integers(30, max(31, min(300, duration // 3))))})
        elif kind == "node_failure":
            event = maybe_duration({"at_s": start, "type": kind, "node": some_nodes()}, 0.4)
            events.append(event)
            if "duration_s" not in event and rng.random() < 0.75:
                back = int(rng.integers(start + 1, duration))
                events.append({"at_s": back, "type": "node_recovery", "node": event["node"]})
        elif kind == "straggler":
            events.append(maybe_duration({"at_s": start, "type": kind, "node": some_nodes(), "slowdown": _r(rng.uniform(1.5, 5.0))}))
        elif kind == "network_degradation":
            event = {"at_s": start, "type": kind, "tier": _pick(rng, tiers), "added_latency_ms": _r(_log_uniform(rng, 10, 300))}
            events.append(maybe_duration(event, 1.0))
        elif kind == "cold_start_storm":
            event: dict[str, Any] = {"at_s": start, "type": kind}
            if rng.random() < 0.4:
                event["tier"] = _pick(rng, tiers)
            if rng.random() < 0.4:
                event["services"] = sorted(
                    rng.choice([s["name"] for s in services], size=int(rng.integers(1, len(services) + 1)), replace=False).tolist()
                )
            events.append(event)
        else:
            events.append(
                maybe_duration(
                    {
                        "at_s": start,
                        "type": kind,
                        "tier": _pick(rng, tiers),
                        "factor": _r(_pick(rng, [rng.uniform(0.4, 0.8), rng.uniform(1.3, 3.0)])),
                    }
                )
            )
    return sorted(events, key=lambda e: e["at_s"])
