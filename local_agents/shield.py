"""A safety shield between a node-agent controller's replica targets and ``Cluster.step``. Used by the MARL
controller (local_agents.marl) every tick, after its policy and any fallback decided; usable by any controller that
proposes per-cell targets. Feeds the targets that are applied, one explained reason per move it overrides, and per-run
counters (moves shielded by rule, moves made, moves undone within ``undo_window_s``) for the evals.

A move is a change of a cell's (node, service) replica count, warm plus booting. The shield keeps a cell at its
current count when the proposed move breaks one of these rules, checked in this order (the first that fires is the
one counted and explained):

1. ``booting``: no scale-down of a cell with a replica still starting. ``Cluster.set_targets`` stops booting replicas
   first (``Cluster._stop``), so any scale-down of such a cell would stop a replica that has not served yet: a cell
   with booting replicas is never scaled below warm + booting.
2. ``backlog``: no scale-down while the backlog needs the capacity. Let H = the service's cold-start time, at least
   one tick and at most its timeout: if the move proves wrong, a replacement is warm only after H, and requests
   waiting longer than the timeout are dropped. With mu the cell's service rate per replica (req/s, from the
   cluster's own service times) and rho = ``max_utilization``, a scale-down by d is refused when
   (a) the cell's own queue cannot be cleared by its remaining warm replicas within H:
   ``queue > rho * (warm - d) * mu * H`` (queues stay with their cell), or
   (b) the service's work, in replicas, exceeds rho times its warm replicas once this and the service's other
   scale-downs of the tick are taken out: ``busy + backlog > rho * (warm_total - removed)``, where ``busy`` is the
   replicas its arrivals keep busy (each cell's arrivals over that cell's rate per replica: a slow node's count
   more, and so does a tick of long requests), at its peak over the last ``demand_window_s`` (bursty work comes
   back: Kubernetes' HPA scales down only to the highest recommendation of its stabilization window for the same
   reason), and ``backlog`` the replicas that clear its queues within H (the balancer moves a stopped replica's
   share of arrivals to the others, so the service, not the cell, must have the room).
   Scale-downs of one service are admitted cell by cell in node order, each against what is left after the earlier.
   Before the first tick has run (``cluster.t == 0``) nothing is known of the work, and every scale-down is refused.
3. ``hold_down``: no scale-down of a cell within the service's cold-start time + ``hold_s`` after it was scaled up.
4. ``hold_up``: no scale-up of a cell within ``hold_s`` of its last scale-down, unless the capacity is needed: the
   cell's queue is more than its warm replicas serve within H, or the service's work (rule 2(b)'s left side)
   exceeds its warm replicas: rule 2 at full utilization. Safety beats churn: a needed scale-up always goes through, and is counted as
   undoing the move. The gap between rule 2's rho and this 100% is the hysteresis that keeps noise from flapping.

Scale-ups past the resources a node has are left to ``Cluster.set_targets`` (it clips them); the shield never adds
a replica. Moves are recorded as issued (after the shield), at the cluster's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulators.cluster import Cluster

RULES = ("booting", "backlog", "hold_down", "hold_up")


@dataclass(frozen=True)
class ShieldSettings:
    max_utilization: float = 0.85
    """rho: the share of warm capacity the backlog rule lets the remaining replicas run at."""
    hold_s: float = 10.0
    """Hold-down after a scale-up (on top of the cold-start time) and hold-up after a scale-down, seconds."""
    undo_window_s: float = 10.0
    """A move reversed within this many seconds counts as undone (the flapping measure)."""
    demand_window_s: float = 30.0
    """The backlog rule's expected work: each service's peak over this many seconds."""


@dataclass(frozen=True)
class Shielded:
    """One overridden move: the cell, what was asked, what was kept, the rule and why, in operator units."""

    node: int
    service: int
    asked: int
    kept: int
    rule: str
    why: str


@dataclass
class MoveCounts:
    """Per-run counters: moves overridden by each rule, moves issued, and issued moves reversed within the window."""

    shielded: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RULES, 0))
    moves: int = 0
    undone: int = 0

    @property
    def undone_share(self) -> float:
        return self.undone / self.moves if self.moves else 0.0


class Shield:
    """Holds each cell's last scale-up and scale-down time; ``filter`` once per tick before the targets apply."""

    def __init__(self, settings: ShieldSettings | None = None, enabled: bool = True) -> None:
        self.settings = settings or ShieldSettings()
        self.enabled = enabled
        """Off: targets pass unchanged, but moves and undone moves are still counted (the measure without it)."""
        self.counts = MoveCounts()
        self.last_up = np.zeros((0, 0))
        self.last_down = np.zeros((0, 0))
        self.last_move = np.zeros((0, 0), np.int8)
        """Direction of each cell's last issued move (+1, -1; 0: none yet)."""
        self.busy = np.zeros((0, 0))
        """Replicas each service's arrivals kept busy, tick by tick over the last ``demand_window_s`` (a ring)."""

    def reset(self, cluster: Cluster) -> None:
        shape = (cluster.n_nodes, cluster.n_services)
        self.last_up = np.full(shape, -np.inf)
        self.last_down = np.full(shape, -np.inf)
        self.last_move = np.zeros(shape, np.int8)
        self.busy = np.zeros((max(1, int(np.ceil(self.settings.demand_window_s / cluster.tick_s))), cluster.n_services))
        self.counts = MoveCounts()

    def filter(self, cluster: Cluster, targets: np.ndarray | None) -> tuple[np.ndarray | None, list[Shielded]]:
        """Proposed targets (N, S) -> the targets to apply (None when no cell moves) and the overridden moves."""
        if self.last_up.shape != (cluster.n_nodes, cluster.n_services):
            self.reset(cluster)
        per_tick = cluster.concurrency * 1000.0 / cluster.service_ms() * cluster.tick_s  # requests per replica per tick
        self.busy[cluster.t % len(self.busy)] = cluster.per_service(cluster.out.arrivals / per_tick)
        if targets is None:
            return None, []
        current = cluster.replicas()
        targets = np.maximum(np.rint(targets), 0.0)
        found = self._check(cluster, current, targets) if self.enabled else []
        for cut in found:
            targets[cut.node, cut.service] = cut.kept
            self.counts.shielded[cut.rule] += 1
        self._record(cluster.time_s, np.sign(targets - current).astype(np.int8))
        return (targets if (targets != current).any() else None), found

    def _check(self, c: Cluster, current: np.ndarray, targets: np.ndarray) -> list[Shielded]:
        s, now = self.settings, c.time_s
        delta = targets - current
        downs, ups = delta < 0, delta > 0
        if not (downs.any() or ups.any()):
            return []
        cold_s = c.cold_start_ticks * c.tick_s
        horizon = np.minimum(c.timeout_ticks * c.tick_s, np.maximum(cold_s, c.tick_s))
        rate = c.concurrency * 1000.0 / c.service_ms()  # req/s per warm replica, per cell
        warm = c.per_service(c.warm)
        work = self.busy.max(axis=0) + c.per_service(c.queue / (rate * horizon))  # replicas
        rho = s.max_utilization
        found = []
        removed = np.zeros(c.n_services)
        for i, j in zip(*np.nonzero(downs), strict=True):
            asked, kept = int(targets[i, j]), int(current[i, j])
            d = kept - asked
            booting, here, queue = int(c.booting[i, j]), float(c.warm[i, j]), float(c.queue[i, j])
            left = rho * (warm[j] - removed[j] - d)
            if booting > 0:
                why = f"{booting} still starting"
                rule = "booting"
            elif c.t == 0:
                why = "no tick has run yet, so nothing is known of the work it must serve"
                rule = "backlog"
            elif queue > rho * (here - d) * rate[i, j] * horizon[j]:
                why = (f"{queue:.0f} requests queued here; {here - d:.0f} warm replicas would clear "
                       f"{rho * (here - d) * rate[i, j] * horizon[j]:.0f} within {horizon[j]:.0f} s")  # fmt: skip
                rule = "backlog"
            elif work[j] > left:
                why = (f"{c.service_names[j]}'s work needs {work[j]:.1f} busy replicas (its peak of the last {s.demand_window_s:.0f} s "
                       f"plus its backlog cleared within {horizon[j]:.0f} s); without this one it has {warm[j] - removed[j] - d:.0f} "
                       f"warm replicas, {left:.1f} at {rho:.0%}")  # fmt: skip
                rule = "backlog"
            elif now - self.last_up[i, j] < cold_s[j] + s.hold_s:
                why = (f"scaled up {now - self.last_up[i, j]:.0f} s ago; hold-down {cold_s[j] + s.hold_s:.0f} s "
                       f"(cold start {cold_s[j]:.0f} s + {s.hold_s:.0f} s)")  # fmt: skip
                rule = "hold_down"
            else:
                removed[j] += d
                continue
            found.append(Shielded(int(i), int(j), asked, kept, rule, why))
        needed = work > warm
        for i, j in zip(*np.nonzero(ups), strict=True):
            since = now - self.last_down[i, j]
            if since < s.hold_s and c.queue[i, j] <= c.warm[i, j] * rate[i, j] * horizon[j] and not needed[j]:
                why = f"scaled down {since:.0f} s ago; hold {s.hold_s:.0f} s, and neither a backlog its warm replicas cannot clear within"
                why += f" {horizon[j]:.0f} s"
                why += f" nor {c.service_names[j]}'s work ({work[j]:.1f} busy replicas of its {warm[j]:.0f} warm) needs it"
                found.append(Shielded(int(i), int(j), int(targets[i, j]), int(current[i, j]), "hold_up", why))
        return found

    def _record(self, now: float, direction: np.ndarray) -> None:
        """Count the issued moves and those that reverse the cell's last move within the undo window."""
        moved = direction != 0
        if not moved.any():
            return
        last_time = np.where(self.last_move > 0, self.last_up, self.last_down)
        undone = moved & (direction == -self.last_move) & (now - last_time <= self.settings.undo_window_s)
        self.counts.moves += int(moved.sum())
        self.counts.undone += int(undone.sum())
        self.last_up[direction > 0] = now
        self.last_down[direction < 0] = now
        self.last_move[moved] = direction[moved]

    def text(self, cluster: Cluster, cut: Shielded) -> str:
        """The decision log's sentence for one overridden move."""
        service, node = cluster.service_names[cut.service], cluster.node_names[cut.node]
        return f"shield ({cut.rule}): kept {cut.kept} replicas of {service} on {node} (the policy asked for {cut.asked}): {cut.why}"
