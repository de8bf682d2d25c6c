"""A true lower bound on a run's cost at a given SLA level. Called by evals.runner for the pseudo-controller ``bound``
(``ama eval --controllers ...,bound``: no simulation, one frontier per scenario and seed) and by the tests; feeds
results.json's ``bound`` records, which evals.report reads for its "cost/bound @ own SLA" column and frontier plot.

``cost`` is simulators.metrics' run cost: every tick, each replica, warm or booting, pays its dominant share
``replica_share[node, service]`` of its node's price x price factor x tick_s / 3600. No controller, however
clairvoyant, can run a scenario for less than ``min_cost(relaxation, ok)`` while finishing ``ok`` requests within
their SLO (``ok_requests`` = served + drops - violations), because every trajectory of simulators.cluster maps onto a
feasible point of this linear program of the same cost or less. Per service j and tick t (all services in one LP:
they share the SLA budget):

- ``r_t`` billed replicas (warm + booting, continuous): ``floor_j <= r_t <= cap_j``; ``cap_j`` is max_replicas (the
  cluster-wide cap set_targets keeps; the initial replicas if more), 0 when no node can hold one replica;
  ``floor_j = min(min_replicas, initial replicas placed)`` only for ticks before the scenario's first
  ``node_failure`` or ``straggler`` event (set_targets keeps each total there on scale-down, but failures and the
  drains a straggler triggers can take it below; a controller or manager that drains a node holding replicas before
  that is not covered), 0 after.
- ``s_t`` served: ``s_t <= mu_t r_t``, ``mu_t = concurrency * 1000 * tick_s / (work_ms * work_scale[t, j] /
  speed_max)`` per replica-tick, ``speed_max`` the fastest node able to host j (stragglers only slow nodes down; node
  failures, cold starts, placement, routing and node resources are relaxed away).
- queue ``Q_t = Q_{t-1} + a_t - s_t - delta_t`` with ``Q_{-1} = 0``, ``a_t`` the workload's arrivals (routing,
  offload and drains move requests, never create them; ``delta_t >= 0`` leaves the queue unfinished: drops, lost
  arrivals, failed nodes' queues), and the drop rule ``Q_t <= mu_t r_t timeout_ticks`` (the core drops beyond
  ``max(capacity, booting * rate) * timeout_ticks`` per cell, which is at most billed x fastest rate x timeout).
- ``ok_t <= s_t`` requests served within the SLO, and a cap from the core's waiting model. Served requests of a cell
  all carry the queue's MEAN wait (request-ticks / requests; a carried or re-routed request has waited at least one
  tick, a fresh arrival none), so a FIFO deadline is not valid, but this is: with slack
  ``d = (slo_ms - min service time - min tier latency) / (tick_s * 1000)`` ticks (min over the nodes able to host j,
  at that tick's work), a cell's served requests are within the SLO only when its mean wait is below ``d``, i.e.
  ``carried < d (carried + fresh)``; so ``ok_t = 0`` where ``d <= 0``, ``ok_t <= a_t / (1 - d)`` (= (1 + k) a_t,
  ``k = d / (1 - d)``) where ``0 < d < 1``, and no per-tick cap where ``d >= 1`` (there the bound rests on causality,
  capacity and the drop rule only, and is loose). This needs a drained node's queue to keep its wait when it is
  re-routed, which simulators.cluster does.
- price ``p_t = min`` over the nodes able to hold one replica of j (GPUs, CPUs and memory of an empty node, whatever
  its state) of ``replica_share * price_per_h * price_factor_t * tick_s / 3600``, ``price_factor_t`` from the
  scenario's price_change events (known in advance, as arrivals, work and failures are).
- minimise ``sum_t,j p_t r_t`` subject to ``sum_t,j ok_t >= ok_target``.

When ticks x services exceed ``MAX_CELL_TICKS`` the ticks are cut into blocks (boundaries also at every price change
and at the first failure or straggler) and each block is one variable set: ``R`` = replica-ticks, ``S``, ``delta``,
``ok`` = the block's sums and ``Q`` = the queue at its end. Every per-tick solution maps to one that satisfies:
``S <= max_mu R``; ``ok <= S`` and ``ok <=`` the sum of the ticks' caps; the block's balance exactly; the drop rule
summed over the block, using ``Q_t >= Q_end - (arrivals after t in the block)``:
``L Q_end - C <= timeout_ticks max_mu R`` with ``C = sum_t sum_{t < u in block} a_u``; cost ``>= min_p R``. So the
blocked LP is a relaxation of the per-tick one and its optimum is still a lower bound (a looser one).

The frontier solves the LP once for ``OK_max`` (the most ok requests the relaxation allows, cost aside) and then at
``ok_target = (1 - v) OK_max`` for each violation level ``v`` (targets are in requests, so a controller's own level
is its ``ok_requests``, unfinished requests aside). Minimal cost is non-decreasing in the target, so the bound at a
controller's level is the cost of the frontier point with the largest target at or below its ``ok_requests``
(``step_bound``; the LP value is convex in the target, so interpolating would overstate it); ``min_cost`` solves at an
exact level.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.optimize import linprog

from simulators.cluster import Cluster
from simulators.scenarios import Scenario

VIOLATION_LEVELS: tuple[float, ...] = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
"""Violation levels of the frontier: ok_target = (1 - v) * OK_max (v = 1: nothing need be served)."""
REPORTED_LEVEL = 0.01
"""The frontier point a ``bound`` record reports as its ``cost``."""
MAX_CELL_TICKS = 8_000
"""Ticks x services above which ticks are aggregated into blocks (a looser but still valid relaxation)."""
TARGET_SLACK = 1e-7
"""Targets are lowered by this share so that OK_max itself solves within the LP's tolerances (a lower target only
lowers the bound)."""
VARS = 5
"""Variables per service and block: R (replica-ticks), S (served), D (left unfinished), Q (queue at the end), K (ok)."""


@dataclass(frozen=True)
class Relaxation:
    """One scenario at one seed as the LP's data, per block (B,) and service (S,)."""

    services: tuple[str, ...]
    block_start: np.ndarray
    block_len: np.ndarray
    arrivals: np.ndarray
    """(B, S) requests arriving in each block."""
    mu: np.ndarray
    """(B, S) requests one replica serves per tick at most (the block's fastest tick)."""
    price: np.ndarray
    """(B, S) cheapest cost of one replica-tick in the block."""
    ok_cap: np.ndarray
    """(B, S) most ok requests the waiting model allows (inf: no cap)."""
    carry: np.ndarray
    """(B, S) C of the blocked drop rule (0 for one-tick blocks)."""
    floor: np.ndarray
    """(B, S) fewest replica-ticks."""
    cap: np.ndarray
    """(B, S) most replica-ticks."""
    timeout_ticks: np.ndarray
    """(S,)"""
    slack_ticks: np.ndarray
    """(S,) the smallest SLO slack d over the run, in ticks (for the record: d >= 1 means a loose bound)."""

    @property
    def blocks(self) -> int:
        return int(self.block_len.size)

    @property
    def total_requests(self) -> float:
        return float(self.arrivals.sum())


