"""Deterministic anomaly detectors. Fed every ClusterSnapshot by the manager's observe/detect step (and by
evals.detection to score them against the scenarios' injected anomalies); they feed the diagnosis with Anomaly
records: the type, what it concerns, since when, and one sentence of evidence with the numbers.

They read only what a real backend also sees — request rates, latencies, replica counts, node health and prices —
never the simulator's injected slowdowns or delays:

- ``traffic_spike``: a service's arrival rate above its slow EWMA baseline by a factor and by several EWMA deviations,
  for a few ticks in a row (the baseline freezes while the spike lasts).
- ``node_failure``: a node reports failed (health checks).
- ``straggler``: a node processes requests several times slower than the median node running the same services
  (handler durations: queueing from load or placement does not count), for a few ticks.
- ``network_degradation``: the median client round trip to a tier's nodes (RTT probes) rises above its baseline by an
  absolute and a relative margin, for a few ticks.
- ``cold_start_storm``: in one tier, many warm replicas turn into booting ones in one tick (mass eviction or a
  rollout) while the booting count rises by as many, with no node failing.
- ``burst``: a batch submission: in one tick a service's arrivals jump to many times its baseline and leave a
  backlog its warm replicas cannot serve at once (thousands of tasks in one second); active until that backlog drains.
- ``price_change``: a powered node's price per hour changes (billing API) — reported per tier with the factor of the
  change; active while the tier's prices differ from what they were when the run started.
- ``slo_breach``: the cluster's SLA-violation rate stays over the threshold with no other anomaly active — the
  catch-all the diagnosis must explain.

Each detector is edge-triggered: an anomaly is reported once when it starts and is ``active`` until it clears.

Anomaly types live in one registry, ``ANOMALY_KINDS`` (in priority order): the detectors run from it, the graph's
diagnosis ranks by it, the planners key their rules on it and evals.detection maps the scenarios' injected events
to it; tests/manager/test_registry.py fails when a type is missing from any of them.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from simulators.snapshot import ClusterSnapshot


@dataclass(frozen=True)
class AnomalyKind:
    """One anomaly type: its name, what it concerns and which injected scenario events are its ground truth."""

    name: str
    target: str
    """What the anomaly's ``target`` names: ``service``, ``node``, ``tier`` or ``cluster``."""
    injected_by: tuple[str, ...]
    """Scenario event types (simulators.scenarios) that cause it; empty when the ground truth comes from elsewhere
    (``burst``: the arrival matrix; ``slo_breach``: none, it is the catch-all)."""
    detector: str
    """The ``Detectors`` method that reports it."""
    detail: str
    """How a description shows its severity, e.g. `` ({severity:.1f}x)``; empty for none."""


ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    AnomalyKind("node_failure", "node", ("node_failure",), "_failures", ""),
    AnomalyKind("traffic_spike", "service", ("traffic_spike",), "_spikes", " ({severity:.1f}x)"),
    AnomalyKind("burst", "service", (), "_bursts", " ({severity:.0f}x its baseline in one tick)"),
    AnomalyKind("cold_start_storm", "tier", ("cold_start_storm",), "_storm", " ({severity:.0%} of warm replicas)"),
    AnomalyKind("network_degradation", "tier", ("network_degradation",), "_network", " ({severity:.1f}x round trip)"),
    AnomalyKind("straggler", "node", ("straggler",), "_stragglers", " ({severity:.1f}x slower)"),
    AnomalyKind("price_change", "tier", ("price_change",), "_prices_changed", " (prices x{severity:.2f})"),
    AnomalyKind("slo_breach", "cluster", (), "_breach", ""),
)
"""Every anomaly type, most urgent first (the order in which a diagnosis ranks the anomalies in force)."""

ANOMALY_TYPES: tuple[str, ...] = tuple(kind.name for kind in ANOMALY_KINDS)
KIND_BY_NAME: dict[str, AnomalyKind] = {kind.name: kind for kind in ANOMALY_KINDS}


def priority(anomaly_type: str) -> int:
    """Rank of a type in ``ANOMALY_KINDS`` (lower answers first); unknown types rank last."""
    return ANOMALY_TYPES.index(anomaly_type) if anomaly_type in KIND_BY_NAME else len(ANOMALY_TYPES)


