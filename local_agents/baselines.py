"""The baseline controllers on a cluster: Kubernetes HPA, Knative KPA and the keep-alive policies, each a
ServiceScaler around the exact algorithm in local_agents.hpa, local_agents.kpa and local_agents.keepalive. Built by
local_agents.registry for ``ama sim``, the evals and the runtime; they read the cluster's last outcome (CPU busy
time, in-flight requests, invocations) and feed desired replicas per service, with a reason for every change.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from local_agents.controllers import ActionReason, ServiceScaler
from local_agents.hpa import HPA, HPASettings
from local_agents.keepalive import KeepAlivePolicy
from local_agents.kpa import KPA, KPASettings
from simulators.cluster import Cluster


def in_flight(cluster: Cluster) -> np.ndarray:
    """Requests in the system per service after the last tick: being served plus queued (what Knative's
    queue-proxy and activator count as concurrency)."""
    o = cluster.out
    return cluster.per_service(o.busy_replicas) * cluster.concurrency + cluster.per_service(cluster.queue)


class HPAController(ServiceScaler):
    """Kubernetes' HPA on CPU utilization, one per service: CPU usage is averaged over the sync period (the
    metrics-server window); replicas that finished booting less than one window ago have no full metric yet and
    count as not ready, as Kubernetes' CPU initialization rules treat them."""

    name = "hpa"

    def __init__(self, settings: HPASettings | None = None, placement: str = "least-loaded", seed: int = 0) -> None:
        super().__init__(placement, seed)
        self.settings = settings or HPASettings()
        self.hpas: list[HPA] = []

    def reset(self, cluster: Cluster) -> None:
        super().reset(cluster)
        self.hpas = [HPA(self.settings) for _ in range(cluster.n_services)]
        window = max(1, round(self.settings.sync_period_s / cluster.tick_s))
        self._busy = deque(maxlen=window)
        self._became_warm = deque(maxlen=window)

    def apply_pressure(self, pressure: float) -> None:
        """A higher SLA weight lowers the target utilization (more headroom): target / sqrt(pressure), 30..95%."""
        target = round(min(max(self.settings.target_utilization / pressure**0.5, 0.3), 0.95), 2)
        for hpa in self.hpas:
            hpa.settings = hpa.settings.model_copy(update={"target_utilization": target})

    def observe(self, cluster: Cluster) -> None:
        self._busy.append(cluster.per_service(cluster.out.busy_replicas) * cluster.svc_cpu)
        self._became_warm.append(cluster.out.became_warm)

    def decide(self, cluster: Cluster) -> list[ActionReason]:
        if not self._busy:
            return []
        usage_cores = np.mean(self._busy, axis=0)
        recently_warm = np.sum(self._became_warm, axis=0)
        warm = cluster.per_service(cluster.warm)
        booting = cluster.per_service(cluster.booting)
        reasons = []
        for j, hpa in enumerate(self.hpas):
            ready = int(max(warm[j] - recently_warm[j], 0))
            decision = hpa.step(
                now_s=cluster.time_s,
                current_replicas=int(self.desired[j]),
                ready_pods=ready,
                usage_milli_total=round(usage_cores[j] * ready / max(warm[j], 1.0) * 1000),  # the ready pods' share
                request_milli_per_pod=round(cluster.svc_cpu[j] * 1000),
                unready_pods=int(booting[j] + warm[j] - ready),
                missing_pods=0,
                min_replicas=int(cluster.min_replicas[j]),
                max_replicas=int(cluster.max_replicas[j]),
            )
            if decision.changed:
                reasons.append(self.change(cluster, j, decision.desired, decision.reason))
        return reasons


