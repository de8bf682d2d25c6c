"""Vectorized cluster simulator core. Driven by simulators.env (one PettingZoo agent per node), by the controllers
of local_agents (through the batch API ``Cluster.step``) and by the runtime and evals; feeds simulators.snapshot,
which turns its state into the ClusterSnapshot that the manager and the console read.

Model (time in seconds, one tick = ``tick_s``; every per-tick quantity is a numpy array, no per-node loops):

- Nodes have a tier (edge / cloud), CPU cores, memory, GPUs, a speed factor, a price, idle and peak power and a
  boot time, and a state: off, booting, on or failed. Off and failed nodes cost and consume nothing. A node its
  own agent put to sleep (``sleep``: on and empty) is off and ``asleep``: its agent may boot it again; a node
  drained or powered off by anyone else is not its agent's to wake.
- Services have a kind (cpu / gpu), work per request (ms at speed 1), an SLO, a cold-start time, memory and CPU
  (and GPUs for gpu services) per replica, a per-replica concurrency, a timeout and min / max replicas.
- Replicas live in cells (node, service). A started replica boots for the service's cold-start time (a ring buffer
  of pending starts per cell), then is warm. A scale-down removes booting replicas first, as Kubernetes does.
- Arrivals per service per tick come from a precomputed matrix (workloads and traffic spikes are folded in by
  simulators.scenarios). The load balancer splits them over cells in proportion to warm replicas (or, with
  ``routing="least-loaded"``, to capacity net of backlog); a service with no
  warm replica anywhere queues at its booting replicas, and one with none at all gets a demand-triggered cold start
  on the on-node with the most free memory (what a serverless activator does).
- Each node may offload a share of its arrivals; offloaded work goes to the cloud tier's cells (or peers, in an
  edge-only cluster) in proportion to their spare capacity and pays a network hop.
- Queues are fluid (fractional requests). Served requests pay the service time (slower on stragglers), the network
  latency of their node's tier (plus any degradation), the mean time they waited in the queue (tracked as
  request-seconds, so cold starts and backlogs show up as waiting), and an M/M/c waiting tail from the Sakasegawa
  approximation, which gives each cell a latency distribution ``base + Exp`` with an atom at ``base``. SLA
  violations are the served requests whose latency exceeds the SLO, plus drops. Requests queued beyond the service's
  timeout (at the cell's service rate) are dropped.
- Power is idle plus (peak - idle) times the CPU (GPU on GPU nodes) load on on and booting nodes, where an idle
  warm replica counts for a share of a busy one (``idle_replica_power_share``); cost is the node price
  (times any price factor) while a node is on or booting; replica cost bills each replica its dominant share (CPU,
  memory or GPUs) of its node's price, the pay-per-use view in which a controller's choices show. Idle warm
  replicas accumulate wasted memory (GB-s).

Every step also records per-cell and per-node outcomes (``served``, ``violations``, ``drops`` ...) that the env
turns into reward terms and the snapshot into telemetry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NODE_OFF, NODE_BOOTING, NODE_ON, NODE_FAILED = 0, 1, 2, 3
NODE_STATE_NAMES = ("off", "booting", "on", "failed")
TIERS = ("edge", "cloud")
ROUTINGS = ("replicas", "least-loaded")
SERVICE_KINDS = ("cpu", "gpu")

LATENCY_GRID_MS = np.geomspace(1.0, 600_000.0, 96)
"""Latency points (ms) at which per-service latency distributions are evaluated for percentiles."""


@dataclass(frozen=True)
class NodeSpec:
    name: str
    tier: str = "cloud"
    cpus: float = 16.0
    mem_gb: float = 64.0
    gpus: int = 0
    speed: float = 1.0
    """Relative processing speed (1.0 = the reference on which services' work_ms is measured)."""
    price_per_h: float = 0.8
    power_idle_w: float = 100.0
    power_peak_w: float = 300.0
    boot_s: float = 60.0
    initially_on: bool = True


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    kind: str = "cpu"
    work_ms: float = 40.0
    """Service time of one request on one replica slot at speed 1."""
    slo_ms: float = 300.0
    cold_start_s: float = 5.0
    mem_mb: float = 512.0
    cpu_per_replica: float = 1.0
    gpu_per_replica: int = 0
    concurrency: int = 1
    """Requests one replica serves at once (batching servers: > 1)."""
    timeout_s: float = 30.0
    """Requests queued longer than this are dropped."""
    min_replicas: int = 1
    max_replicas: int = 64
    initial_replicas: int | None = None
    """Warm replicas at t=0 (default: min_replicas)."""


@dataclass(frozen=True)
class Event:
    """An anomaly, compiled to indices. ``value`` is the factor, slowdown or added latency of the event type."""

    at_tick: int
    type: str
    nodes: tuple[int, ...] = ()
    services: tuple[int, ...] = ()
    value: float = 1.0
    duration_ticks: int | None = None
    label: str = ""

    @property
    def end_tick(self) -> int | None:
        return None if self.duration_ticks is None else self.at_tick + self.duration_ticks


@dataclass(frozen=True)
class ClusterConfig:
    nodes: tuple[NodeSpec, ...]
    services: tuple[ServiceSpec, ...]
    tick_s: float = 1.0
    tier_latency_ms: tuple[float, float] = (5.0, 25.0)
    """Client-to-node network latency for (edge, cloud)."""
    offload_hop_ms: float = 10.0
    """Extra latency of a request offloaded to another node."""
    routing: str = "replicas"
    """How the load balancer splits a service's arrivals over nodes: ``replicas`` (in proportion to ready replicas:
    the fluid limit of round-robin and random routing, what a Kubernetes Service does) or ``least-loaded`` (in
    proportion to each cell's capacity net of its backlog, so fast and slow nodes run at equal utilization: the fluid
    picture of join-the-shortest-queue)."""
    idle_replica_power_share: float = 0.2
    """Power an idle warm replica draws, as a share of what it draws busy (runtimes, memory, polling)."""


@dataclass
class Workload:
    """Arrivals (T, S) requests per tick and a per-tick multiplier on each service's work (e.g. token counts)."""

    arrivals: np.ndarray
    work_scale: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.work_scale is None:
            self.work_scale = np.ones(self.arrivals.shape, dtype=np.float64)


@dataclass
class StepOutcome:
    """What happened in the last tick, per cell (N, S) and per node (N,). Replaced every tick."""

    arrivals: np.ndarray = field(default_factory=lambda: np.zeros(0))
    served: np.ndarray = field(default_factory=lambda: np.zeros(0))
    violations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    drops: np.ndarray = field(default_factory=lambda: np.zeros(0))
    latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Mean latency of the requests served in the cell (0 where none)."""
    cold_starts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Requests that found no warm replica anywhere (per service, (S,))."""
    replica_changes: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Replicas started plus stopped per cell since the previous step ended (calls between steps included)."""
    requests: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """New requests per service this tick, from the workload (re-routed and offloaded work is not counted again)."""
    node_util: np.ndarray = field(default_factory=lambda: np.zeros(0))
    node_power_w: np.ndarray = field(default_factory=lambda: np.zeros(0))
    node_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """What each powered node costs this tick (its price while on or booting)."""
    replica_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """What the replicas on each node cost this tick: each pays its dominant share (CPU, memory or GPUs) of the
    node's price, as pay-per-use billing of reservations does. This is the cost a controller's choices move."""
    wasted_mem_gbs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """GB-s of idle warm replicas per service this tick."""
    became_warm: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Replicas per service that finished booting this tick."""
    busy_replicas: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Replicas' worth of busy time per cell this tick (served work over tick length and concurrency)."""


class Cluster:
    """The simulator core. ``step`` advances one tick with array actions in and array outcomes out.

    Replica counts are kept as float64 arrays holding whole numbers, so that the hot path never mixes dtypes.
    """

    def __init__(self, config: ClusterConfig, workload: Workload, events: list[Event] | None = None) -> None:
        if not config.nodes or not config.services:
            raise ValueError("a cluster needs at least one node and one service")
        if config.routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, got {config.routing!r}")
        if workload.arrivals.ndim != 2 or workload.arrivals.shape[1] != len(config.services):
            raise ValueError(f"arrivals must have shape (ticks, {len(config.services)}), got {workload.arrivals.shape}")
        self.config = config
        self.workload = workload
        self.events = sorted(events or [], key=lambda e: e.at_tick)
        self.tick_s = float(config.tick_s)
        self.node_names = tuple(n.name for n in config.nodes)
        self.service_names = tuple(s.name for s in config.services)
        self.n_nodes = len(config.nodes)
        self.n_services = len(config.services)
        self.horizon = workload.arrivals.shape[0]
        self._init_static()
        self.reset()

    # ----------------------------------------------------------------------------------------------- set-up
    def _init_static(self) -> None:
        nodes, services, f = self.config.nodes, self.config.services, np.float64
        self.tier = np.array([TIERS.index(n.tier) for n in nodes], dtype=np.int8)
        self.cpus = np.array([n.cpus for n in nodes], dtype=f)
        self.mem_mb_cap = np.array([n.mem_gb * 1024 for n in nodes], dtype=f)
        self.gpus = np.array([n.gpus for n in nodes], dtype=f)
        self.speed = np.array([n.speed for n in nodes], dtype=f)
        self.base_price_per_h = np.array([n.price_per_h for n in nodes], dtype=f)
        self.power_idle = np.array([n.power_idle_w for n in nodes], dtype=f)
        self.power_peak = np.array([n.power_peak_w for n in nodes], dtype=f)
        self.node_boot_ticks = np.ceil(np.array([n.boot_s for n in nodes], dtype=f) / self.tick_s)
        self.initially_on = np.array([n.initially_on for n in nodes], dtype=bool)
        self.tier_latency_ms = np.asarray(self.config.tier_latency_ms, dtype=f)[self.tier]

        unknown = sorted({s.kind for s in services} - set(SERVICE_KINDS))
        if unknown:
            raise ValueError(f"service kind must be one of {', '.join(SERVICE_KINDS)}, got {', '.join(unknown)}")
        self.work_ms = np.array([s.work_ms for s in services], dtype=f)
        self.slo_ms = np.array([s.slo_ms for s in services], dtype=f)
        self.cold_start_ticks = np.maximum(1, np.ceil(np.array([s.cold_start_s for s in services]) / self.tick_s)).astype(np.int64)
        self.svc_mem_mb = np.array([s.mem_mb for s in services], dtype=f)
        self.svc_cpu = np.array([s.cpu_per_replica for s in services], dtype=f)
        self.svc_gpu = np.array([s.gpu_per_replica for s in services], dtype=f)
        self.concurrency = np.array([s.concurrency for s in services], dtype=f)
        self.timeout_ticks = np.array([s.timeout_s for s in services], dtype=f) / self.tick_s
        self.min_replicas = np.array([s.min_replicas for s in services], dtype=f)
        self.max_replicas = np.array([s.max_replicas for s in services], dtype=f)
        self.needs_gpu = self.svc_gpu > 0
        self._has_gpu_nodes = bool((self.gpus > 0).any())
        self._inv_cpu = 1.0 / np.maximum(self.svc_cpu, 1e-9)
        self._inv_mem = 1.0 / np.maximum(self.svc_mem_mb, 1e-9)
        self._inv_gpu = np.where(self.needs_gpu, 1.0 / np.maximum(self.svc_gpu, 1e-9), 0.0)
        self.gpu_fits = ~self.needs_gpu[None, :] | (self.gpus[:, None] >= self.svc_gpu[None, :])
        """(N, S): the node has enough GPUs for one replica of the service at all."""
        self.ring_len = int(self.cold_start_ticks.max()) + 1
        shares = [self.svc_cpu[None, :] / self.cpus[:, None], self.svc_mem_mb[None, :] / self.mem_mb_cap[:, None]]
        if (self.gpus > 0).any():
            shares.append(np.where(self.needs_gpu[None, :], self.svc_gpu[None, :] / np.maximum(self.gpus[:, None], 1.0), 0.0))
        self.replica_share = np.maximum.reduce(shares)
        """(N, S): the dominant share of the node one replica of the service reserves (what it is billed for)."""
        self._service_index = np.arange(self.n_services)
        self._ones_n = np.ones(self.n_nodes)
        self._ones_s = np.ones(self.n_services)

    def reset(self) -> None:
        """Back to t=0: nodes in their initial state, initial replicas warm, empty queues."""
        n, s = self.n_nodes, self.n_services
        self.t = 0
        self.state = np.where(self.initially_on, NODE_ON, NODE_OFF).astype(np.int8)
        self.node_ready_tick = np.zeros(n, dtype=np.int64)
        """Tick from whose step on a booting node is on."""
        self.state_before_failure = self.state.copy()
        self.asleep = np.zeros(n, dtype=bool)
        """Off because its node agent put it to sleep (``sleep``), so that agent may wake it (``power_on``)."""
        self.slowdown = np.ones(n)
        self.net_extra_ms = np.zeros(n)
        self.price_factor = np.ones(n)
        self.warm = np.zeros((n, s))
        self.booting = np.zeros((n, s))
        self.pending = np.zeros((self.ring_len, n, s))
        """Replicas that become warm at tick t are in slot t % ring_len."""
        self.queue = np.zeros((n, s))
        self.queue_wait = np.zeros((n, s))
        """Request-ticks already waited by the requests in each queue."""
        self.offload = np.zeros(n)
        self.spill = np.zeros(s)
        """Requests taken off drained nodes, re-routed next tick."""
        self.spill_wait = np.zeros(s)
        """Request-ticks already waited by the spilled requests: they keep their wait where they are re-routed."""
        self._event_cursor = 0
        self._reverts: list[tuple[int, Event]] = []
        self.active: list[Event] = []
        self._speed_key: tuple[float, ...] | None = None
        self._speed_version = 0
        self._lost: tuple[int, np.ndarray] | None = None
        """Bumped whenever node slowdowns change, so cached service times are recomputed."""
        initial = [sv.min_replicas if sv.initial_replicas is None else sv.initial_replicas for sv in self.config.services]
        self.warm = self.spread_replicas(np.array(initial, dtype=np.float64))
        self.out = StepOutcome()
        self._zero_outcome()
        self._changes = np.zeros((n, s))
        """Replica starts and stops since the last step ended; becomes the next step's ``replica_changes``."""

    def spread_replicas(self, per_service: np.ndarray) -> np.ndarray:
        """Spread ``per_service`` replicas evenly over the on-nodes that can hold them (nodes with the most free
        memory take the remainder); returns (N, S) counts. Replicas that fit nowhere are not placed."""
        cells = np.zeros((self.n_nodes, self.n_services))
        for j in range(self.n_services):
            remaining = int(per_service[j])
            while remaining > 0:
                room = np.minimum(self.room(cells)[:, j], remaining)
                candidates = np.flatnonzero(room > 0)
                if candidates.size == 0:
                    break
                give = np.full(candidates.size, remaining // candidates.size)
                extra = remaining - int(give.sum())
                if extra:
                    _, free_mem, _ = self.free_resources(cells)
                    give[np.argsort(-free_mem[candidates], kind="stable")[:extra]] += 1
                give = np.minimum(give, room[candidates])
                cells[candidates, j] += give
                remaining -= int(give.sum())
        return cells

    def free_resources(self, cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Free CPU cores, memory (MB) and GPUs per node given replica counts (default: warm + booting)."""
        total = (self.warm + self.booting) if cells is None else cells
        return (
            self.cpus - total @ self.svc_cpu,
            self.mem_mb_cap - total @ self.svc_mem_mb,
            self.gpus - total @ self.svc_gpu,
        )

    def room(self, cells: np.ndarray | None = None) -> np.ndarray:
        """Replicas of each service that still fit on each on-node (CPU, memory and GPUs), as whole numbers, given
        replica counts ``cells`` (default: the current warm plus booting; pass zeros for empty nodes)."""
        free_cpu, free_mem, free_gpu = self.free_resources(cells)
        room = np.minimum(free_cpu[:, None] * self._inv_cpu, free_mem[:, None] * self._inv_mem)
        if self.needs_gpu.any():
            by_gpu = np.where(self.needs_gpu, free_gpu[:, None] * self._inv_gpu, np.inf)
            np.minimum(room, by_gpu, out=room)
        np.floor(room, out=room)
        np.clip(room, 0.0, 1e9, out=room)
        room *= (self.state == NODE_ON)[:, None]
        return room

    def _zero_outcome(self) -> None:
        n, s = self.n_nodes, self.n_services
        o = self.out
        o.arrivals, o.served, o.violations, o.drops = (np.zeros((n, s)) for _ in range(4))
        o.latency_ms, o.replica_changes, o.busy_replicas = np.zeros((n, s)), np.zeros((n, s)), np.zeros((n, s))
        o.cold_starts, o.wasted_mem_gbs, o.requests, o.became_warm = np.zeros(s), np.zeros(s), np.zeros(s), np.zeros(s)
        o.node_util, o.node_power_w, o.node_cost, o.replica_cost = np.zeros(n), np.zeros(n), np.zeros(n), np.zeros(n)
        self._base_ms = np.zeros((n, s))
        self._p_wait = np.zeros((n, s))
        self._theta = np.ones((n, s))

    # ----------------------------------------------------------------------------------------------- queries
    @property
    def time_s(self) -> float:
        return self.t * self.tick_s

    @property
    def done(self) -> bool:
        return self.t >= self.horizon

    def replicas(self) -> np.ndarray:
        """Warm plus booting replicas per cell (what a controller's desired count is compared with)."""
        return self.warm + self.booting

    def service_ms(self) -> np.ndarray:
        """Service time (ms) of one request per cell at the current tick: work / (speed / slowdown)."""
        self._refresh_speed()
        return self._service_ms

    def capacity_rps(self) -> np.ndarray:
        """Requests per second each cell can serve with its warm replicas at the current tick's work."""
        self._refresh_speed()
        return self.warm * self._rate_per_replica

    def per_service(self, cells: np.ndarray) -> np.ndarray:
        """Column sums of an (N, S) array: totals per service (a matrix-vector product, faster than ``sum(0)``)."""
        return self._ones_n @ cells

    # ----------------------------------------------------------------------------------------------- control
    def set_targets(self, target: np.ndarray) -> None:
        """Move each cell's replica count (warm + booting) towards ``target`` (N, S), within node resources, node
        state and the services' cluster-wide min and max replicas."""
        current = self.warm + self.booting
        delta = np.maximum(np.rint(np.asarray(target, dtype=np.float64)), 0.0) - current
        if not delta.any():
            return
        up = np.maximum(delta, 0.0)
        down = np.maximum(-delta, 0.0)
        col_current = self._ones_n @ current
        col_down = self._ones_n @ down
        if up.any():
            up *= self.gpu_fits
            up[self.state != NODE_ON] = 0.0
            up = self._fit_node_resources(up)
            over = self._ones_n @ up + col_current - col_down - self.max_replicas
            up = _reduce_columns(up, over)
            self._start(up)
            self._changes += up
            col_current = col_current + self._ones_n @ up
        if col_down.any():
            short = self.min_replicas - (col_current - col_down)
            down = _reduce_columns(down, short)
            self._stop(down)
            self._changes += down

    def _fit_node_resources(self, up: np.ndarray) -> np.ndarray:
        """Shrink per-cell increases so the new reservations on each node fit its free resources."""
        free_cpu, free_mem, free_gpu = self.free_resources()
        factor = np.ones((self.n_nodes, self.n_services))
        for free, per_replica in ((free_cpu, self.svc_cpu), (free_mem, self.svc_mem_mb), (free_gpu, self.svc_gpu)):
            if not per_replica.any():
                continue
            need = up @ per_replica
            over = need > free + 1e-9
            if over.any():
                shrink = np.where(over, np.maximum(free, 0.0) / np.maximum(need, 1e-12), 1.0)
                users = per_replica > 0  # only the services that use this resource are held back by it
                factor[:, users] = np.minimum(factor[:, users], shrink[:, None])
        if (factor < 1.0).any():
            up = np.floor(up * factor)
        return up

    def _start(self, up: np.ndarray) -> None:
        slots = (self.t + self.cold_start_ticks) % self.ring_len
        self.pending[slots, :, self._service_index] += up.T
        self.booting += up

    def _stop(self, down: np.ndarray) -> None:
        """Remove replicas, booting ones first (newest first, as Kubernetes deletes unready pods first), then warm."""
        from_booting = np.minimum(down, self.booting)
        if from_booting.any():
            left = from_booting.copy()
            for back in range(1, self.ring_len + 1):
                slot = (self.t + self.ring_len - back) % self.ring_len
                take = np.minimum(left, self.pending[slot])
                self.pending[slot] -= take
                left -= take
                if not left.any():
                    break
            self.booting -= from_booting
        self.warm -= np.minimum(down - from_booting, self.warm)

    def set_offload(self, share: np.ndarray) -> None:
        """Share of each node's arrivals (0..0.95) to send to the cloud tier or peers."""
        self.offload = np.clip(np.asarray(share, dtype=np.float64), 0.0, 0.95)

    def power_on(self, nodes: np.ndarray) -> None:
        """Boot off nodes (by index or mask); they serve after their boot time."""
        idx = _indices(nodes, self.n_nodes)
        idx = idx[self.state[idx] == NODE_OFF]
        self.state[idx] = NODE_BOOTING
        self.asleep[idx] = False
        self.node_ready_tick[idx] = self.t + self.node_boot_ticks[idx].astype(np.int64)

    def sleep(self, nodes: np.ndarray) -> None:
        """Power off on nodes that hold no replica (by index or mask; others are left alone), marked ``asleep``:
        what a node agent does to save its idle power while the cluster does not need it."""
        idx = _indices(nodes, self.n_nodes)
        idx = idx[(self.state[idx] == NODE_ON) & ((self.warm[idx] + self.booting[idx]).sum(axis=1) == 0)]
        self.drain(idx)
        self.asleep[idx] = True

    def drain(self, nodes: np.ndarray) -> None:
        """Stop routing to nodes, re-route their queued work (which keeps the time it has waited), stop their replicas
        and power them off. A node that was asleep stays off, and is no longer its agent's to wake."""
        idx = _indices(nodes, self.n_nodes)
        self.asleep[idx] = False
        idx = idx[(self.state[idx] == NODE_ON) | (self.state[idx] == NODE_BOOTING)]
        if idx.size:
            self.spill += self._ones_n[idx] @ self.queue[idx]
            self.spill_wait += self._ones_n[idx] @ self.queue_wait[idx]
        self._clear_nodes(idx)
        self.state[idx] = NODE_OFF

    def _clear_nodes(self, idx: np.ndarray) -> None:
        self._changes[idx] += self.warm[idx] + self.booting[idx]
        self.warm[idx] = 0.0
        self.booting[idx] = 0.0
        self.pending[:, idx] = 0.0
        self.queue[idx] = 0.0
        self.queue_wait[idx] = 0.0

    # ----------------------------------------------------------------------------------------------- events
    def twin(self, future_arrivals: np.ndarray, future_work_scale: np.ndarray) -> Cluster:
        """A copy of the cluster as it is now that knows only the past (manager.whatif's digital twin): from this tick
        on its arrivals and work are the given forecast (F, S), no event that has not started will start, and those
        in force do not end."""
        import copy

        fork = copy.deepcopy(self)
        t = self.t
        arrivals = np.concatenate([self.workload.arrivals[:t], future_arrivals])
        work = np.concatenate([self.workload.work_scale[:t], future_work_scale])  # type: ignore[index]
        fork.workload = Workload(arrivals, work)
        fork.horizon = arrivals.shape[0]
        fork.events = fork.events[: fork._event_cursor]
        fork._reverts = []
        return fork

    def _apply_events(self) -> None:
        while self._reverts and self._reverts[0][0] <= self.t:
            _, event = self._reverts.pop(0)
            self._revert(event)
        while self._event_cursor < len(self.events) and self.events[self._event_cursor].at_tick <= self.t:
            event = self.events[self._event_cursor]
            self._event_cursor += 1
            self._apply(event)
            if event.end_tick is not None:
                self._reverts.append((event.end_tick, event))
                self._reverts.sort(key=lambda r: r[0])

    def _apply(self, e: Event) -> None:
        nodes = np.asarray(e.nodes, dtype=np.int64)
        if e.type == "node_failure":
            live = nodes[self.state[nodes] != NODE_FAILED]
            self.out.drops[live] += self.queue[live]
            self._clear_nodes(live)
            self.state_before_failure[live] = self.state[live]
            self.state[live] = NODE_FAILED
        elif e.type == "node_recovery":
            self._recover(nodes)
            return  # a recovery is not an anomaly in force
        elif e.type == "straggler":
            self.slowdown[nodes] *= e.value
            self._speed_version += 1
        elif e.type == "network_degradation":
            self.net_extra_ms[nodes] += e.value
        elif e.type == "price_change":
            self.price_factor[nodes] *= e.value
        elif e.type == "cold_start_storm":
            cells = np.ix_(nodes, np.asarray(e.services, dtype=np.int64))
            evicted = np.zeros_like(self.warm)
            evicted[cells] = self.warm[cells]
            self.warm -= evicted
            self._start(evicted)
            self._changes += 2.0 * evicted
        # traffic_spike is folded into the arrival matrix; here it is only tracked as an anomaly in force
        self.active.append(e)

    def _revert(self, e: Event) -> None:
        nodes = np.asarray(e.nodes, dtype=np.int64)
        if e.type == "node_failure":
            self._recover(nodes)
        elif e.type == "straggler":
            self.slowdown[nodes] /= e.value
            self._speed_version += 1
        elif e.type == "network_degradation":
            self.net_extra_ms[nodes] -= e.value
        elif e.type == "price_change":
            self.price_factor[nodes] /= e.value
        if e in self.active:
            self.active.remove(e)

    def _recover(self, nodes: np.ndarray) -> None:
        """Failed nodes come back: those that were powered boot again, those that were off stay off."""
        failed = nodes[self.state[nodes] == NODE_FAILED]
        self.state[failed] = NODE_OFF
        self.power_on(failed[self.state_before_failure[failed] != NODE_OFF])
        recovered = set(failed.tolist())
        self.active = [a for a in self.active if not (a.type == "node_failure" and set(a.nodes) <= recovered)]

    # ----------------------------------------------------------------------------------------------- dynamics
    def _refresh_speed(self) -> None:
        """Recompute per-cell service times when node speed or the tick's work changed (cached otherwise)."""
        row = self.workload.work_scale[min(self.t, self.horizon - 1)]
        key = (*row.tolist(), self._speed_version)
        if key == self._speed_key:
            return
        self._speed_key = key
        self._service_ms = (self.work_ms * row)[None, :] * (self.slowdown / self.speed)[:, None]
        self._rate_per_replica = self.concurrency * 1000.0 / self._service_ms
        self._rate_tick = self._rate_per_replica * self.tick_s
        self._mu_per_ms = 1.0 / self._service_ms
        self._busy_per_request = self._service_ms / (1000.0 * self.tick_s * self.concurrency)

    def step(self, target: np.ndarray | None = None, offload: np.ndarray | None = None) -> StepOutcome:
        """Advance one tick. ``target`` (N, S): desired replicas per cell (None keeps them); ``offload`` (N,): share
        of each node's arrivals to offload (None keeps the last). Returns the tick's outcome; its arrays are
        replaced, not overwritten, each tick."""
        if self.done:
            raise RuntimeError(f"the workload ends at tick {self.horizon}; reset() to run again")
        o = self.out
        o.drops = np.zeros_like(self.warm)
        self._apply_events()
        self._advance_node_boot()
        if target is not None:
            self.set_targets(target)
        if offload is not None:
            self.set_offload(offload)
        self._advance_replica_boot()
        self._refresh_speed()

        arrivals = self.workload.arrivals[self.t]
        o.requests = arrivals
        spilled_wait = None
        if self.spill.any():  # spilled requests are mixed into each cell's new work, with the waits they carry
            arrivals = arrivals + self.spill
            spilled_wait = (self.spill_wait + self.spill) / np.maximum(arrivals, 1e-12)  # waited so far, plus this tick
            self.spill = np.zeros(self.n_services)
            self.spill_wait = np.zeros(self.n_services)
        capacity = self.warm * self._rate_tick  # requests per tick
        new = self._route(arrivals, capacity)
        if self.offload.any():
            new, incoming = self._offload(new, capacity)
        else:
            incoming = None
        if spilled_wait is not None:
            self.queue_wait += new * spilled_wait
        o.arrivals = new
        if self._lost is not None:  # arrivals that could go nowhere: dropped on arrival, never queued
            o.arrivals = new.copy()
            o.arrivals[self._lost[0]] += self._lost[1]
            self._lost = None

        # fluid queue; waiting is tracked in request-ticks, and served requests carry the queue's mean wait (served in
        # random order within a tick; over a busy period the mean wait is the same as FIFO's)
        carried = self.queue
        self.queue_wait += carried
        total = carried + new
        served = np.minimum(total, capacity)
        inv_total = 1.0 / np.maximum(total, 1e-12)
        mean_wait_ms = self.queue_wait * inv_total * (self.tick_s * 1000.0)
        queue = total - served
        self.queue_wait *= queue * inv_total
        limit = np.maximum(capacity, self.booting * self._rate_tick) * self.timeout_ticks
        drops = queue - limit
        np.maximum(drops, 0.0, out=drops)
        if drops.any():
            self.queue_wait *= 1.0 - drops / np.maximum(queue, 1e-12)
            queue -= drops
            o.drops += drops
        self.queue = queue

        # latency of served requests: base plus an M/M/c waiting tail (Sakasegawa's approximation)
        servers = self.warm * self.concurrency
        rho = new / np.maximum(capacity, 1e-12)
        np.clip(rho, 0.0, 0.98, out=rho)
        p_wait, theta = waiting_tail(rho, servers, self._mu_per_ms)
        base_ms = self._service_ms + mean_wait_ms
        base_ms += (self.tier_latency_ms + self.net_extra_ms)[:, None]
        if incoming is not None:
            base_ms += incoming / np.maximum(new, 1e-12) * self.config.offload_hop_ms
        slack = self.slo_ms - base_ms
        violating = p_wait * np.exp(-theta * np.maximum(slack, 0.0))
        np.copyto(violating, 1.0, where=slack <= 0.0)
        o.served = served
        o.violations = served * violating + o.drops
        o.latency_ms = base_ms + p_wait / theta
        self._base_ms, self._p_wait, self._theta = base_ms, p_wait, theta

        # resources, energy and cost
        busy_replicas = served * self._busy_per_request
        o.busy_replicas = busy_replicas
        powered = (self.state == NODE_ON) | (self.state == NODE_BOOTING)
        idle = self.warm - busy_replicas
        np.maximum(idle, 0.0, out=idle)
        share = self.config.idle_replica_power_share
        util = np.minimum((busy_replicas @ self.svc_cpu) / self.cpus, 1.0)
        power_load = util + share * (idle @ self.svc_cpu) / self.cpus
        if self._has_gpu_nodes:  # a GPU node is as loaded as the busier of its CPUs and its GPUs
            gpus = np.maximum(self.gpus, 1.0)
            gpu_util = np.minimum((busy_replicas @ self.svc_gpu) / gpus, 1.0)
            util = np.maximum(util, gpu_util)
            power_load = np.maximum(power_load, gpu_util + share * (idle @ self.svc_gpu) / gpus)
        o.node_util = util
        o.node_power_w = powered * (self.power_idle + (self.power_peak - self.power_idle) * np.minimum(power_load, 1.0))
        price_per_tick = self.base_price_per_h * self.price_factor * (self.tick_s / 3600.0)
        o.node_cost = powered * price_per_tick
        o.replica_cost = ((self.warm + self.booting) * self.replica_share) @ self._ones_s * price_per_tick
        o.wasted_mem_gbs = (self._ones_n @ idle) * self.svc_mem_mb * (self.tick_s / 1024.0)
        o.replica_changes = self._changes
        self._changes = np.zeros_like(self.warm)
        self.t += 1
        return o

    def _advance_node_boot(self) -> None:
        booting = self.state == NODE_BOOTING
        if booting.any():
            self.state[booting & (self.node_ready_tick <= self.t)] = NODE_ON

    def _advance_replica_boot(self) -> None:
        ready = self.pending[self.t % self.ring_len]
        if ready.any():
            self.out.became_warm = self._ones_n @ ready
            self.warm += ready
            self.booting -= ready
            ready.fill(0.0)
        else:
            self.out.became_warm = np.zeros(self.n_services)

    def _route(self, arrivals: np.ndarray, capacity: np.ndarray) -> np.ndarray:
        """Split each service's arrivals over cells by the routing policy; cold services queue at booting replicas,
        and a service with none gets a demand-triggered cold start. Unroutable arrivals are dropped."""
        o = self.out
        warm_total = self._ones_n @ self.warm
        cold = (warm_total == 0) & (arrivals > 0)
        if not cold.any():
            o.cold_starts = np.zeros(self.n_services)
            if self.config.routing == "least-loaded":
                return self._route_least_loaded(arrivals, capacity)
            return self.warm * (arrivals / np.maximum(warm_total, 1e-12))
        o.cold_starts = np.where(cold, arrivals, 0.0)
        self._cold_start(cold)
        weights = self.warm.copy()
        weights[:, cold] = self.booting[:, cold]
        totals = self._ones_n @ weights
        routed = weights * (arrivals / np.maximum(totals, 1e-12))
        lost = np.where(totals > 0, 0.0, arrivals)
        if lost.any():
            node = self._drop_node()
            o.drops[node] += lost
            self._lost = (node, lost)
        return routed

    def _route_least_loaded(self, arrivals: np.ndarray, capacity: np.ndarray) -> np.ndarray:
        """In proportion to each cell's capacity net of its backlog: equal utilization across fast and slow nodes."""
        weights = np.maximum(capacity - self.queue, 0.01 * capacity)
        return weights * (arrivals / np.maximum(self._ones_n @ weights, 1e-12))

    def _cold_start(self, cold: np.ndarray) -> None:
        """Start one replica for each cold service with nothing booting, on the on-node with most free memory."""
        need = cold & ((self._ones_n @ self.booting) == 0) & (self.max_replicas > 0)
        if not need.any():
            return
        room = self.room()
        _, free_mem, _ = self.free_resources()
        up = np.zeros_like(self.warm)
        for j in np.flatnonzero(need):
            fits = np.flatnonzero(room[:, j] > 0)
            if fits.size:
                up[fits[np.argmax(free_mem[fits])], j] = 1.0
        self._start(up)
        self._changes += up

    def _drop_node(self) -> int:
        """Node charged with arrivals that could not be routed anywhere (first live node, else node 0)."""
        live = np.flatnonzero(self.state == NODE_ON)
        return int(live[0]) if live.size else 0

    def _offload(self, routed: np.ndarray, capacity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move each node's offload share of its arrivals to cloud cells with warm replicas (peers' warm cells when the
        cloud has none), in proportion to their spare capacity; nodes that offload receive none. Where no cell can
        take a service's work, it stays put. Returns (arrivals after offload, received)."""
        off = routed * self.offload[:, None]
        receives = (self.offload == 0)[:, None] & (self.warm > 0)  # a node that offloads takes no offloaded work
        spare = np.maximum(capacity - routed - self.queue, 0.0) + 1e-9
        target = np.where((self.tier == 1)[:, None] & receives, spare, 0.0)
        no_cloud = (self._ones_n @ target) <= 0
        if no_cloud.any():
            target[:, no_cloud] = np.where(receives[:, no_cloud], spare[:, no_cloud], 0.0)
        totals = self._ones_n @ target
        placeable = totals > 0
        off *= placeable
        received = target * ((self._ones_n @ off) / np.maximum(totals, 1e-12))
        return routed - off + received, received

    # ----------------------------------------------------------------------------------------------- latency
    def latency_survival(self, grid_ms: np.ndarray = LATENCY_GRID_MS) -> tuple[np.ndarray, np.ndarray]:
        """Served requests per service (S,) and, per service and grid point, the count of this tick's served
        requests whose latency exceeded it (S, G). Summed over ticks they give run-level percentiles."""
        served = self.out.served
        rows, cols = np.nonzero(served > 0)
        weights = served[rows, cols]
        base = self._base_ms[rows, cols][:, None]
        decay = np.exp(-self._theta[rows, cols][:, None] * np.maximum(grid_ms[None, :] - base, 0.0))
        tail = np.where(grid_ms[None, :] < base, 1.0, self._p_wait[rows, cols][:, None] * decay)
        exceed = np.zeros((self.n_services, grid_ms.size))
        np.add.at(exceed, cols, tail * weights[:, None])
        return self._ones_n @ served, exceed


def waiting_tail(rho: np.ndarray, servers: np.ndarray, mu_per_ms: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """The M/M/c waiting-time tail the simulator uses: ``P(wait > x) = p_wait * exp(-theta * x)`` (x in ms), with
    Sakasegawa's approximation ``p_wait = rho ** (sqrt(2 (c + 1)) - 1)`` and ``theta = c mu (1 - rho)``. ``rho`` must
    be below 1 (the core clips it at 0.98). Used by the core and by the clairvoyant bound, so both see one model."""
    p_wait = rho ** (np.sqrt(2.0 * servers + 2.0) - 1.0)
    theta = servers * mu_per_ms * (1.0 - rho) + 1e-12
    return p_wait, theta


def percentile_from_survival(served: np.ndarray, exceed: np.ndarray, q: float, grid_ms: np.ndarray = LATENCY_GRID_MS) -> np.ndarray:
    """Latency percentile ``q`` (0-100) per row from ``latency_survival`` sums (log-interpolated on the grid);
    NaN where nothing was served."""
    served = np.atleast_1d(served).astype(np.float64)
    exceed = np.atleast_2d(exceed)
    out = np.full(served.shape, np.nan)
    target = 1.0 - q / 100.0
    log_grid = np.log(grid_ms)
    for i in np.flatnonzero(served > 0):
        surv = exceed[i] / served[i]
        k = int(np.searchsorted(-surv, -target, side="left"))  # first grid point whose survival <= target
        if k == 0 or k >= grid_ms.size:
            out[i] = grid_ms[min(k, grid_ms.size - 1)]
            continue
        s0, s1 = surv[k - 1], surv[k]
        frac = 0.0 if s0 == s1 else (s0 - target) / (s0 - s1)
        out[i] = float(np.exp(log_grid[k - 1] + frac * (log_grid[k] - log_grid[k - 1])))
    return out


def _reduce_columns(x: np.ndarray, reduce_by: np.ndarray) -> np.ndarray:
    """Lower each column's total by ``reduce_by`` (S,) where positive, one unit at a time from the largest entry."""
    if not (reduce_by > 0).any():
        return x
    x = x.copy()
    for j in np.flatnonzero(reduce_by > 0):
        need = int(min(reduce_by[j], x[:, j].sum()))
        while need > 0:
            largest = x[:, j].max()
            rows = np.flatnonzero(x[:, j] == largest)[:need]
            x[rows, j] -= 1.0
            need -= rows.size
    return x


def _indices(nodes: np.ndarray, n: int) -> np.ndarray:
    arr = np.asarray(nodes)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"node mask must have shape ({n},)")
        return np.flatnonzero(arr)
    return arr.astype(np.int64).reshape(-1)