@dataclass(frozen=True)
class Frontier:
    """The bound's frontier for one scenario and seed."""

    points: list[dict[str, float]]
    """``{"violation_level", "ok_target", "cost"}``, ok_target decreasing."""
    ok_max: float
    requests: float
    blocks: int
    ticks: int
    solve_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "ok_max": self.ok_max,
            "requests": self.requests,
            "blocks": self.blocks,
            "ticks": self.ticks,
            "solve_s": round(self.solve_s, 3),
        }


def compile_relaxation(scenario: Scenario, max_cell_ticks: int = MAX_CELL_TICKS) -> Relaxation:
    """The LP's data for a compiled scenario (its seed is already in its arrivals)."""
    cluster = scenario.make_cluster()
    arrivals = np.asarray(cluster.workload.arrivals, dtype=np.float64)
    work_scale = np.asarray(cluster.workload.work_scale, dtype=np.float64)
    ticks, n_services = arrivals.shape
    able = _able(cluster)
    any_able = able.any(axis=0)
    speed_max = np.where(any_able, np.where(able, cluster.speed[:, None], 0.0).max(axis=0), 1.0)
    tier_min = np.where(any_able, np.where(able, cluster.tier_latency_ms[:, None], np.inf).min(axis=0), 0.0)
    service_ms = cluster.work_ms[None, :] * work_scale / speed_max[None, :]
    mu = cluster.concurrency[None, :] * 1000.0 * cluster.tick_s / service_ms
    slack = (cluster.slo_ms[None, :] - service_ms - tier_min[None, :]) / (cluster.tick_s * 1000.0)
    ok_cap = np.where(slack <= 0.0, 0.0, np.where(slack < 1.0, arrivals / np.maximum(1.0 - slack, 1e-12), np.inf))
    price = _prices(cluster, scenario, able, ticks)

    initial = cluster.per_service(cluster.warm)
    disruption = min((e.at_tick for e in scenario.events if e.type in ("node_failure", "straggler")), default=ticks)
    floor_j = np.minimum(cluster.min_replicas, initial) * any_able
    cap_j = np.maximum(cluster.max_replicas, initial) * any_able
    before = (np.arange(ticks) < disruption).astype(np.float64)

    starts = _block_starts(ticks, n_services, max_cell_ticks, scenario, disruption)
    lengths = np.diff(np.r_[starts, ticks])
    offset = np.arange(ticks) - np.repeat(starts, lengths)  # position of each tick in its block
    return Relaxation(
        services=cluster.service_names,
        block_start=starts,
        block_len=lengths,
        arrivals=np.add.reduceat(arrivals, starts, axis=0),
        mu=np.maximum.reduceat(mu, starts, axis=0),
        price=np.minimum.reduceat(price, starts, axis=0),
        ok_cap=np.add.reduceat(ok_cap, starts, axis=0),
        carry=np.add.reduceat(arrivals * offset[:, None], starts, axis=0),
        floor=np.add.reduceat(before, starts)[:, None] * floor_j[None, :],
        cap=lengths[:, None] * cap_j[None, :].astype(np.float64),
        timeout_ticks=np.asarray(cluster.timeout_ticks, dtype=np.float64),
        slack_ticks=slack.min(axis=0),
    )


