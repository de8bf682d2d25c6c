"""Replica placement: where the replicas a service needs go, and which ones go when it needs fewer. The scheduler
half of a cluster (Kubernetes' ReplicaSet controller plus kube-scheduler), so it lives beside the simulator; used by
the service-level controllers of local_agents and by the simulator actuator's service-wide scale.
"""

from __future__ import annotations

import numpy as np

from simulators.cluster import NODE_ON, Cluster
from simulators.errors import ConfigError

PLACEMENTS = ("least-loaded", "round-robin", "first-fit", "best-fit", "random", "pack")


class Placer:
    """Turns desired replicas per service into per-node starts and stops. Additions go where the placement policy
    says, one replica at a time within free CPU, memory and GPUs of on-nodes; removals follow Kubernetes'
    ReplicaSet ranking (booting replicas first, then the node running the most replicas of the service; ``pack``
    empties the smallest cell instead, to keep replicas pooled)."""

    def __init__(self, policy: str = "least-loaded", seed: int = 0) -> None:
        if policy not in PLACEMENTS:
            raise ConfigError(f"unknown placement {policy!r}; choose one of {', '.join(PLACEMENTS)}")
        self.policy = policy
        self.rng = np.random.default_rng(seed)
        self._next = 0

    def reconcile(self, cluster: Cluster, desired: np.ndarray) -> np.ndarray:
        """Per-cell replica changes (N, S) that move each service's total towards ``desired`` (S,)."""
        current = cluster.replicas()
        gap = desired - cluster.per_service(current)
        delta = np.zeros_like(current)
        if (gap > 0).any():
            free_cpu, free_mem, free_gpu = cluster.free_resources()
            on = cluster.state == NODE_ON
            for j in np.flatnonzero(gap > 0):
                for _ in range(int(gap[j])):
                    fits = on & (free_cpu >= cluster.svc_cpu[j]) & (free_mem >= cluster.svc_mem_mb[j]) & (free_gpu >= cluster.svc_gpu[j])
                    if not fits.any():
                        break
                    i = self._choose(cluster, fits, free_cpu, int(j), delta[:, j])
                    delta[i, j] += 1
                    free_cpu[i] -= cluster.svc_cpu[j]
                    free_mem[i] -= cluster.svc_mem_mb[j]
                    free_gpu[i] -= cluster.svc_gpu[j]
        for j in np.flatnonzero(gap < 0):
            booting, warm = cluster.booting[:, j].copy(), cluster.warm[:, j].copy()
            for _ in range(int(-gap[j])):
                i = int(np.argmax(booting)) if booting.any() else self._removal_node(warm)
                if booting[i] > 0:
                    booting[i] -= 1
                elif warm[i] > 0:
                    warm[i] -= 1
                else:
                    break
                delta[i, j] -= 1
        return delta

    def _removal_node(self, warm: np.ndarray) -> int:
        """Kubernetes removes from the node running the most replicas; packing keeps big cells and empties the
        smallest one instead."""
        if self.policy != "pack":
            return int(np.argmax(warm))
        running = np.flatnonzero(warm > 0)
        return int(running[np.argmin(warm[running])]) if running.size else 0

    def _choose(self, cluster: Cluster, fits: np.ndarray, free_cpu: np.ndarray, service: int, added: np.ndarray) -> int:
        candidates = np.flatnonzero(fits)
        if self.policy == "least-loaded":  # kube-scheduler's LeastAllocated: the lowest reserved CPU share
            return int(candidates[np.argmax(free_cpu[candidates] / cluster.cpus[candidates])])
        if self.policy == "best-fit":  # the tightest node that still fits
            return int(candidates[np.argmin(free_cpu[candidates])])
        if self.policy == "pack":  # the node already running the most of this service: replicas pool in few cells
            running = cluster.replicas()[candidates, service] + added[candidates]
            return int(candidates[np.lexsort((-free_cpu[candidates], -running))[0]])
        if self.policy == "first-fit":
            return int(candidates[0])
        if self.policy == "random":
            return int(self.rng.choice(candidates))
        after = candidates[candidates >= self._next]  # round-robin
        chosen = int(after[0] if after.size else candidates[0])
        self._next = (chosen + 1) % cluster.n_nodes
        return chosen
