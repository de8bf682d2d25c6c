"""Run-level metrics from the simulator's per-tick outcomes (``cost`` is the replicas' pay-per-use cost,
``node_cost`` the bill of the powered nodes). Fed by whoever steps a Cluster (``ama sim``, the
evals' runner, the runtime) through ``RunRecorder.record`` after each tick; its ``summary`` feeds the CLI's report,
the evals' results and BENCHMARKS.md, and its ``series`` the plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulators.cluster import LATENCY_GRID_MS, NODE_ON, Cluster, percentile_from_survival

UNDO_WINDOW_S = 10.0
"""A scale move reversed on the same cell within this many seconds counts as undone (flapping)."""

VIOLATION_MINUTE_THRESHOLD = 0.05
"""A tick counts towards SLA-violation minutes when more than this share of its finished requests violated."""

SERIES = ("arrivals_rps", "served_rps", "violation_rate", "replicas", "cost_per_h", "power_w", "p95_ms", "queue", "drops", "cold_starts")


@dataclass
class RunRecorder:
    """Accumulates one run's outcomes tick by tick. ``keep_series`` also keeps per-tick cluster-wide series."""

    cluster: Cluster
    keep_series: bool = False
    ticks: int = 0
    requests: float = 0.0
    served: float = 0.0
    violations: float = 0.0
    drops: float = 0.0
    ok: float = 0.0
    """Requests finished within their SLO (served and not violating): served + drops - violations."""
    cold_starts: float = 0.0
    cost: float = 0.0
    node_cost: float = 0.0
    energy_j: float = 0.0
    wasted_mem_gbs: float = 0.0
    replica_changes: float = 0.0
    asleep_node_ticks: float = 0.0
    """Node-ticks spent asleep (put to sleep by its agent to save idle power)."""
    violation_ticks: int = 0
    scale_moves: int = 0
    """Cell-ticks on which a controller changed a cell's replicas (warm + booting) on a node that stayed on."""
    moves_undone: int = 0
    """Scale moves that reversed the cell's previous move within UNDO_WINDOW_S (up then down, or down then up)."""
    _last_replicas: np.ndarray | None = None
    _last_direction: np.ndarray | None = None
    _last_move_s: np.ndarray | None = None
    _was_on: np.ndarray | None = None
    exceed: np.ndarray = field(default_factory=lambda: np.zeros(LATENCY_GRID_MS.size))
    series: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in SERIES})

    def record(self) -> None:
        """Add the tick the cluster just stepped."""
        c, o = self.cluster, self.cluster.out
        served = float(o.served.sum())
        drops = float(o.drops.sum())
        violations = float(o.violations.sum())
        finished = served + drops
        self.ticks += 1
        power, wasted, cost = float(o.node_power_w.sum()), float(o.wasted_mem_gbs.sum()), float(o.replica_cost.sum())
        _check_finite(c, served=served, drops=drops, violations=violations, power_w=power, wasted_mem_gb_s=wasted, cost=cost)
        self.requests += float(o.requests.sum())
        self.served += served
        self.drops += drops
        self.violations += violations
        self.ok += served + drops - violations
        self.cold_starts += float(o.cold_starts.sum())
        self.cost += cost
        self.node_cost += float(o.node_cost.sum())
        self.energy_j += power * c.tick_s
        self.wasted_mem_gbs += wasted
        self.replica_changes += float(o.replica_changes.sum())
        self.asleep_node_ticks += float(c.asleep.sum())
        rate = violations / finished if finished > 0 else 0.0
        self.violation_ticks += rate > VIOLATION_MINUTE_THRESHOLD
        self._count_moves(c)
        _, exceed = c.latency_survival()
        tick_exceed = exceed.sum(0)
        self.exceed += tick_exceed
        if self.keep_series:
            s = self.series
            s["arrivals_rps"].append(float(o.requests.sum()) / c.tick_s)
            s["served_rps"].append(served / c.tick_s)
            s["violation_rate"].append(rate)
            s["replicas"].append(float(c.warm.sum() + c.booting.sum()))
            s["cost_per_h"].append(float(o.replica_cost.sum()) * 3600.0 / c.tick_s)
            s["power_w"].append(float(o.node_power_w.sum()))
            p95 = percentile_from_survival(np.array([served]), tick_exceed[None, :], 95.0)[0] if served > 0 else 0.0
            s["p95_ms"].append(float(p95))
            s["queue"].append(float(c.queue.sum()))
            s["drops"].append(drops)
            s["cold_starts"].append(float(o.cold_starts.sum()))

    def _count_moves(self, c: Cluster) -> None:
        """Scale moves and the ones undone within UNDO_WINDOW_S; changes on nodes that failed, were drained or
        booted this tick are the node's, not a scaling decision, and are not moves."""
        replicas = c.warm + c.booting
        on = c.state == NODE_ON
        if self._last_replicas is None or self._was_on is None:
            self._last_replicas, self._was_on = replicas, on
            self._last_direction = np.zeros(replicas.shape, dtype=np.int8)
            self._last_move_s = np.full(replicas.shape, -np.inf)
            return
        assert self._last_direction is not None and self._last_move_s is not None
        direction = np.sign(replicas - self._last_replicas).astype(np.int8)
        direction[~(on & self._was_on)] = 0
        moved = direction != 0
        if moved.any():
            now = c.time_s
            reversed_ = moved & (direction == -self._last_direction) & (now - self._last_move_s <= UNDO_WINDOW_S)
            self.scale_moves += int(moved.sum())
            self.moves_undone += int(reversed_.sum())
            self._last_direction[moved] = direction[moved]
            self._last_move_s[moved] = now
        self._last_replicas, self._was_on = replicas, on  # both fresh arrays this tick

    def summary(self) -> dict[str, Any]:
        """The run's metrics as plain numbers."""
        finished = self.served + self.drops
        pct = percentile_from_survival(np.array([self.served]), self.exceed[None, :], 50.0)[0]
        p95 = percentile_from_survival(np.array([self.served]), self.exceed[None, :], 95.0)[0]
        p99 = percentile_from_survival(np.array([self.served]), self.exceed[None, :], 99.0)[0]
        tick_s = self.cluster.tick_s
        return {
            "ticks": self.ticks,
            "duration_s": self.ticks * tick_s,
            "requests": round(self.requests, 1),
            "served": round(self.served, 1),
            "ok_requests": self.ok,
            "sla_violation_rate": self.violations / finished if finished > 0 else 0.0,
            "sla_violation_minutes": self.violation_ticks * tick_s / 60.0,
            "p50_latency_ms": _finite(pct),
            "p95_latency_ms": _finite(p95),
            "p99_latency_ms": _finite(p99),
            "cost": self.cost,
            "node_cost": self.node_cost,
            "energy_kwh": self.energy_j / 3.6e6,
            "cold_starts": self.cold_starts,
            "drops": self.drops,
            "wasted_mem_gb_s": self.wasted_mem_gbs,
            "scale_actions": self.replica_changes,
            "scale_moves": self.scale_moves,
            "moves_undone_10s": self.moves_undone,
            "undone_share": self.moves_undone / self.scale_moves if self.scale_moves else 0.0,
            "asleep_node_minutes": self.asleep_node_ticks * tick_s / 60.0,
        }


def _check_finite(cluster: Cluster, **totals: float) -> None:
    """The simulator's accounting never yields NaN or infinity: one that does is a bug, stopped here at its tick
    rather than carried into a summary (an AssertionError, kept under ``python -O``)."""
    bad = [name for name, value in totals.items() if not np.isfinite(value)]
    if bad:
        values = ", ".join(f"{name}={totals[name]}" for name in bad)
        raise AssertionError(f"simulator accounting at tick {cluster.t}: {values} (a bug: every total must be finite)")


def _finite(x: float) -> float | None:
    return None if np.isnan(x) else float(x)