def _able(cluster: Cluster) -> np.ndarray:
    """(N, S): an empty node of this kind could hold one replica of the service (whatever the node's state)."""
    per_node = np.minimum(cluster.cpus[:, None] / cluster.svc_cpu[None, :], cluster.mem_mb_cap[:, None] / cluster.svc_mem_mb[None, :])
    by_gpu = np.where(cluster.needs_gpu[None, :], cluster.gpus[:, None] / np.maximum(cluster.svc_gpu[None, :], 1e-9), np.inf)
    return (np.floor(np.minimum(per_node, by_gpu)) >= 1.0) & cluster.gpu_fits


def _prices(cluster: Cluster, scenario: Scenario, able: np.ndarray, ticks: int) -> np.ndarray:
    """(T, S): the cheapest replica-tick of each service, under the price factors in force at each tick."""
    changes = [e for e in scenario.events if e.type == "price_change"]
    cuts = sorted({0, *(min(e.at_tick, ticks) for e in changes), *(min(e.end_tick, ticks) for e in changes if e.end_tick is not None)})
    cuts = [c for c in cuts if c < ticks]
    price = np.zeros((ticks, cluster.n_services))
    per_replica = cluster.replica_share * cluster.base_price_per_h[:, None] * (cluster.tick_s / 3600.0)
    for k, start in enumerate(cuts):
        end = cuts[k + 1] if k + 1 < len(cuts) else ticks
        factor = np.ones(cluster.n_nodes)
        for e in changes:
            if e.at_tick <= start and (e.end_tick is None or start < e.end_tick):
                factor[list(e.nodes)] *= e.value
        cheapest = np.where(able, per_replica * factor[:, None], np.inf).min(axis=0)
        price[start:end] = np.where(np.isfinite(cheapest), cheapest, 0.0)[None, :]
    return price


def _block_starts(ticks: int, n_services: int, max_cell_ticks: int, scenario: Scenario, disruption: int) -> np.ndarray:
    """First tick of each block: every tick when small enough, else a regular grid plus every price change and the
    first disruption, so that prices are constant within blocks and the floor's end falls on a boundary."""
    if ticks * n_services <= max_cell_ticks:
        return np.arange(ticks)
    length = math.ceil(ticks * n_services / max_cell_ticks)
    marks = {disruption}
    for e in scenario.events:
        if e.type == "price_change":
            marks.add(e.at_tick)
            if e.end_tick is not None:
                marks.add(e.end_tick)
    return np.array(sorted({*range(0, ticks, length), *(m for m in marks if 0 < m < ticks)}), dtype=np.int64)