@dataclass(frozen=True)
class DetectorSettings:
    spike_factor: float = 1.5
    """Arrivals at least this many times the baseline ..."""
    spike_deviations: float = 6.0
    """... and this many EWMA absolute deviations above it."""
    spike_min_rps: float = 5.0
    """... and at least this many requests per second more (a service waking from zero is not a spike)."""
    baseline_half_life_s: float = 120.0
    warmup_s: float = 60.0
    """Baselines learn for this long before anything is reported."""
    confirm_ticks: int = 3
    """Consecutive ticks a condition must hold before it is reported."""
    clear_ticks: int = 10
    straggler_slowness: float = 2.0
    """A node processing requests this many times slower than the median node is a straggler."""
    degradation_ms: float = 20.0
    degradation_share: float = 0.3
    """A tier's median round trip rising by both this many ms and this share over its baseline is a degradation."""
    storm_replicas: int = 4
    storm_share: float = 0.2
    """Warm replicas turning to booting in one tick: at least this many and this share of the warm ones."""
    breach_rate: float = 0.05
    breach_ticks: int = 30
    burst_factor: float = 5.0
    """A burst: one tick's arrivals at least this many times the baseline ..."""
    burst_min_requests: float = 50.0
    """... at least this many requests more than the baseline brings in a tick ..."""
    burst_backlog_share: float = 0.5
    """... leaving at least this share of them queued; it clears when the queue is back under a tenth of its peak."""


@dataclass(frozen=True)
class Anomaly:
    type: str
    target: str
    """A service, a node (or comma-separated nodes) or a tier."""
    since_s: float
    evidence: str
    severity: float = 1.0

    def as_dict(self) -> dict[str, object]:
        return {"type": self.type, "target": self.target, "since_s": self.since_s, "evidence": self.evidence, "severity": self.severity}


@dataclass
class _Ewma:
    mean: float | None = None
    deviation: float = 0.0

    def update(self, value: float, alpha: float) -> None:
        if self.mean is None:
            self.mean, self.deviation = value, 0.0
            return
        self.deviation += alpha * (abs(value - self.mean) - self.deviation)
        self.mean += alpha * (value - self.mean)


@dataclass
class _Condition:
    """Debounces a boolean signal: on after ``confirm`` ticks true, off after ``clear`` ticks false."""

    streak: int = 0
    quiet: int = 0
    active: bool = False

    def step(self, true: bool, confirm: int, clear: int) -> bool:
        """Returns True on the tick the condition becomes active."""
        if true:
            self.streak, self.quiet = self.streak + 1, 0
            if not self.active and self.streak >= confirm:
                self.active = True
                return True
        else:
            self.streak, self.quiet = 0, self.quiet + 1
            if self.active and self.quiet >= clear:
                self.active = False
        return False


