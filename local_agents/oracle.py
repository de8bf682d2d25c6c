"""The clairvoyant heuristic (controller name ``oracle``, kept for compatibility). Called like any controller
(``ama sim --controller oracle``, the evals); knowing every future arrival and every tick's work, it keeps, per
service, the replicas each second's arrivals need to meet the SLO under the simulator's own queueing model
(``simulators.cluster.waiting_tail``), started a cold start ahead and stopped as soon as they are not needed.

It is NOT a bound: it sizes each second from that second's arrivals and ignores the queue, so after a burst it scales
down and drops what is still queued, and an online controller can beat it on cost and violations at once. The true
lower bound on cost at a given SLA level is evals.bound (``ama eval --controllers ...,bound``).

Each tick's need is the smallest replica count ``k`` whose cells keep the share of requests over the SLO at or below
``max_violation``, with the ``k`` replicas spread evenly over the nodes that can hold them (``min(k, nodes)`` cells
of M/M/c), as the cluster's default least-loaded scheduler spreads them for every other controller: the bound is
on what foresight buys, not on a better scheduler. Network latency is that of the slowest tier that can hold the
service, so the plan holds wherever a replica lands. It does not foresee node failures or stragglers, and does not
offload.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from local_agents.controllers import ActionReason, ServiceScaler
from simulators.cluster import NODE_ON, Cluster, waiting_tail
from simulators.errors import ConfigError


class OracleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_violation: float = Field(0.01, gt=0, lt=1)
    """Largest share of a tick's requests allowed over the SLO."""
    placement: str = "least-loaded"
    """Where replicas go; least-loaded spreads them, as the need assumes."""

    @classmethod
    def from_params(cls, params: dict[str, str]) -> OracleSettings:
        try:
            return cls.model_validate(params)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(f"oracle: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def replicas_needed(
    arrivals_per_s: np.ndarray,
    service_ms: np.ndarray,
    slack_ms: float,
    concurrency: float,
    nodes: int,
    max_replicas: int,
    max_violation: float,
) -> np.ndarray:
    """Fewest replicas per tick (T,) meeting the SLO for arrival rates (T,) and service times (T,) ms; max_replicas
    where even that is not enough, 0 where nothing arrives."""
    k = np.arange(1, max(max_replicas, 1) + 1, dtype=np.float64)[None, :]  # (1, K)
    cells = np.minimum(k, max(nodes, 1))
    servers = k / cells * concurrency
    lam = arrivals_per_s[:, None] / cells  # per cell, per s
    ms = service_ms[:, None]
    rho = lam * ms / 1000.0 / servers
    p_wait, theta = waiting_tail(np.minimum(rho, 0.98), servers, 1.0 / ms)
    violating = np.where(slack_ms - ms > 0, p_wait * np.exp(-theta * np.maximum(slack_ms - ms, 0.0)), 1.0)
    ok = (rho < 0.98) & (violating <= max_violation)
    first = np.where(ok.any(1), ok.argmax(1) + 1, max_replicas)
    return np.where(arrivals_per_s > 0, first, 0).astype(np.float64)


class OracleController(ServiceScaler):
    name = "oracle"

    def __init__(self, settings: OracleSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or OracleSettings()
        super().__init__(self.settings.placement, seed)
        self.plan = np.zeros((0, 0))

    def reset(self, cluster: Cluster) -> None:
        super().reset(cluster)
        self.plan = self._plan(cluster)

    def _plan(self, cluster: Cluster) -> np.ndarray:
        """Replicas to have at each tick (T, S): the need over the next cold-start time, so they are warm in time."""
        on = cluster.state == NODE_ON
        speed = float(cluster.speed[on].mean()) if on.any() else 1.0
        can_hold = on[:, None] & (cluster.room(np.zeros_like(cluster.warm)) > 0)
        arrivals = cluster.workload.arrivals / cluster.tick_s
        plan = np.zeros_like(arrivals)
        for j in range(cluster.n_services):
            service_ms = cluster.work_ms[j] * cluster.workload.work_scale[:, j] / speed
            hosts = np.flatnonzero(can_hold[:, j])
            slowest_ms = float(cluster.tier_latency_ms[hosts].max()) if hosts.size else float(cluster.tier_latency_ms.max())
            need = replicas_needed(
                arrivals[:, j],
                service_ms,
                float(cluster.slo_ms[j]) - slowest_ms,
                float(cluster.concurrency[j]),
                int(hosts.size),
                int(cluster.max_replicas[j]),
                self.settings.max_violation,
            )
            lead = int(cluster.cold_start_ticks[j])
            padded = np.concatenate([need, np.zeros(lead)])
            plan[:, j] = np.lib.stride_tricks.sliding_window_view(padded, lead + 1).max(1)[: need.size]
        return np.maximum(plan, cluster.min_replicas)

    def decide(self, cluster: Cluster) -> list[ActionReason]:
        t = min(cluster.t, self.plan.shape[0] - 1)
        reasons = []
        for j in np.flatnonzero(self.plan[t] != self.desired):
            before, after = int(self.desired[j]), int(self.plan[t, j])
            lead = int(cluster.cold_start_ticks[j])
            upcoming = cluster.workload.arrivals[t : t + lead + 1, j].max() / cluster.tick_s
            text = (
                f"oracle: up to {upcoming:.0f} req/s arrive in the next {lead * cluster.tick_s:g} s and need {after} replicas "
                f"(≤ {self.settings.max_violation:.0%} over the {cluster.slo_ms[j]:.0f} ms SLO): {before} -> {after}"
            )
            reasons.append(self.change(cluster, int(j), after, text))
        return reasons