def _lp(relax: Relaxation) -> tuple[sparse.csr_matrix, np.ndarray, sparse.csr_matrix, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The constraint matrices, requests of service j in units of its largest mu: (A_ub, b_ub, A_eq, b_eq, bounds, cost
    per variable, requests per unit of each ok variable)."""
    n_blocks, n_services = relax.arrivals.shape
    unit = np.maximum(relax.mu.max(axis=0), 1e-12)  # (S,)
    b = np.arange(n_blocks)
    rows, cols, vals = [], [], []
    rhs_ub: list[np.ndarray] = []
    eq_rows, eq_cols, eq_vals = [], [], []
    rhs_eq: list[np.ndarray] = []
    lower = np.zeros(VARS * n_blocks * n_services)
    upper = np.full(VARS * n_blocks * n_services, np.inf)
    cost = np.zeros_like(lower)
    ok_weight = np.zeros_like(lower)
    for j in range(n_services):
        base = VARS * n_blocks * j
        r, s, d, q, k = (base + m * n_blocks + b for m in range(VARS))
        mu = relax.mu[:, j] / unit[j]
        row0 = 3 * n_blocks * j
        cap_row, drop_row, ok_row = row0 + b, row0 + n_blocks + b, row0 + 2 * n_blocks + b
        # served <= mu R
        rows += [cap_row, cap_row]
        cols += [s, r]
        vals += [np.ones(n_blocks), -mu]
        # L Q - timeout mu R <= C
        rows += [drop_row, drop_row]
        cols += [q, r]
        vals += [relax.block_len.astype(np.float64), -relax.timeout_ticks[j] * mu]
        # ok <= served
        rows += [ok_row, ok_row]
        cols += [k, s]
        vals += [np.ones(n_blocks), -np.ones(n_blocks)]
        rhs_ub += [np.zeros(n_blocks), relax.carry[:, j] / unit[j], np.zeros(n_blocks)]
        # Q_b - Q_{b-1} + S_b + D_b = A_b
        eq = n_blocks * j + b
        eq_rows += [eq, eq, eq, eq[1:]]
        eq_cols += [q, s, d, q[:-1]]
        eq_vals += [np.ones(n_blocks), np.ones(n_blocks), np.ones(n_blocks), -np.ones(n_blocks - 1)]
        rhs_eq.append(relax.arrivals[:, j] / unit[j])
        lower[r], upper[r] = relax.floor[:, j], relax.cap[:, j]
        upper[k] = relax.ok_cap[:, j] / unit[j]
        cost[r] = relax.price[:, j]
        ok_weight[k] = unit[j]
    a_ub = _csr(vals, rows, cols, (3 * n_blocks * n_services, lower.size))
    a_eq = _csr(eq_vals, eq_rows, eq_cols, (n_blocks * n_services, lower.size))
    return a_ub, np.concatenate(rhs_ub), a_eq, np.concatenate(rhs_eq), np.column_stack([lower, upper]), cost, ok_weight


def _csr(vals: list[np.ndarray], rows: list[np.ndarray], cols: list[np.ndarray], shape: tuple[int, int]) -> sparse.csr_matrix:
    return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)


class _Solver:
    """The LP built once; solved for the most ok requests, or for the least cost at an ok target."""

    def __init__(self, relax: Relaxation) -> None:
        self.a_ub, self.b_ub, self.a_eq, self.b_eq, self.bounds, self.cost, self.ok_weight = _lp(relax)
        self.price_unit = max(float(self.cost.max()), 1e-300)

    def max_ok(self) -> float:
        res = linprog(-self.ok_weight / self.ok_weight.max(), A_ub=self.a_ub, b_ub=self.b_ub, A_eq=self.a_eq, b_eq=self.b_eq,
                      bounds=self.bounds, method="highs")  # fmt: skip
        if res.status != 0:
            raise RuntimeError(f"bound LP (most ok requests) did not solve: {res.message}")
        return float(self.ok_weight @ res.x)

    def min_cost(self, ok_target: float) -> float:
        budget = sparse.csr_matrix(-self.ok_weight / self.ok_weight.max())
        a_ub = sparse.vstack([self.a_ub, budget], format="csr")
        b_ub = np.r_[self.b_ub, -max(ok_target, 0.0) / self.ok_weight.max()]
        res = linprog(self.cost / self.price_unit, A_ub=a_ub, b_ub=b_ub, A_eq=self.a_eq, b_eq=self.b_eq, bounds=self.bounds, method="highs")
        if res.status == 2:
            return math.inf
        if res.status != 0:
            raise RuntimeError(f"bound LP (least cost) did not solve: {res.message}")
        return float(res.fun) * self.price_unit


def min_cost(relax: Relaxation, ok_target: float) -> float:
    """The least cost at which ``ok_target`` requests can finish within their SLO (inf: more than the relaxation allows)."""
    return _Solver(relax).min_cost(ok_target * (1.0 - TARGET_SLACK))


def max_ok(relax: Relaxation) -> float:
    """OK_max: the most requests the relaxation lets finish within their SLO, at any cost."""
    return _Solver(relax).max_ok()


def frontier(relax: Relaxation, levels: Sequence[float] = VIOLATION_LEVELS) -> Frontier:
    """The least cost at each violation level v (ok_target = (1 - v) OK_max), one LP each, all on one model."""
    started = time.perf_counter()
    solver = _Solver(relax)
    ok_max = solver.max_ok()
    points = []
    for v in sorted(set(levels)):
        target = (1.0 - v) * ok_max
        points.append({"violation_level": float(v), "ok_target": target, "cost": solver.min_cost(target * (1.0 - TARGET_SLACK))})
    return Frontier(points, ok_max, relax.total_requests, relax.blocks, int(relax.block_len.sum()), time.perf_counter() - started)


def step_bound(points: Sequence[dict[str, Any]], ok_requests: float) -> float | None:
    """The bound at a run's own SLA level: the cost of the frontier point with the largest ok_target at or below
    ``ok_requests`` (valid because the least cost is non-decreasing in the target); None without such a point."""
    below = [p for p in points if float(p["ok_target"]) <= ok_requests and math.isfinite(float(p["cost"]))]
    if not below:
        return None
    return float(max(below, key=lambda p: float(p["ok_target"]))["cost"])