class KPAController(ServiceScaler):
    """Knative's KPA on request concurrency, one per service: the in-flight requests are recorded every simulated
    second and the autoscaler decides every ``tick_s``."""

    name = "kpa"

    def __init__(self, settings: KPASettings | None = None, placement: str = "least-loaded", seed: int = 0) -> None:
        super().__init__(placement, seed)
        self.settings = settings or KPASettings()
        self.kpas: list[KPA] = []

    def reset(self, cluster: Cluster) -> None:
        super().reset(cluster)
        self.kpas = [KPA(self.settings) for _ in range(cluster.n_services)]

    def apply_pressure(self, pressure: float) -> None:
        """A higher SLA weight lowers the per-pod concurrency target: target / sqrt(pressure), 30..95%."""
        target = round(min(max(self.settings.target_utilization / pressure**0.5, 0.3), 0.95), 2)
        for kpa in self.kpas:
            kpa.settings = kpa.settings.model_copy(update={"target_utilization": target})

    def observe(self, cluster: Cluster) -> None:
        concurrency = in_flight(cluster)
        now = cluster.time_s
        for j, kpa in enumerate(self.kpas):
            kpa.record(now, float(concurrency[j]))

    def decide(self, cluster: Cluster) -> list[ActionReason]:
        warm = cluster.per_service(cluster.warm)
        reasons = []
        for j, kpa in enumerate(self.kpas):
            decision = kpa.step(
                now_s=cluster.time_s,
                ready_pods=int(warm[j]),
                container_concurrency=float(cluster.concurrency[j]),
                min_replicas=int(cluster.min_replicas[j]),
                max_replicas=int(cluster.max_replicas[j]),
            )
            if decision.changed:
                reasons.append(self.change(cluster, j, decision.desired, decision.reason))
        return reasons


class KeepAliveController(ServiceScaler):
    """A serverless platform's instance pool under a keep-alive policy, one app per service. Instances start on
    demand (as many as the in-flight requests need) and idle ones are kept per the policy: in the minute grain of
    the paper, a service is invoked in a minute when requests arrive in it; after its last invoked minute m the
    policy's windows (prewarm p, keepalive k) keep the pool loaded over minutes [m + 1 + p, m + 1 + p + k). While
    loaded the pool holds the most instances needed over the last k minutes (at least one, for a pre-warm)."""

    def __init__(self, policy: KeepAlivePolicy, placement: str = "least-loaded", seed: int = 0) -> None:
        super().__init__(placement, seed)
        self.policy = policy
        self.name = policy.name
        self.keepalive_scale = 1.0
        """Multiplies the policy's keep-alive window: the manager's SLA weight lengthens it."""

    def apply_pressure(self, pressure: float) -> None:
        self.keepalive_scale = min(max(pressure, 0.5), 4.0)

    def reset(self, cluster: Cluster) -> None:
        super().reset(cluster)
        s = cluster.n_services
        self._last_minute: list[int | None] = [None] * s
        self._windows = [self.policy.windows(j) for j in range(s)]
        self._needed: list[deque[tuple[float, float]]] = [deque() for _ in range(s)]

    def observe(self, cluster: Cluster) -> None:
        now = cluster.time_s - cluster.tick_s  # the tick just stepped
        minute = math.floor(now / 60.0)
        needed = np.ceil(in_flight(cluster) / cluster.concurrency - 1e-9)
        for j in np.flatnonzero(cluster.out.requests > 0):
            last = self._last_minute[j]
            if last != minute:
                if last is not None:
                    self.policy.observe_idle(int(j), float(minute - last - 1))
                    self._windows[j] = self.policy.windows(int(j))
                self._last_minute[j] = minute
        for j in range(cluster.n_services):
            history = self._needed[j]
            while history and history[-1][1] <= needed[j]:
                history.pop()  # a monotonic deque: the front is the largest need still inside the window
            history.append((now, float(needed[j])))

    def decide(self, cluster: Cluster) -> list[ActionReason]:
        now = cluster.time_s
        reasons = []
        for j in range(cluster.n_services):
            pool, why = self._pool(j, now)
            if pool != self.desired[j]:
                reasons.append(self.change(cluster, j, pool, f"{self.name}: {why}: {int(self.desired[j])} -> {pool}"))
        return reasons

    def _pool(self, j: int, now: float) -> tuple[int, str]:
        last = self._last_minute[j]
        if last is None:
            return 0, "never invoked"
        prewarm, keepalive = self._windows[j]
        keepalive *= self.keepalive_scale
        history = self._needed[j]
        while history and history[0][0] < now - max(keepalive, 1.0) * 60.0:
            history.popleft()
        recent = int(history[0][1]) if history else 0
        since_min = now / 60.0 - (last + 1)
        if since_min < 0:
            return max(recent, 1), f"invoked this minute, {recent} instances needed in the last {keepalive:g} min"
        if prewarm <= since_min < prewarm + keepalive:
            what = "keep" if prewarm == 0 else "pre-warmed"
            return max(recent, 1), f"idle {since_min:.1f} min, {what} for {keepalive:g} min after {prewarm:g} min"
        if since_min < prewarm:
            return 0, f"idle {since_min:.1f} min, unloaded until the pre-warm at {prewarm:g} min"
        return 0, f"idle {since_min:.1f} min, past its {prewarm + keepalive:g} min window"