@dataclass
class Detectors:
    """All detectors with their state. ``observe`` returns the anomalies that started at this snapshot."""

    settings: DetectorSettings = field(default_factory=DetectorSettings)
    active: dict[tuple[str, str], Anomaly] = field(default_factory=dict)
    _arrivals: dict[str, _Ewma] = field(default_factory=dict)
    _tier_latency: dict[str, _Ewma] = field(default_factory=dict)
    _conditions: dict[tuple[str, str], _Condition] = field(default_factory=dict)
    _failed: set[str] = field(default_factory=set)
    _prices: dict[str, float] = field(default_factory=dict)
    _first_prices: dict[str, float] = field(default_factory=dict)
    _burst_peaks: dict[str, float] = field(default_factory=dict)
    _tier_replicas: dict[str, tuple[int, int]] = field(default_factory=dict)
    _failed_before: set[str] = field(default_factory=set)
    _last_time: float | None = None
    _start_s: float | None = None
    _alpha: float = 0.0
    _dt: float = 1.0
    _cleared: list[tuple[str, str]] = field(default_factory=list)
    """Anomalies reported this tick that are already over (a price change back to the first prices)."""

    def observe(self, snap: ClusterSnapshot) -> list[Anomaly]:
        dt = 1.0 if self._last_time is None else max(snap.time_s - self._last_time, 1e-9)
        self._dt = dt
        self._last_time = snap.time_s
        if self._start_s is None:
            self._start_s = snap.time_s
        warming_up = snap.time_s - self._start_s < self.settings.warmup_s
        alpha = 1.0 - 0.5 ** (dt / self.settings.baseline_half_life_s)
        self._alpha = alpha
        started: list[Anomaly] = []
        for kind in ANOMALY_KINDS:
            started += getattr(self, kind.detector)(snap)
        if warming_up:
            self.active.clear()
            self._cleared = []
            return []
        for anomaly in started:
            self.active[(anomaly.type, anomaly.target)] = anomaly
        for key in self._cleared:
            self.active.pop(key, None)
        self._cleared = []
        return started

    def _debounced(self, kind: str, target: str, true: bool) -> bool:
        condition = self._conditions.setdefault((kind, target), _Condition())
        was_active = condition.active
        fired = condition.step(true, self.settings.confirm_ticks, self.settings.clear_ticks)
        if was_active and not condition.active:
            self.active.pop((kind, target), None)
        return fired

    def _spikes(self, snap: ClusterSnapshot) -> list[Anomaly]:
        s, found, alpha = self.settings, [], self._alpha
        for service in snap.services:
            ewma = self._arrivals.setdefault(service.name, _Ewma())
            rate = service.arrivals_rps
            base = ewma.mean
            spiking = (
                base is not None
                and rate > s.spike_factor * max(base, 1e-9)
                and rate - base > max(s.spike_deviations * max(ewma.deviation, 0.05 * base), s.spike_min_rps)
            )
            if self._debounced("traffic_spike", service.name, spiking) and base is not None:
                found.append(
                    Anomaly(
                        "traffic_spike",
                        service.name,
                        snap.time_s,
                        f"{service.name}: {rate:.0f} req/s against a baseline of {base:.0f} req/s ({rate / max(base, 1e-9):.1f}x)",
                        rate / max(base, 1e-9),
                    )
                )
            if not self._conditions[("traffic_spike", service.name)].active and not spiking:
                ewma.update(rate, alpha)  # the baseline learns only from normal traffic
        return found

    def _bursts(self, snap: ClusterSnapshot) -> list[Anomaly]:
        """Reads the spike detector's baselines (which bursts never teach: a burst tick is a spiking tick)."""
        s, found = self.settings, []
        for service in snap.services:
            base = self._arrivals.get(service.name, _Ewma()).mean
            arrived = service.arrivals_rps * max(self._dt, 1e-9)
            key = ("burst", service.name)
            condition = self._conditions.setdefault(key, _Condition())
            expected = 0.0 if base is None else base * self._dt
            bursting = (
                base is not None
                and arrived >= s.burst_factor * max(expected, 1e-9)
                and arrived - expected >= s.burst_min_requests
                and service.queue >= s.burst_backlog_share * arrived
            )
            if bursting and not condition.active:
                condition.active = True
                self._burst_peaks[service.name] = service.queue
                factor = arrived / max(expected, 1.0)
                evidence = (
                    f"{service.name}: {arrived:.0f} requests arrived in one tick against {expected:.1f} usual, "
                    f"leaving {service.queue:.0f} queued"
                )
                found.append(Anomaly("burst", service.name, snap.time_s, evidence, factor))
            elif condition.active:
                peak = max(self._burst_peaks.get(service.name, 0.0), service.queue)
                self._burst_peaks[service.name] = peak
                if service.queue <= 0.1 * peak and not bursting:
                    condition.active = False
                    self.active.pop(key, None)
        return found

    def _failures(self, snap: ClusterSnapshot) -> list[Anomaly]:
        failed = {n.name for n in snap.nodes if n.state == "failed"}
        new = sorted(failed - self._failed)
        for name in self._failed - failed:
            self.active.pop(("node_failure", name), None)
        self._failed = failed
        return [Anomaly("node_failure", name, snap.time_s, f"{name} reports failed; its replicas and queue are gone") for name in new]

    def _stragglers(self, snap: ClusterSnapshot) -> list[Anomaly]:
        s, found = self.settings, []
        for node in snap.nodes:
            if node.state != "on":  # drained, failed or off: it processes nothing, so it is no straggler
                self._debounced("straggler", node.name, False)
                continue
            slow = node.served_rps > 0 and node.slowness >= s.straggler_slowness
            if self._debounced("straggler", node.name, slow):
                found.append(
                    Anomaly(
                        "straggler",
                        node.name,
                        snap.time_s,
                        f"{node.name} processes requests {node.slowness:.1f}x slower than the median node running the same services",
                        node.slowness,
                    )
                )
        return found

    def _network(self, snap: ClusterSnapshot) -> list[Anomaly]:
        s, found, alpha = self.settings, [], self._alpha
        tiers: dict[str, list[float]] = {}
        for node in snap.nodes:
            if node.state == "on":
                tiers.setdefault(node.tier, []).append(node.network_ms)
        for tier, rtts in tiers.items():
            median = statistics.median(rtts)
            ewma = self._tier_latency.setdefault(tier, _Ewma())
            base = ewma.mean
            degraded = base is not None and median > base + s.degradation_ms and median > base * (1.0 + s.degradation_share)
            if self._debounced("network_degradation", tier, degraded) and base is not None:
                found.append(
                    Anomaly(
                        "network_degradation",
                        tier,
                        snap.time_s,
                        f"{tier} tier round trip {median:.0f} ms against a baseline of {base:.0f} ms",
                        median / max(base, 1e-9),
                    )
                )
            if not self._conditions[("network_degradation", tier)].active and not degraded:
                ewma.update(median, alpha)
        return found

    def _storm(self, snap: ClusterSnapshot) -> list[Anomaly]:
        s, found = self.settings, []
        failing = any(n.state == "failed" for n in snap.nodes if n.name not in self._failed_before)
        self._failed_before = {n.name for n in snap.nodes if n.state == "failed"}
        tiers: dict[str, list[int]] = {}
        for node in snap.nodes:
            counts = tiers.setdefault(node.tier, [0, 0])
            counts[0] += sum(node.replicas.values())
            counts[1] += sum(node.booting.values())
        for tier, (warm, booting) in tiers.items():
            last_warm, last_booting = self._tier_replicas.get(tier, (warm, booting))
            self._tier_replicas[tier] = (warm, booting)
            evicted, restarted = last_warm - warm, booting - last_booting
            storm = (
                evicted >= s.storm_replicas
                and evicted >= s.storm_share * last_warm
                and restarted >= 0.8 * evicted  # they came back as booting: evicted, not scaled down
                and not failing
            )
            condition = self._conditions.setdefault(("cold_start_storm", tier), _Condition())
            fired = condition.step(storm, 1, s.clear_ticks)
            if not condition.active:
                self.active.pop(("cold_start_storm", tier), None)
            if fired:
                evidence = f"{evicted} warm replicas on the {tier} tier became cold at once ({booting} booting now) with no node failing"
                found.append(Anomaly("cold_start_storm", tier, snap.time_s, evidence, evicted / max(last_warm, 1)))
        return found

    def _prices_changed(self, snap: ClusterSnapshot) -> list[Anomaly]:
        changed: dict[str, list[float]] = {}
        for node in snap.nodes:
            if node.node_cost_per_h <= 0:
                continue
            old = self._prices.get(node.name)
            self._prices[node.name] = node.node_cost_per_h
            self._first_prices.setdefault(node.name, node.node_cost_per_h)
            if old is not None and abs(node.node_cost_per_h - old) > 1e-9 * max(old, 1.0):
                changed.setdefault(node.tier, []).append(node.node_cost_per_h / old)
        found = []
        for tier, factors in changed.items():
            factor = statistics.median(factors)
            back = all(
                abs(self._prices[n.name] - self._first_prices[n.name]) <= 1e-9 * max(self._first_prices[n.name], 1.0)
                for n in snap.nodes
                if n.tier == tier and n.name in self._prices
            )
            evidence = f"{tier} node prices changed x{factor:.2f} on {len(factors)} node(s)"
            found.append(Anomaly("price_change", tier, snap.time_s, evidence + (", back to where they started" if back else ""), factor))
            if back:  # reported so the planner can undo its answer, then over
                self._cleared.append(("price_change", tier))
        return found

    def _breach(self, snap: ClusterSnapshot) -> list[Anomaly]:
        s = self.settings
        explained = any(kind != "slo_breach" for kind, _ in self.active)
        breaching = snap.violation_rate > s.breach_rate and not explained
        condition = self._conditions.setdefault(("slo_breach", "cluster"), _Condition())
        fired = condition.step(breaching, s.breach_ticks, s.clear_ticks)
        if not condition.active:
            self.active.pop(("slo_breach", "cluster"), None)
        if not fired:
            return []
        return [
            Anomaly(
                "slo_breach",
                "cluster",
                snap.time_s,
                f"{snap.violation_rate:.0%} of requests over their SLO for {s.breach_ticks} ticks with no known cause",
            )
        ]
