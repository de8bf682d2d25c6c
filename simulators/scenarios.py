"""Scenario files: YAML -> validated model -> a compiled scenario the simulator runs. Called by simulators.env,
the ``ama sim`` command, the evals and the runtime; feeds simulators.cluster (config, arrival matrix, events).

A scenario names a cluster (node groups), services, a workload per service (synthetic or trace replay), an anomaly
timeline, a duration, a seed and expectations. Validation is strict (unknown fields are errors) and every error is
one line naming the file, the line and the field: ``ScenarioError("s.yaml:14: events[1].factor: ...")``.

Trace paths that start with ``traces/`` are looked up in the shared trace folder (``$AMA_TRACES_DIR``, default
``<repo>/../shared/data/traces``); other relative paths are relative to the scenario file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulators import workloads
from simulators.cluster import Cluster, ClusterConfig, Event, NodeSpec, ServiceSpec, Workload
from simulators.errors import ConfigError, ScenarioError, TraceFormatError

REPO_ROOT = Path(__file__).resolve().parents[1]
SCENARIO_DIR = REPO_ROOT / "evals" / "scenarios"

# ----------------------------------------------------------------------------------------------- ranges
# Every number a scenario gives has a stated range, chosen from what the simulator represents and what runs on one
# machine: a file outside them is a one-line error naming the field and the bound, never a traceback from numpy.
MAX_NODES = 10_000
"""Nodes in a cluster (the benchmarks run 1,000; per-node Python at load time grows with this)."""
MAX_SERVICES = 64
MAX_TICKS = 5_000_000
MAX_TICK_CELLS = 50_000_000
"""ticks x services: the arrival matrix and the work scales are two float64 arrays of this many cells (800 MB)."""
MAX_NODE_CELLS = 1_000_000
"""nodes x services: each cell array of the simulator (warm, booting, queues ...) has this many."""
MAX_RING_CELLS = 50_000_000
"""(longest cold start in ticks + 1) x nodes x services: the ring of pending replica starts."""
MAX_RPS = 1e9
"""Arrivals per second of one service, after traffic spikes: Poisson draws stay exact far above it."""
MAX_FACTOR = 1e4
"""Traffic-spike, price and scale factors; straggler slowdowns."""
MAX_SECONDS = 2_592_000.0
"""30 days: durations, cold starts, boots, timeouts, dwell times, periods."""
MAX_MS = 3_600_000.0
"""One hour: work per request, network latencies."""
MAX_SEED = 2**63 - 1
"""Seeds are non-negative (numpy's generators take no negative seed)."""
MAX_FILE_BYTES = 16 * 1024 * 1024
"""A scenario file's size (the shipped ones are a few KB)."""
MAX_MMPP_VISITS = 10_000_000
"""Expected state visits of an MMPP over the run (duration over its shortest mean dwell)."""


def _range(low: float, high: float, low_open: bool = False) -> Any:
    lower = {"gt": low} if low_open else {"ge": low}
    return Annotated[float, Field(le=high, allow_inf_nan=False, **lower)]


def _count(low: int, high: int) -> Any:
    return Annotated[int, Field(ge=low, le=high)]


Rate = _range(0, MAX_RPS)
Positive = _range(0, MAX_SECONDS, low_open=True)
"""Seconds (or another positive quantity) up to 30 days."""
NonNegative = _range(0, MAX_SECONDS)
Milliseconds = _range(0, MAX_MS, low_open=True)
LatencyMs = _range(0, MAX_MS)
Factor = _range(0, MAX_FACTOR, low_open=True)
Scale = _range(0, 1e6, low_open=True)
"""A trace replay's scale (the rate it reaches is bounded by MAX_RPS, checked where arrivals are formed)."""


def traces_dir() -> Path:
    """Where ``traces/...`` paths in scenarios point: ``$AMA_TRACES_DIR`` or the shared folder beside the repo."""
    return Path(os.environ.get("AMA_TRACES_DIR", REPO_ROOT.parent / "shared" / "data" / "traces"))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeGroup(Strict):
    prefix: str
    count: _count(1, MAX_NODES)  # type: ignore[valid-type]
    tier: Literal["edge", "cloud"] = "cloud"
    cpus: _range(0, 4096, low_open=True) = 16  # type: ignore[valid-type]
    mem_gb: _range(0, 1_048_576, low_open=True) = 64  # type: ignore[valid-type]
    gpus: _count(0, 1024) = 0  # type: ignore[valid-type]
    speed: _range(1e-3, 1e3) = 1.0  # type: ignore[valid-type]
    price_per_h: _range(0, 1e5) = 0.8  # type: ignore[valid-type]
    power_idle_w: _range(0, 1e6) = 100  # type: ignore[valid-type]
    power_peak_w: _range(0, 1e6) = 300  # type: ignore[valid-type]
    boot_s: NonNegative = 60
    on: _count(0, MAX_NODES) | None = None  # type: ignore[valid-type]
    """How many of the group are on at t=0 (default: all); the rest are off, available to add."""

    @model_validator(mode="after")
    def _check(self) -> NodeGroup:
        if self.power_peak_w < self.power_idle_w:
            raise ValueError("power_peak_w must be >= power_idle_w")
        if self.on is not None and self.on > self.count:
            raise ValueError("on must be <= count")
        return self


class TierLatency(Strict):
    edge: LatencyMs = 5.0
    cloud: LatencyMs = 25.0


class ClusterModel(Strict):
    nodes: Annotated[list[NodeGroup], Field(min_length=1, max_length=1000)]
    tier_latency_ms: TierLatency = TierLatency()
    offload_hop_ms: LatencyMs = 10.0
    routing: Literal["replicas", "least-loaded"] = "replicas"


class ServiceModel(Strict):
    name: str
    kind: Literal["cpu", "gpu"] = "cpu"
    work_ms: _range(1e-3, MAX_MS) = 40  # type: ignore[valid-type]
    slo_ms: _range(1e-3, 1000 * MAX_SECONDS) = 300  # type: ignore[valid-type]
    cold_start_s: NonNegative = 5
    mem_mb: _range(0, 1_073_741_824, low_open=True) = 512  # type: ignore[valid-type]
    cpu: _range(0, 4096, low_open=True) = 1.0  # type: ignore[valid-type]
    gpus: _count(0, 1024) | None = None  # type: ignore[valid-type]
    """GPUs per replica (default 1 for gpu services, 0 for cpu services)."""
    concurrency: _count(1, 100_000) = 1  # type: ignore[valid-type]
    timeout_s: Positive = 30
    min_replicas: _count(0, 1_000_000) = 1  # type: ignore[valid-type]
    max_replicas: _count(1, 1_000_000) = 64  # type: ignore[valid-type]
    initial_replicas: _count(0, 1_000_000) | None = None  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> ServiceModel:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class ConstantLoad(Strict):
    type: Literal["constant", "poisson"]
    service: str
    rps: Rate


class DiurnalLoad(Strict):
    type: Literal["diurnal"]
    service: str
    base_rps: Rate
    peak_rps: Rate
    period_s: Positive = 86400
    phase_s: _range(-MAX_SECONDS, MAX_SECONDS) = 0.0  # type: ignore[valid-type]


class MMPPLoad(Strict):
    type: Literal["mmpp"]
    service: str
    rates_rps: Annotated[list[Rate], Field(min_length=2, max_length=64)]
    mean_dwell_s: Annotated[list[_range(1e-3, MAX_SECONDS)], Field(min_length=2, max_length=64)]  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _check(self) -> MMPPLoad:
        if len(self.rates_rps) != len(self.mean_dwell_s):
            raise ValueError("rates_rps and mean_dwell_s must have the same length")
        return self


class BatchLoad(Strict):
    type: Literal["batch"]
    service: str
    jobs_per_s: _range(0, 1e6)  # type: ignore[valid-type]
    """Mean job submissions per second (a Poisson process); every instance of a job arrives in its tick."""
    mean_instances: _range(1, 1e7) = 100  # type: ignore[valid-type]
    """Mean instances per job (each instance is one request of the service's work_ms)."""
    size: Literal["pareto", "lognormal"] = "pareto"
    """The job-size distribution: heavy-tailed either way (a few jobs bring most of the instances)."""
    shape: _range(0.01, 100) = 1.5  # type: ignore[valid-type]
    """Pareto: the tail index (> 1; smaller is heavier, 1.5 has an infinite variance); lognormal: sigma of the log."""
    max_instances: _count(1, 1_000_000_000) | None = None  # type: ignore[valid-type]
    """Cap on one job's instances (default: none)."""

    @model_validator(mode="after")
    def _check(self) -> BatchLoad:
        if self.jobs_per_s * self.mean_instances > MAX_RPS:
            raise ValueError(f"jobs_per_s x mean_instances is {self.jobs_per_s * self.mean_instances:.3g} requests/s, above {MAX_RPS:.0e}")
        if self.size == "pareto" and self.shape <= 1:
            raise ValueError("a Pareto job size needs shape > 1 (a finite mean)")
        return self


class AlibabaBatchLoad(Strict):
    type: Literal["alibaba_batch"]
    path: str
    """The trace's batch_task.csv, e.g. traces/alibaba_batch_v2017/batch_task.csv."""
    services: Annotated[list[str], Field(min_length=1)]
    """Scenario services the tasks are dealt to (see split); each task's instances are requests of one service."""
    split: Literal["job", "cpu", "duration"] = "job"
    """How tasks are dealt to services: ``job`` by a hash of the job id (a job's tasks stay together, shares about
    even); ``cpu`` by CPU request per instance in cores, ``duration`` by the task's seconds from create to end, each
    in ascending bands cut at ``bounds`` (no CPU request: the first band; not ended by the trace's end: the last)."""
    bounds: list[_range(0, 1e12, low_open=True)] = []  # type: ignore[valid-type]
    """For split cpu or duration: len(services) - 1 ascending cut points; a task goes to the first service whose
    bound its value is below, the last service takes the rest. E.g. duration [60]: tasks under a minute, the rest."""
    start_s: _range(-1e9, 1e9) = 0.0  # type: ignore[valid-type]
    """Trace time (s since the trace's start) replayed at t=0; tasks created before it are left out."""
    speedup: _range(1e-3, 1e6) = 1.0  # type: ignore[valid-type]
    """Time compression: trace seconds per simulated second (a task created at c arrives at (c - start_s) / speedup)."""
    scale: Scale = 1.0
    """Instances per trace instance (0.01 keeps one in a hundred at random, bursts stay bursts)."""

    @model_validator(mode="after")
    def _check(self) -> AlibabaBatchLoad:
        if self.split == "job" and self.bounds:
            raise ValueError("bounds are only for split cpu or duration")
        if self.split != "job" and len(self.bounds) != len(self.services) - 1:
            raise ValueError(f"split {self.split} over {len(self.services)} services needs {len(self.services) - 1} bounds")
        if any(b <= a for a, b in zip(self.bounds, self.bounds[1:], strict=False)):
            raise ValueError("bounds must be ascending")
        return self


class AzureFunctionsLoad(Strict):
    type: Literal["azure_functions"]
    path: str
    services: Annotated[list[str], Field(min_length=1)]
    """Scenario services that replay the trace's busiest functions, busiest first."""
    skip_top: _count(0, 1_000_000) = 0  # type: ignore[valid-type]
    """Skip this many of the busiest functions first (the sample's busiest function has 63% of all calls)."""
    seconds_per_minute: _range(1e-3, 86_400) = 60.0  # type: ignore[valid-type]
    """Simulated seconds per trace minute (60 = real time; 6 replays ten times faster)."""
    start_minute: _count(0, 10_000_000) = 0  # type: ignore[valid-type]
    scale: Scale = 1.0
    use_trace_profile: bool = True
    """Take each service's work_ms and mem_mb from the trace's average duration and memory."""


class AzureLLMLoad(Strict):
    type: Literal["azure_llm"]
    path: str
    service: str
    speedup: _range(1e-3, 1e6) = 1.0  # type: ignore[valid-type]
    scale: Scale = 1.0
    prefill_ms_per_token: _range(0, 1e4) = 0.02  # type: ignore[valid-type]
    decode_ms_per_token: _range(0, 1e4) = 1.0  # type: ignore[valid-type]
    """With prefill_ms_per_token, the relative cost of each request: the service's work_ms is the trace mean and
    each tick's work is scaled by its requests' mean cost."""
    loop: bool = False


class CsvLoad(Strict):
    type: Literal["csv"]
    path: str
    rename: dict[str, str] = {}
    """CSV service name -> scenario service name, where they differ."""
    scale: Scale = 1.0


WorkloadEntry = Annotated[
    ConstantLoad | DiurnalLoad | MMPPLoad | BatchLoad | AzureFunctionsLoad | AzureLLMLoad | AlibabaBatchLoad | CsvLoad,
    Field(discriminator="type"),
]


class EventBase(Strict):
    at_s: NonNegative
    duration_s: Positive | None = None


class TrafficSpike(EventBase):
    type: Literal["traffic_spike"]
    service: str
    """A service name, or ``"*"`` for all."""
    factor: Factor
    duration_s: Positive


class NodeFailure(EventBase):
    type: Literal["node_failure"]
    node: str | list[str]


class NodeRecovery(Strict):
    type: Literal["node_recovery"]
    at_s: NonNegative
    node: str | list[str]


class Straggler(EventBase):
    type: Literal["straggler"]
    node: str | list[str]
    slowdown: _range(1, MAX_FACTOR)  # type: ignore[valid-type]


class NetworkDegradation(EventBase):
    type: Literal["network_degradation"]
    tier: Literal["edge", "cloud"]
    added_latency_ms: Milliseconds


class ColdStartStorm(Strict):
    type: Literal["cold_start_storm"]
    at_s: NonNegative
    tier: Literal["edge", "cloud"] | None = None
    """Only this tier's replicas are evicted (default: every tier)."""
    services: list[str] | None = None
    """Only these services (default: all)."""


class PriceChange(EventBase):
    type: Literal["price_change"]
    tier: Literal["edge", "cloud"]
    factor: _range(1 / MAX_FACTOR, MAX_FACTOR)  # type: ignore[valid-type]


EventEntry = Annotated[
    TrafficSpike | NodeFailure | NodeRecovery | Straggler | NetworkDegradation | ColdStartStorm | PriceChange,
    Field(discriminator="type"),
]


class Expectation(Strict):
    metric: str
    max: _range(-1e18, 1e18) | None = None  # type: ignore[valid-type]
    min: _range(-1e18, 1e18) | None = None  # type: ignore[valid-type]
    controller: str | None = None
    """Only check for this controller (default: every controller)."""

    @model_validator(mode="after")
    def _check(self) -> Expectation:
        if self.max is None and self.min is None:
            raise ValueError("an expectation needs max or min")
        return self


class ScenarioSpec(Strict):
    name: str
    description: str = ""
    seed: _count(0, MAX_SEED) = 0  # type: ignore[valid-type]
    duration_s: Positive
    tick_s: _range(1e-3, 3600) = 1.0  # type: ignore[valid-type]
    cluster: ClusterModel
    services: Annotated[list[ServiceModel], Field(min_length=1, max_length=MAX_SERVICES)]
    workload: Annotated[list[WorkloadEntry], Field(min_length=1, max_length=1000)]
    events: Annotated[list[EventEntry], Field(max_length=10_000)] = []
    expect: list[Expectation] = []
    suites: list[str] = []
    """Evaluation suites this scenario belongs to (e.g. smoke, standard)."""


@dataclass(frozen=True)
class Scenario:
    """A validated, compiled scenario: what the simulator needs to run it."""

    spec: ScenarioSpec
    path: Path | None
    config: ClusterConfig
    workload: Workload
    events: tuple[Event, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ticks(self) -> int:
        return int(self.workload.arrivals.shape[0])

    def make_cluster(self) -> Cluster:
        return Cluster(self.config, self.workload, list(self.events))


# ----------------------------------------------------------------------------------------------- loading
def load_scenario(path: str | os.PathLike[str], seed: int | None = None, duration_s: float | None = None) -> Scenario:
    """Read, validate and compile a scenario file. ``seed`` and ``duration_s`` override the file's values (a shorter
    duration drops the events after it)."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(path, "file not found")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ScenarioError(
            path, f"{path.stat().st_size} bytes: more than the {MAX_FILE_BYTES} a scenario file may have (traces go in trace files)"
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ScenarioError(
            path, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}): is it a binary file?", line=line
        ) from None
    if "\x00" in text:
        raise ScenarioError(path, "not text: it holds NUL bytes (a binary file?)", line=text[: text.index("\x00")].count("\n") + 1)
    try:
        root = yaml.compose(text)
        _refuse_duplicate_keys(path, root)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise ScenarioError(path, f"not valid YAML: {getattr(exc, 'problem', exc)}", line=line) from None
    if not isinstance(data, dict):
        raise ScenarioError(path, "a scenario must be a YAML mapping", line=1)
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        raise ScenarioError(path, _pydantic_message(err), field=_field_name(loc), line=_line_of(root, loc)) from None
    overrides: dict[str, Any] = {}
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ScenarioError(path, f"seed {seed}: a seed must be between 0 and {MAX_SEED}")
    if duration_s is not None and not 0 < duration_s <= MAX_SECONDS:
        raise ScenarioError(path, f"duration {duration_s:g} s: must be above 0 and at most {MAX_SECONDS:g} s")
    if seed is not None:
        overrides["seed"] = seed
    if duration_s is not None:  # a shortened run: events after its end simply do not happen
        overrides["duration_s"] = duration_s
        overrides["events"] = [e for e in spec.events if e.at_s < duration_s]
    if overrides:
        spec = spec.model_copy(update=overrides)
    return compile_scenario(spec, path, root)


def compile_scenario(spec: ScenarioSpec, path: Path | None = None, root: yaml.Node | None = None) -> Scenario:
    """Check names across sections, then build the cluster config, the arrival matrix and the events."""

    def fail(problem: str, loc: tuple[str | int, ...]) -> ScenarioError:
        return ScenarioError(path or spec.name, problem, field=_field_name(loc), line=_line_of(root, loc))

    total_nodes = sum(group.count for group in spec.cluster.nodes)
    if total_nodes > MAX_NODES:
        raise fail(f"the node groups add up to {total_nodes} nodes, more than the {MAX_NODES} a cluster may have", ("cluster", "nodes"))
    _check_sizes(spec, total_nodes, fail)
    nodes = _expand_nodes(spec.cluster.nodes)
    node_index = {n.name: i for i, n in enumerate(nodes)}
    if len(node_index) != len(nodes):
        raise fail("node names repeat (prefixes overlap)", ("cluster", "nodes"))
    service_names = [s.name for s in spec.services]
    if len(set(service_names)) != len(service_names):
        raise fail("service names repeat", ("services",))
    for i, s in enumerate(spec.services):
        if s.kind == "gpu" and not any(n.gpus >= (s.gpus or 1) for n in nodes):
            raise fail(f"gpu service {s.name!r} fits on no node (no node has {s.gpus or 1} GPUs)", ("services", i, "kind"))
        largest_cpus, largest_mb = max(n.cpus for n in nodes), max(n.mem_gb for n in nodes) * 1024
        if s.cpu > largest_cpus:
            problem = f"service {s.name!r} fits on no node: a replica needs {s.cpu:g} CPUs, the largest node has {largest_cpus:g}"
            raise fail(problem, ("services", i, "cpu"))
        if s.mem_mb > largest_mb:
            problem = f"service {s.name!r} fits on no node: a replica needs {s.mem_mb:g} MB, the largest node has {largest_mb:g} MB"
            raise fail(problem, ("services", i, "mem_mb"))
        gpus = s.gpus if s.gpus is not None else (1 if s.kind == "gpu" else 0)
        if not any(n.cpus >= s.cpu and n.mem_gb * 1024 >= s.mem_mb and n.gpus >= gpus for n in nodes):
            raise fail(f"service {s.name!r} fits on no node: none has its CPUs, memory and GPUs at once", ("services", i))
    ticks = round(spec.duration_s / spec.tick_s)
    if ticks < 1:
        raise fail("duration_s is shorter than one tick", ("duration_s",))

    rng = np.random.default_rng(spec.seed)
    services = [_service_spec(s) for s in spec.services]
    builder = _ArrivalBuilder(ticks, spec.tick_s, service_names, rng)
    for w_index, entry in enumerate(spec.workload):
        profile = builder.add(entry, path, lambda name, field, w=w_index: _require(name, service_names, fail, ("workload", w, field)))
        for name, work_ms, mem_mb in profile:
            j = service_names.index(name)
            services[j] = replace(services[j], work_ms=work_ms, mem_mb=mem_mb)

    events: list[Event] = []
    multiplier = np.ones((ticks, len(services)))
    tier_of = [n.tier for n in nodes]
    for e_index, ev in enumerate(spec.events):
        at_tick = round(ev.at_s / spec.tick_s)
        duration = getattr(ev, "duration_s", None)
        duration_ticks = None if duration is None else max(1, round(duration / spec.tick_s))
        loc = ("events", e_index)
        if at_tick >= ticks:
            raise fail(f"at_s {ev.at_s} is after the end of the scenario ({spec.duration_s} s)", (*loc, "at_s"))
        if isinstance(ev, TrafficSpike):
            svc = list(range(len(services))) if ev.service == "*" else [_require(ev.service, service_names, fail, (*loc, "service"))]
            multiplier[at_tick : at_tick + (duration_ticks or 0), svc] *= ev.factor
            events.append(
                Event(at_tick, ev.type, (), tuple(svc), ev.factor, duration_ticks, f"traffic spike x{ev.factor:g} on {ev.service}")
            )
        elif isinstance(ev, NodeFailure | NodeRecovery | Straggler):
            names = [ev.node] if isinstance(ev.node, str) else ev.node
            idx = tuple(_require(n, node_index, fail, (*loc, "node")) for n in names)
            value = ev.slowdown if isinstance(ev, Straggler) else 1.0
            label = {"node_failure": "node failure", "node_recovery": "node recovery", "straggler": f"straggler x{value:g}"}[ev.type]
            events.append(Event(at_tick, ev.type, idx, (), value, duration_ticks, f"{label} on {', '.join(names)}"))
        elif isinstance(ev, NetworkDegradation | PriceChange):
            idx = tuple(i for i, t in enumerate(tier_of) if t == ev.tier)
            if not idx:
                raise fail(f"no {ev.tier} nodes in this cluster", (*loc, "tier"))
            value = ev.added_latency_ms if isinstance(ev, NetworkDegradation) else ev.factor
            label = f"network +{value:g} ms on {ev.tier}" if isinstance(ev, NetworkDegradation) else f"{ev.tier} price x{value:g}"
            events.append(Event(at_tick, ev.type, idx, (), value, duration_ticks, label))
        elif isinstance(ev, ColdStartStorm):
            idx = tuple(i for i, t in enumerate(tier_of) if ev.tier is None or t == ev.tier)
            svc = (
                tuple(range(len(services)))
                if ev.services is None
                else tuple(_require(s, service_names, fail, (*loc, "services")) for s in ev.services)
            )
            events.append(Event(at_tick, ev.type, idx, svc, 1.0, None, f"cold-start storm on {ev.tier or 'all'} nodes"))

    config = ClusterConfig(
        nodes=tuple(nodes),
        services=tuple(services),
        tick_s=spec.tick_s,
        tier_latency_ms=(spec.cluster.tier_latency_ms.edge, spec.cluster.tier_latency_ms.cloud),
        offload_hop_ms=spec.cluster.offload_hop_ms,
        routing=spec.cluster.routing,
    )
    peak = builder.peak_rps(multiplier)
    if peak.max(initial=0.0) > MAX_RPS:
        j = int(peak.argmax())
        where = ("events",) if multiplier[:, j].max() > 1 else ("workload",)
        raise fail(
            f"service {service_names[j]!r} would get {peak[j]:.3g} requests/s (workload x traffic spikes), "
            f"above the {MAX_RPS:.0e} the simulator draws",
            where,
        )
    arrivals, work_scale = builder.finish(multiplier)
    return Scenario(spec, path, config, Workload(arrivals, work_scale), tuple(events))


def generated_dir() -> Path:
    """Where the generated suites are cached: ``$AMA_GENERATED_DIR`` or ``<repo>/out/generated``."""
    return Path(os.environ.get("AMA_GENERATED_DIR", REPO_ROOT / "out" / "generated"))


def _check_sizes(spec: ScenarioSpec, nodes: int, fail: Any) -> None:
    """The products that bound memory and time, checked where they are formed (each field alone is within range)."""
    ticks = round(spec.duration_s / spec.tick_s)
    services = len(spec.services)
    if ticks > MAX_TICKS:
        raise fail(f"duration_s / tick_s is {ticks} ticks, more than {MAX_TICKS}", ("duration_s",))
    if ticks * services > MAX_TICK_CELLS:
        raise fail(f"{ticks} ticks x {services} services is {ticks * services} cells, more than {MAX_TICK_CELLS} (memory)", ("duration_s",))
    if nodes * services > MAX_NODE_CELLS:
        raise fail(f"{nodes} nodes x {services} services is {nodes * services} cells, more than {MAX_NODE_CELLS} (memory)", ("services",))
    ring = max(math.ceil(s.cold_start_s / spec.tick_s) for s in spec.services) + 1
    if ring * nodes * services > MAX_RING_CELLS:
        raise fail(
            f"the longest cold start is {ring - 1} ticks: {ring} x {nodes} nodes x {services} services of pending starts is more than "
            f"{MAX_RING_CELLS} (memory)",
            ("services",),
        )
    for w, entry in enumerate(spec.workload):
        if isinstance(entry, MMPPLoad) and spec.duration_s / min(entry.mean_dwell_s) > MAX_MMPP_VISITS:
            visits = spec.duration_s / min(entry.mean_dwell_s)
            problem = f"{visits:.3g} expected state visits over the run, more than {MAX_MMPP_VISITS} (raise the dwell)"
            raise fail(problem, ("workload", w, "mean_dwell_s"))


def scenario_files(suite: str | None = None, directory: Path = SCENARIO_DIR) -> list[Path]:
    """Shipped scenario files, optionally only those that list ``suite`` (read without compiling).

    ``generated-<split>`` and ``generated-<split>-<count>`` (split train, validation or test) are the generator's
    scenarios 0 .. count - 1 of that split (default count: simulators.generator.DEFAULT_COUNTS), written on first
    use under ``generated_dir()/v<version>-<traces|no-traces>/<split>/`` and reused after. Several suites separated by
    commas (``standard,generated-test``) are their files in that order, each once."""
    if suite is not None and "," in suite:
        names = [part.strip() for part in suite.split(",") if part.strip()]
        return list(dict.fromkeys(path for name in names for path in scenario_files(name, directory)))
    if suite is not None and suite.startswith("generated-"):
        return _generated_files(suite)
    files = sorted(directory.glob("*.yaml"))
    if suite is None:
        return files
    return [f for f in files if suite in (yaml.safe_load(f.read_text()) or {}).get("suites", [])]


def _generated_files(suite: str) -> list[Path]:
    from simulators import generator  # generator builds on this module's schema

    split, _, count_text = suite.removeprefix("generated-").partition("-")
    if split not in generator.SPLITS or (count_text and not count_text.isdigit()):
        raise ConfigError(
            f"unknown suite {suite!r}; generated suites are generated-<split>[-<count>], split one of {', '.join(generator.SPLITS)}"
        )
    count = int(count_text) if count_text else generator.DEFAULT_COUNTS[split]
    flavour = "traces" if generator.traces_available() else "no-traces"
    folder = generated_dir() / f"v{generator.GENERATOR_VERSION}-{flavour}" / split
    return generator.write_split(split, count, folder, overwrite=False)


# ----------------------------------------------------------------------------------------------- building blocks
def _expand_nodes(groups: Sequence[NodeGroup]) -> list[NodeSpec]:
    nodes = []
    for g in groups:
        on = g.count if g.on is None else g.on
        for i in range(g.count):
            nodes.append(
                NodeSpec(
                    name=f"{g.prefix}-{i}",
                    tier=g.tier,
                    cpus=g.cpus,
                    mem_gb=g.mem_gb,
                    gpus=g.gpus,
                    speed=g.speed,
                    price_per_h=g.price_per_h,
                    power_idle_w=g.power_idle_w,
                    power_peak_w=g.power_peak_w,
                    boot_s=g.boot_s,
                    initially_on=i < on,
                )
            )
    return nodes


def _service_spec(s: ServiceModel) -> ServiceSpec:
    return ServiceSpec(
        name=s.name,
        kind=s.kind,
        work_ms=s.work_ms,
        slo_ms=s.slo_ms,
        cold_start_s=s.cold_start_s,
        mem_mb=s.mem_mb,
        cpu_per_replica=s.cpu,
        gpu_per_replica=(s.gpus if s.gpus is not None else (1 if s.kind == "gpu" else 0)),
        concurrency=s.concurrency,
        timeout_s=s.timeout_s,
        min_replicas=s.min_replicas,
        max_replicas=s.max_replicas,
        initial_replicas=s.initial_replicas,
    )


def _require(name: str, known: Any, fail: Any, loc: tuple[str | int, ...]) -> int:
    """Index of ``name`` in a list or dict of known names, or a ScenarioError naming the field."""
    if isinstance(known, dict):
        if name in known:
            return int(known[name])
    elif name in known:
        return list(known).index(name)
    kind = "node" if isinstance(known, dict) else "service"
    raise fail(f"unknown {kind} {name!r}", loc)


class _ArrivalBuilder:
    """Accumulates expected rates (synthetic loads) and exact counts (trace replays) per service, and work scales."""

    def __init__(self, ticks: int, tick_s: float, services: list[str], rng: np.random.Generator) -> None:
        self.ticks, self.tick_s, self.services, self.rng = ticks, tick_s, services, rng
        self.rates = np.zeros((ticks, len(services)))
        self.counts = np.zeros((ticks, len(services)), dtype=np.int64)
        self.work_scale = np.ones((ticks, len(services)))

    def add(self, entry: Any, scenario_path: Path | None, index_of: Any) -> list[tuple[str, float, float]]:
        """Add one workload entry; returns (service, work_ms, mem_mb) profiles taken from a trace, if any."""
        t = self.ticks
        if isinstance(entry, ConstantLoad):
            self.rates[:, index_of(entry.service, "service")] += workloads.constant_rates(t, self.tick_s, entry.rps)
        elif isinstance(entry, DiurnalLoad):
            rates = workloads.diurnal_rates(t, self.tick_s, entry.base_rps, entry.peak_rps, entry.period_s, entry.phase_s)
            self.rates[:, index_of(entry.service, "service")] += rates
        elif isinstance(entry, MMPPLoad):
            rates = workloads.mmpp_rates(t, self.tick_s, self.rng, entry.rates_rps, entry.mean_dwell_s)
            self.rates[:, index_of(entry.service, "service")] += rates
        elif isinstance(entry, BatchLoad):
            counts = workloads.batch_counts(
                t, self.tick_s, self.rng, entry.jobs_per_s, entry.mean_instances, entry.size, entry.shape, entry.max_instances
            )
            self.counts[:, index_of(entry.service, "service")] += counts
        elif isinstance(entry, AlibabaBatchLoad):
            self._add_alibaba_batch(entry, scenario_path, index_of)
        elif isinstance(entry, AzureFunctionsLoad):
            return self._add_azure_functions(entry, scenario_path, index_of)
        elif isinstance(entry, AzureLLMLoad):
            self._add_azure_llm(entry, scenario_path, index_of)
        elif isinstance(entry, CsvLoad):
            trace_path = resolve_trace_path(entry.path, scenario_path)
            for name, (times, counts) in workloads.read_generic_csv(trace_path).items():
                j = index_of(entry.rename.get(name, name), "rename")
                self.counts[:, j] += self._scaled(self._csv_counts(times, counts), entry.scale)
        return []

    def _csv_counts(self, times: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Arrivals per tick from a generic CSV series. Evenly spaced rows wider than a tick are bins: each row's
        count is spread over its bin at random, keeping its total; other rows land in the tick of their time."""
        steps = np.diff(times)
        width = float(steps[0]) if steps.size else 0.0
        if width > self.tick_s and np.allclose(steps, width) and np.isclose(times[0] % width, 0.0):
            dense = np.zeros(round(times[-1] / width) + 1, dtype=np.int64)
            dense[np.rint(times / width).astype(np.int64)] = counts.astype(np.int64)
            return _fit_length(workloads.minute_counts_to_ticks(dense, self.tick_s, width, self.rng), self.ticks)
        return workloads.generic_counts_to_ticks(times, counts, self.tick_s, self.ticks)

    def _add_azure_functions(self, entry: AzureFunctionsLoad, scenario_path: Path | None, index_of: Any) -> list[tuple[str, float, float]]:
        trace = workloads.read_azure_functions(resolve_trace_path(entry.path, scenario_path))
        picked = workloads.top_functions(trace, entry.skip_top + len(entry.services))[entry.skip_top :]
        if len(picked) < len(entry.services):
            raise TraceFormatError(entry.path, f"has {len(picked)} functions after skip_top, {len(entry.services)} services need one each")
        per_minute = trace.counts[picked, entry.start_minute :]
        ticked = workloads.minute_counts_to_ticks(per_minute, self.tick_s, entry.seconds_per_minute, self.rng)
        profiles = []
        for k, name in enumerate(entry.services):
            j = index_of(name, "services")
            series = _fit_length(ticked[k], self.ticks)
            self.counts[:, j] += self._scaled(series, entry.scale)
            if entry.use_trace_profile:
                f = picked[k]
                work = trace.avg_duration_ms[f]
                mem = trace.app_memory_mb[f]
                profiles.append(
                    (name, float(max(work, 1.0)) if np.isfinite(work) else 40.0, float(max(mem, 16.0)) if np.isfinite(mem) else 256.0)
                )
        return profiles

    def _add_azure_llm(self, entry: AzureLLMLoad, scenario_path: Path | None, index_of: Any) -> None:
        trace = workloads.read_azure_llm(resolve_trace_path(entry.path, scenario_path))
        arrival = trace.arrival_s / entry.speedup
        cost = trace.context_tokens * entry.prefill_ms_per_token + trace.generated_tokens * entry.decode_ms_per_token
        if entry.loop and arrival.size:
            span = arrival[-1] + self.tick_s
            repeats = int(np.ceil(self.ticks * self.tick_s / span))
            arrival = np.concatenate([arrival + k * span for k in range(repeats)])
            cost = np.tile(cost, repeats)
        j = index_of(entry.service, "service")
        counts = workloads.bin_requests(arrival, self.tick_s, self.ticks)
        cost_sum = workloads.bin_requests(arrival, self.tick_s, self.ticks, weights=cost)
        mean_cost = cost.mean() if cost.size and cost.mean() > 0 else 1.0
        self.work_scale[:, j] = np.where(counts > 0, cost_sum / np.maximum(counts, 1) / mean_cost, 1.0)
        self.counts[:, j] += self._scaled(counts, entry.scale)

    def _add_alibaba_batch(self, entry: AlibabaBatchLoad, scenario_path: Path | None, index_of: Any) -> None:
        trace = workloads.read_alibaba_batch(resolve_trace_path(entry.path, scenario_path))
        groups = workloads.alibaba_groups(trace, entry.split, len(entry.services), entry.bounds)
        counts = workloads.alibaba_batch_counts(trace, groups, len(entry.services), self.tick_s, self.ticks, entry.speedup, entry.start_s)
        for k, name in enumerate(entry.services):
            self.counts[:, index_of(name, "services")] += self._scaled(counts[k], entry.scale)

    def _scaled(self, counts: np.ndarray, factor: np.ndarray | float) -> np.ndarray:
        """Counts times a factor, in whole requests: Poisson extra arrivals above 1, binomial thinning below."""
        factor = np.broadcast_to(np.asarray(factor, dtype=np.float64), counts.shape)
        out = counts.astype(np.int64).copy()
        up = factor > 1
        if up.any():
            out[up] += self.rng.poisson(counts[up] * (factor[up] - 1.0))
        down = factor < 1
        if down.any():
            out[down] = self.rng.binomial(out[down], factor[down])
        return out

    def peak_rps(self, multiplier: np.ndarray) -> np.ndarray:
        """Each service's highest arrival rate (S,) once traffic spikes multiply the workload (rates and replayed counts)."""
        scaled = np.max((self.rates + self.counts / self.tick_s) * multiplier, axis=0, initial=0.0)
        return np.where(np.isfinite(scaled), scaled, np.inf)

    def finish(self, multiplier: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arrivals per tick (T, S) with traffic spikes applied, as float64 whole numbers, and the work scales."""
        synthetic = workloads.poisson_counts(self.rates * multiplier, self.tick_s, self.rng)
        replayed = self._scaled(self.counts, multiplier)
        return (synthetic + replayed).astype(np.float64), self.work_scale


def _fit_length(series: np.ndarray, ticks: int) -> np.ndarray:
    if series.size >= ticks:
        return series[:ticks]
    return np.concatenate([series, np.zeros(ticks - series.size, dtype=series.dtype)])


def resolve_trace_path(path: str, scenario_path: Path | None) -> Path:
    if path.startswith("traces/"):
        return traces_dir() / path.removeprefix("traces/")
    p = Path(path)
    if not p.is_absolute() and scenario_path is not None:
        p = scenario_path.parent / p
    return p


# ----------------------------------------------------------------------------------------------- error locations
def _refuse_duplicate_keys(path: Path, root: yaml.Node | None) -> None:
    """A mapping that names a key twice is an error (YAML loaders silently keep the last value)."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, int] = {}
            for key, value in node.value:
                name = getattr(key, "value", None)
                if isinstance(key, yaml.ScalarNode) and name in seen:
                    line = key.start_mark.line + 1
                    raise ScenarioError(path, f"duplicate key {name!r} (first on line {seen[name]})", line=line)
                seen[name] = key.start_mark.line + 1
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _field_name(loc: tuple[Any, ...]) -> str:
    """pydantic's location as a path a person reads: ``events[2].factor`` (union tags dropped)."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest YAML node on the path ``loc``."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                if part in _UNION_TAGS:
                    continue
                break
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _pydantic_message(err: dict[str, Any]) -> str:
    if err["type"] == "missing":
        return "required field is missing"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    if err["type"] == "union_tag_invalid":
        ctx = err.get("ctx", {})
        return f"unknown type {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    if err["type"] == "finite_number":
        return "must be a finite number (not NaN or infinity)"
    return str(err["msg"])


_UNION_TAGS = {
    tag
    for union in (WorkloadEntry, EventEntry)
    for model in get_args(get_args(union)[0])
    for tag in get_args(model.model_fields["type"].annotation)
}
