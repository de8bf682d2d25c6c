"""The simulator's actuator: carries tool calls out on a simulators.cluster.Cluster between ticks. Used by the
runtime and the manager's apply step when the cluster is simulated (the default backend); idempotent per
request_id and reporting failures as data (see tools.actuator).

Reward weights are not cluster state: ``set_reward_weights`` validates them, keeps them as ``weights`` and hands
them to ``on_weights`` (the runtime passes the env's or the controllers' setter).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from simulators.cluster import NODE_OFF, NODE_ON, NODE_STATE_NAMES, TIERS, Cluster
from simulators.placement import Placer
from simulators.rewards import RewardWeights
from tools.actuator import ActionResult, IdempotentActuator
from tools.catalog import (
    AddNodesArgs,
    DrainNodeArgs,
    MigrateArgs,
    OffloadArgs,
    PrewarmArgs,
    RemoveNodesArgs,
    RestoreNodeArgs,
    ScaleArgs,
    SetRewardWeightsArgs,
    ToolCall,
)


class SimActuator(IdempotentActuator):
    def __init__(
        self,
        cluster: Cluster,
        weights: RewardWeights | None = None,
        on_weights: Callable[[RewardWeights, float | None], None] | None = None,
    ) -> None:
        super().__init__()
        self.cluster = cluster
        self.placer = Placer("least-loaded")
        self.weights = weights or RewardWeights()
        self.on_weights = on_weights

    def _apply(self, call: ToolCall, request_id: str) -> ActionResult:
        args = call.args
        handlers = {
            ScaleArgs: self._scale,
            PrewarmArgs: self._prewarm,
            OffloadArgs: self._offload,
            MigrateArgs: self._migrate,
            DrainNodeArgs: self._drain,
            RestoreNodeArgs: self._restore,
            AddNodesArgs: self._add_nodes,
            RemoveNodesArgs: self._remove_nodes,
            SetRewardWeightsArgs: self._set_weights,
        }
        handler = handlers.get(type(args))
        if handler is None:
            return ActionResult(request_id, call.name, False, f"the simulator has no handler for {call.name}")
        ok, detail, data = handler(args)
        return ActionResult(request_id, call.name, ok, detail, data)

    # ------------------------------------------------------------------------------------------ lookups
    def _node(self, name: str) -> int:
        try:
            return self.cluster.node_names.index(name)
        except ValueError:
            raise LookupError(f"unknown node {name!r}") from None

    def _service(self, name: str) -> int:
        try:
            return self.cluster.service_names.index(name)
        except ValueError:
            raise LookupError(f"unknown service {name!r}") from None

    def _set_cells(self, changes: dict[tuple[int, int], float]) -> dict[tuple[int, int], float]:
        """Apply per-cell replica targets; returns what each cell has afterwards (resources may cap it)."""
        target = self.cluster.replicas()
        for (i, j), value in changes.items():
            target[i, j] = value
        self.cluster.set_targets(target)
        after = self.cluster.replicas()
        return {cell: float(after[cell]) for cell in changes}

    # ------------------------------------------------------------------------------------------ actions
    def _scale(self, args: ScaleArgs) -> tuple[bool, str, dict]:
        try:
            j = self._service(args.service)
            if args.node is not None:
                i = self._node(args.node)
                got = self._set_cells({(i, j): float(args.replicas)})[(i, j)]
                return got == args.replicas, f"{args.service} on {args.node}: now {got:.0f} of {args.replicas} replicas", {"replicas": got}
        except LookupError as exc:
            return False, str(exc), {}
        before = float(self.cluster.per_service(self.cluster.replicas())[j])
        self._scale_service(j, args.replicas)
        got = float(self.cluster.per_service(self.cluster.replicas())[j])
        return got == args.replicas, f"{args.service}: {before:.0f} -> {got:.0f} replicas (asked {args.replicas})", {"replicas": got}

    def _scale_service(self, j: int, replicas: int) -> None:
        """Service-wide: the placement policy chooses the nodes (least-loaded, as kube-scheduler does)."""
        desired = self.cluster.per_service(self.cluster.replicas())
        desired[j] = replicas
        self.cluster.set_targets(self.cluster.replicas() + self.placer.reconcile(self.cluster, desired))

    def _prewarm(self, args: PrewarmArgs) -> tuple[bool, str, dict]:
        try:
            i, j = self._node(args.node), self._service(args.service)
        except LookupError as exc:
            return False, str(exc), {}
        have = float(self.cluster.replicas()[i, j])
        if have > 0:
            return True, f"{args.service} already has {have:.0f} replica(s) on {args.node}", {"replicas": have}
        got = self._set_cells({(i, j): 1.0})[(i, j)]
        return got == 1, f"{args.service} on {args.node}: " + ("1 replica starting" if got else "no room"), {"replicas": got}

    def _offload(self, args: OffloadArgs) -> tuple[bool, str, dict]:
        try:
            i = self._node(args.node)
        except LookupError as exc:
            return False, str(exc), {}
        shares = self.cluster.offload.copy()
        shares[i] = args.share
        self.cluster.set_offload(shares)
        return True, f"{args.node} offloads {args.share:.0%} of its arrivals", {"share": args.share}

    def _migrate(self, args: MigrateArgs) -> tuple[bool, str, dict]:
        try:
            src, dst, j = self._node(args.from_node), self._node(args.to_node), self._service(args.service)
        except LookupError as exc:
            return False, str(exc), {}
        have = float(self.cluster.replicas()[src, j])
        if have < args.replicas:
            return False, f"{args.from_node} runs {have:.0f} replica(s) of {args.service}, fewer than {args.replicas}", {}
        before_dst = float(self.cluster.replicas()[dst, j])
        got = self._set_cells({(dst, j): before_dst + args.replicas})[(dst, j)]
        moved = got - before_dst
        if moved > 0:
            self._set_cells({(src, j): have - moved})
        detail = f"{moved:.0f} of {args.replicas} replica(s) of {args.service} moved {args.from_node} -> {args.to_node}"
        return moved == args.replicas, detail, {"moved": moved}

    def _drain(self, args: DrainNodeArgs) -> tuple[bool, str, dict]:
        try:
            i = self._node(args.node)
        except LookupError as exc:
            return False, str(exc), {}
        if self.cluster.state[i] == NODE_OFF:
            asleep = bool(self.cluster.asleep[i])
            self.cluster.drain(np.array([i]))  # an asleep node stays off, and its agent no longer wakes it
            return True, f"{args.node} is already off" + (" (it was asleep: its agent will not wake it now)" if asleep else ""), {}
        replicas = float(self.cluster.replicas()[i].sum())
        self.cluster.drain(np.array([i]))
        return True, f"{args.node} drained: {replicas:.0f} replica(s) stopped, its queue re-routed, powered off", {"stopped": replicas}

    def _restore(self, args: RestoreNodeArgs) -> tuple[bool, str, dict]:
        try:
            i = self._node(args.node)
        except LookupError as exc:
            return False, str(exc), {}
        state = int(self.cluster.state[i])
        if state != NODE_OFF:
            return False, f"{args.node} is {NODE_STATE_NAMES[state]}, not off: nothing to restore", {}
        self.cluster.power_on(np.array([i]))
        return (
            True,
            f"{args.node} booting again (ready in {self.cluster.node_boot_ticks[i] * self.cluster.tick_s:g} s)",
            {"node": args.node},
        )

    def _add_nodes(self, args: AddNodesArgs) -> tuple[bool, str, dict]:
        c = self.cluster
        off = np.flatnonzero((c.state == NODE_OFF) & (c.tier == TIERS.index(args.tier)))
        chosen = off[: args.count]
        c.power_on(chosen)
        names = [c.node_names[i] for i in chosen]
        detail = f"booting {len(names)} {args.tier} node(s): {', '.join(names) or 'none'}"
        if len(names) < args.count:
            detail += f" (only {len(names)} of {args.count} were off)"
        return len(names) == args.count, detail, {"nodes": names}

    def _remove_nodes(self, args: RemoveNodesArgs) -> tuple[bool, str, dict]:
        try:
            idx = [self._node(n) for n in args.nodes]
        except LookupError as exc:
            return False, str(exc), {}
        live = [i for i in idx if self.cluster.state[i] != NODE_OFF]
        if self.cluster.state[live].tolist().count(NODE_ON) >= int((self.cluster.state == NODE_ON).sum()):
            return False, "refusing to remove every node that is on", {}
        self.cluster.drain(np.array(live, dtype=np.int64))
        return True, f"removed {len(live)} node(s): {', '.join(args.nodes)}", {"nodes": list(args.nodes)}

    def _set_weights(self, args: SetRewardWeightsArgs) -> tuple[bool, str, dict]:
        try:
            new = self.weights.replace(**args.weights)
        except ValueError as exc:
            return False, str(exc), {}
        self.weights = new
        if self.on_weights is not None:
            self.on_weights(new, args.expires_in_s)
        return True, f"reward weights now {new.describe()}", {"weights": new.as_dict()}
