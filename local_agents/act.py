"""Fast inference of the node agents' shared policy, in numpy: one batched call decides for every node of a cluster.
Called by the MARL controller (local_agents.marl) every tick and by ``python -m local_agents.act`` (latency bench);
reads the ``.npz`` policy that ``local_agents.mappo`` exports (the actor's weights, the feature layout it was trained
on, per-feature reference values and its provenance). Also explains each action from the features that drove it.

The actor (the same maths as ``mappo.Actor``): every (node, service) row of ``OBS_FEATURES`` goes through a
two-layer tanh MLP; a node's context is the mean and the max of its rows; each service's scale logits come from
[row, context], the node's offload logits from the context. Its power logits (hold, sleep, wake) come from the
maximum of its raw rows (the busiest service's load, among others) and the logarithms of the weights' energy and
service pressures (``simulators.rewards.pressures``): what a sleep decision turns on, read directly rather than
through layers shaped for scaling, and on scales a linear head can learn (the raw weights move by tenths); a power
head on the scaling context learned the teacher's boundary in the wrong place on states the student visits. Masked
choices get -inf. Files of format 1 (before the power head) still load: their nodes never sleep or wake.

Explanations are occlusion attributions: a feature's share of an action is how much the chosen choice's lead over
"hold" (or over the current offload level) falls when that feature is replaced by its reference value (its mean in
training). One extra batched forward pass per node that acted. They name quantities in operator units (replicas,
seconds, ms, % of SLO or of capacity, $/h: ``FEATURE_UNITS``), never a scaled feature, and leave out the static
attributes of nodes and services (``STATIC_FEATURES``); ``probabilities`` gives the chance the policy gave a sampled
choice, for the controller to say a move was drawn.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from simulators.env import N_FEATURES, OBS_FEATURES, SCALE_CHOICES
from simulators.errors import InputError
from simulators.rewards import PRESSURE_PARTS, REWARD_COMPONENTS, RewardWeights

POLICY_FORMAT = "ama-marl-policy/2"
READABLE_FORMATS = ("ama-marl-policy/1", POLICY_FORMAT)
"""Format 1 has no power head: it loads with one that always holds (its nodes neither sleep nor wake)."""


POWER_INPUTS = N_FEATURES + 2
"""The power head's inputs: the maximum of the node's raw rows, then the two log pressures (``log_pressures``)."""


DEFAULT_POLICY = Path(__file__).parent / "policies" / "default.npz"
ARRAYS = ("w1", "b1", "w2", "b2", "w_scale", "b_scale", "w_offload", "b_offload", "w_power", "b_power", "reference")
WEIGHT_COLUMNS = slice(OBS_FEATURES.index(f"w_{REWARD_COMPONENTS[0]}"), N_FEATURES)
"""Where the reward weights are in an observation row (the last features)."""
_NEVER = -1.0e4
"""The logit of a power choice a format-1 policy never makes (the power row is taken greedily: hold always wins)."""


@dataclass(frozen=True)
class Units:
    """What turns a scaled observation back into operator units: the cluster's tick and its priciest node's price
    (the observation's scales are simulators.env.Observer's)."""

    tick_s: float = 1.0
    max_price_per_h: float | None = None
    """None: prices are given as a share of the priciest node's."""


def _price(v: float, u: Units) -> str:
    return f"${v * u.max_price_per_h:.2f}/h" if u.max_price_per_h is not None else f"{v:.0%} of the priciest node's $/h"


FEATURE_UNITS: dict[str, tuple[str, Any]] = {
    "cell_warm": ("{} warm here", lambda v, u: f"{v * 8:.0f} replicas"),
    "cell_booting": ("{} starting here", lambda v, u: f"{v * 8:.0f} replicas"),
    "cell_backlog": ("backlog {} of warm capacity here", lambda v, u: f"{v * u.tick_s:.1f} s"),
    "cell_load": ("arrivals at {} of warm capacity here", lambda v, u: f"{v:.0%}"),
    "cell_latency": ("latency {} here", lambda v, u: f"{v * 4:.0%} of SLO"),
    "cell_violations": ("{} of requests over SLO here", lambda v, u: f"{v:.0%}"),
    "cell_drops": ("{} of requests dropped here", lambda v, u: f"{v:.0%}"),
    "cell_room": ("room here for {} more", lambda v, u: f"{v * 8:.0f} replicas"),
    "svc_replicas": ("the service at {} of its max replicas", lambda v, u: f"{v:.0%}"),
    "svc_load": ("the service's arrivals at {} of its warm capacity", lambda v, u: f"{v:.0%}"),
    "svc_slo": ("an SLO of {}", lambda v, u: f"{10 ** (v * 4):.0f} ms"),
    "svc_cold_start": ("a cold start of {}", lambda v, u: f"{v * 60:.0f} s"),
    "svc_work": ("work of {} per request", lambda v, u: f"{10 ** (v * 4):.0f} ms"),
    "svc_cold_now": ("requests waiting for a first replica: {}", lambda v, u: f"{'yes' if v > 0.5 else 'no'}, 0 warm replicas"),
    "node_util": ("node CPU at {}", lambda v, u: f"{v:.0%}"),
    "node_cloud": ("{} node", lambda v, u: "a cloud" if v > 0.5 else "an edge"),
    "node_on": ("the node {}", lambda v, u: "on" if v > 0.5 else "off"),
    "node_slowdown": ("node speed {} of normal", lambda v, u: f"{1.0 / (1.0 + max(v, 0.0)):.0%}"),
    "node_net_extra": ("added network latency {}", lambda v, u: f"{v * 100:.0f} ms"),
    "node_price": ("node price {}", _price),
    "node_mem": ("node memory {} reserved", lambda v, u: f"{v:.0%}"),
    "node_offload": ("offloading {} of arrivals", lambda v, u: f"{v:.0%}"),
    **{f"w_{name}": (f"{name} weight {{}}", lambda v, u: f"{v:.2f}") for name in REWARD_COMPONENTS},
}  # fmt: skip
"""Per observation feature: a phrase with a slot, and the feature's value in operator units (replicas, seconds,
milliseconds, shares of the SLO or of capacity, $/h; reward weights as they are)."""

STATIC_FEATURES = frozenset({"svc_slo", "svc_cold_start", "svc_work", "node_cloud", "node_on"})
"""Attributes of a service or a node that no controller changes: never named as what drove an action (they set the
scale of the others; an operator cannot act on them)."""


def feature_value(name: str, value: float, units: Units) -> str:
    """A feature's value in operator units: ``feature_value("cell_latency", 0.5, Units())`` is ``"200% of SLO"``."""
    return FEATURE_UNITS[name][1](value, units)


def feature_text(name: str, value: float, units: Units) -> str:
    """A feature's phrase with its value: ``"latency 200% of SLO here"``."""
    return FEATURE_UNITS[name][0].format(feature_value(name, value, units))


def single_threaded_blas() -> None:
    """One BLAS thread for this process: the policy's matrices are small, and on a 2-core node OpenBLAS's second
    thread costs more in hand-offs (and p99 jitter) than it saves: 1,000 nodes went from 3.9 to 1.7 ms p50.
    Called by the MARL controller and the latency bench; the simulator's numpy work is unaffected (also small)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


class PolicyError(InputError):
    """A policy file that is missing, corrupted or incompatible with this version's observations."""


def file_digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: how a derived policy names the files it came from."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def require_current_format(policy: Policy, path: Path, use: str) -> None:
    """PolicyError naming the file unless it is of the current format (format 1's power head is a stand-in that
    always holds, not weights another policy could be built from)."""
    found = policy.provenance.get("format")
    if found != POLICY_FORMAT:
        raise PolicyError(f"{path}: policy format {found!r}; only {POLICY_FORMAT!r} policies {use}")


@dataclass
class Policy:
    """The actor's weights as float32 numpy arrays, plus where they came from."""

    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray
    w_scale: np.ndarray
    b_scale: np.ndarray
    w_offload: np.ndarray
    b_offload: np.ndarray
    w_power: np.ndarray
    b_power: np.ndarray
    reference: np.ndarray
    """Each feature's mean over training observations (the baseline of the explanations)."""
    provenance: dict[str, Any]
    path: Path | None = None
    workspace: dict[tuple[int, int], tuple[np.ndarray, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Buffers by (services, nodes), reused from call to call (see ``logits``): the layers' and heads' outputs, and
    the heads' biases row by row (derived from this policy's weights, so never shared with another policy)."""
    fused: _Fused = field(init=False, repr=False, compare=False)
    """The same weights laid out for inference (``_fuse``), derived once here: the arrays are not changed afterwards."""

    def __post_init__(self) -> None:
        self.fused = _fuse(self)

    @property
    def hidden(self) -> int:
        return int(self.w1.shape[1])

    # ------------------------------------------------------------------------------------------ inference
    def logits(self, obs: np.ndarray) -> np.ndarray:
        """Observations (..., N, S, F) -> logits (..., N, S + 2, 4): S scale rows, the offload row, the power row
        (whose last choice is always masked).

        Written for speed on a CPU (1,000 nodes in about a millisecond, one node in tens of microseconds): the rows
        are laid out service-major and multiplied as one 2-D matrix (numpy's stacked matmul would loop over nodes);
        the first layer's bias rides in its matrix and the second's on a constant unit of the first (see ``_fuse``),
        so each layer is one matmul and one tanh (a broadcast bias add costs as much as the matmul's extra column);
        pooling over the services is S - 1 in-place adds and maxima, not a reduction over a short middle axis; the
        heads write their rows service-major too, and one pass moves them node-major, 4 choices at a time; and every
        buffer is kept per batch size (fresh megabyte temporaries cost more in page faults than the maths). One node
        takes ``_one_node_logits``, which needs half the numpy calls."""
        *nodes_shape, services, f = obs.shape
        nodes = math.prod(nodes_shape)
        if nodes == 1:
            return self._one_node_logits(obs).reshape(*nodes_shape, services + 2, SCALE_CHOICES)
        x, a, b, pooled, raw_peak, by_dim, pair, context, biases = self._buffers(services, nodes, f)
        np.copyto(x[:, :f].reshape(services, nodes, f), obs.reshape(nodes, services, f).transpose(1, 0, 2))
        np.matmul(x, self.fused.w1, out=a)
        np.tanh(a, out=a)
        np.matmul(a, self.fused.w2_rows, out=b)  # H wide, not H + 1: OpenBLAS is ~30% faster on 64 columns than on 65
        np.tanh(b, out=b)
        by_service = b.reshape(services, nodes, self.hidden)
        total, peak = pooled  # contiguous halves: numpy's ufuncs on strided halves of one buffer are several times slower
        if services == 1:
            np.copyto(total, by_service[0])
            np.copyto(peak, by_service[0])
        else:
            np.add(by_service[0], by_service[1], out=total)
            np.maximum(by_service[0], by_service[1], out=peak)
            for s in range(2, services):
                total += by_service[s]
                np.maximum(peak, by_service[s], out=peak)
        by_service_raw = x.reshape(services, nodes, f + 1)
        if services == 1:
            raw_peak = by_service_raw[0]
        else:
            np.maximum(by_service_raw[0], by_service_raw[1], out=raw_peak)
            for s in range(2, services):
                np.maximum(raw_peak, by_service_raw[s], out=raw_peak)
        # every head's rows, service-major like the hidden layers (S scale rows, offload, power: each (nodes, 4)); the
        # context heads as one stacked matmul on [sum, max] and one add of its halves, every operand contiguous
        on_scale, on_offload = self._context_heads(services)
        np.matmul(pooled, on_scale, out=pair)
        np.add(pair[0], pair[1], out=context)
        context += biases[0]
        scale = by_dim[:services]
        np.matmul(b, self.fused.w_row, out=scale.reshape(services * nodes, SCALE_CHOICES))
        scale += context
        np.matmul(pooled, on_offload, out=pair)
        np.add(pair[0], pair[1], out=by_dim[services])
        by_dim[services] += biases[1]
        parts = raw_peak @ self.fused.w_power_parts  # (nodes, 3), contiguous: the logarithm runs in one loop
        np.maximum(parts, 1e-6, out=parts)
        np.log(parts, out=parts)
        power = by_dim[services + 1]
        np.matmul(raw_peak, self.fused.w_power_lead, out=power)
        power += parts @ self.fused.w_power_pressure
        # then node-major: each node's 4 choices moved as one 16-byte item (a 4-float inner loop is 4x slower)
        out = np.empty((nodes, services + 2, SCALE_CHOICES), np.float32)
        out.view(_CHOICE_ROW)[..., 0] = by_dim.view(_CHOICE_ROW)[..., 0].T
        return out.reshape(*nodes_shape, services + 2, SCALE_CHOICES)

    def _one_node_logits(self, obs: np.ndarray) -> np.ndarray:
        """``logits`` for one node (the one-node latency target; explanations of one acting node) in half the numpy
        calls of the batched path, whose fixed cost per call is most of the latency at this size: the node's S hidden
        rows, their maximum and the maximum of its raw rows are written in place into one vector, and one matmul with
        ``_one_node_heads`` gives every logit at once (and the power head's pressure parts; the rows' sum is folded
        into the matrix). The same maths as the batched path, summed in another order: the logits agree to about
        1e-6. Returns (4 (S + 2),)."""
        services, f = obs.shape[-2:]
        width = self.hidden + 1
        x, a, z = self._buffers(services, 1, f)
        np.copyto(x[:, :f], obs.reshape(services, f))
        np.matmul(x, self.fused.w1, out=a)
        np.tanh(a, out=a)
        rows_end = services * width
        rows = z[:rows_end].reshape(services, width)
        np.matmul(a, self.fused.w2, out=rows)
        np.tanh(rows, out=rows)
        np.maximum.reduce(rows, axis=0, out=z[rows_end : rows_end + width])
        np.maximum.reduce(x, axis=0, out=z[rows_end + width :])
        out = z @ self._one_node_heads(services)  # 4 (S + 2) logits, then the 3 pressure parts
        logits, parts = out[: -len(PRESSURE_PARTS)], out[-len(PRESSURE_PARTS) :]
        np.maximum(parts, 1e-6, out=parts)
        np.log(parts, out=parts)
        logits[-SCALE_CHOICES:] += parts @ self.fused.w_power_pressure
        return logits

    def _one_node_heads(self, services: int) -> np.ndarray:
        """The one-node path's matrix for S services: from [S hidden rows | their max | the max of the raw rows (its
        constant 1 last)] to [S scale rows | offload | the power head's part before the pressures | the 3 pressure
        parts]: the batched path's heads, placed where their inputs sit; the heads' part on the rows' mean is on every
        row (a matmul is linear: the sum's weights on each row give the weights on the sum)."""
        heads = self.fused.one_node_heads.get(services)
        if heads is None:
            width, choices = self.hidden + 1, SCALE_CHOICES
            peak, raw = services * width, (services + 1) * width
            heads = np.zeros((raw + self.w1.shape[0] + 1, choices * (services + 2) + len(PRESSURE_PARTS)), np.float32)
            offload = slice(services * choices, (services + 1) * choices)
            for s in range(services):
                column = slice(s * choices, (s + 1) * choices)
                heads[s * width : s * width + self.hidden, column] = self.fused.w_row  # its constant unit: 0
                for row in range(services):  # every row feeds every service's context through the mean
                    heads[row * width : (row + 1) * width, column] += self.fused.on_sum[:, :choices] / services
                heads[peak:raw, column] = self.fused.on_max[:, :choices]
                heads[s * width : (s + 1) * width, offload] = self.fused.on_sum[:, choices:] / services
            heads[peak:raw, offload] = self.fused.on_max[:, choices:]
            heads[raw:, (services + 1) * choices :] = self.fused.w_power_raw
            self.fused.one_node_heads[services] = heads
        return heads

    def _buffers(self, services: int, nodes: int, features: int) -> tuple[np.ndarray, ...]:
        cache = self.workspace
        key = (services, nodes)
        if key not in cache:
            if len(cache) > 8:
                cache.clear()
            rows, width = services * nodes, self.hidden + 1
            x = np.empty((rows, features + 1), np.float32)
            x[:, features] = 1.0  # the bias input
            if nodes == 1:  # _one_node_logits: the first layer, then the node's one vector
                cache[key] = (x, np.empty((rows, width), np.float32), np.empty((services + 1) * width + features + 1, np.float32))
            else:  # a (with the constant unit), b, [sum, max] of b over services, raw_peak, the logits by action
                # dimension, a pair of context parts, the scale context, the scale and offload biases row by row
                shapes = (
                    (rows, width),
                    (rows, width - 1),
                    (2, nodes, width - 1),
                    (nodes, features + 1),
                    (services + 2, nodes, SCALE_CHOICES),
                )
                buffers = [np.empty(shape, np.float32) for shape in (*shapes, (2, nodes, SCALE_CHOICES), (nodes, SCALE_CHOICES))]
                biases = np.repeat(self.fused.head_bias.reshape(2, 1, SCALE_CHOICES), nodes, axis=1)  # a broadcast add is 6x slower
                cache[key] = (x, *buffers, biases)
        return cache[key]

    def _context_heads(self, services: int) -> tuple[np.ndarray, np.ndarray]:
        """The scale heads' and the offload head's weights on [the sum, the max] of a node's H hidden units, each
        (2, H, 4), for S services (the mean's 1/S folded in; the batched path's second layer has no constant unit, its
        biases are ``head_bias``)."""
        heads = self.fused.context_heads.get(services)
        if heads is None:
            h, choices = self.hidden, SCALE_CHOICES
            on_sum, on_max = self.fused.on_sum[:h] / services, self.fused.on_max[:h]
            scale, offload = (
                np.ascontiguousarray(np.stack([on_sum[:, part], on_max[:, part]])) for part in (slice(0, choices), slice(choices, None))
            )
            heads = self.fused.context_heads[services] = (scale, offload)
        return heads

    def act(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """obs (N, S, F), mask (N, 4(S+2)) -> actions (N, S+2) int64: sampled from the policy with ``rng`` (as it
        acted in training: a node that should add capacity at a fraction of a replica per tick does so by sampling
        "up" with that probability), else the most likely choice. The power row is always its most likely choice:
        sleeping is a switch, not a rate, and a 2% chance of "sleep" sampled every tick would put a node to sleep
        within a minute whatever the weights. Masked choices are never chosen (hold, offload 0 and power hold are
        always allowed)."""
        logits = self.logits(obs)  # a fresh array: changed in place
        if rng is not None:  # Gumbel-max: argmax(logits - log(-log(u))) is a sample of softmax(logits)
            sampled = logits[..., :-1, :]  # power: the most likely choice (see below), so no noise there
            noise = rng.random(sampled.shape, dtype=np.float32)
            noise += 1e-12
            np.log(noise, out=noise)
            np.negative(noise, out=noise)
            np.log(noise, out=noise)
            np.subtract(sampled, noise, out=sampled)
        logits = np.where(mask.reshape(logits.shape), logits, np.float32(-np.inf))  # copyto's where= took twice as long
        return _argmax_of_four(logits)

    # ------------------------------------------------------------------------------------------ explanations
    def drivers(
        self, node_obs: np.ndarray, dims: np.ndarray, choices: np.ndarray, against: np.ndarray, top: int = 3
    ) -> list[list[tuple[str, float, float, float]]]:
        """For K acting cells at once: node rows (K, S, F), the action dimension (K,) (a service, S for offload, S + 1
        for power), the choice taken and the choice it won over. Returns per cell [(feature, its value, its
        reference, share of the lead)], largest first: each feature of the cell's row (every row of the node, for
        the node's own choices) is replaced by its reference and the fall of the chosen logit's lead is that
        feature's share. One batched forward pass."""
        k, s = node_obs.shape[0], node_obs.shape[1]
        if k == 0:
            return []
        cells = np.arange(k)
        base = self.logits(node_obs)[cells, dims]  # (K, 4)
        lead = base[cells, choices] - base[cells, against]
        occluded = np.repeat(node_obs[:, None], N_FEATURES, axis=1)  # (K, F, S, F)
        features = np.arange(N_FEATURES)
        node_level = dims >= s  # offload or power: every row of the node feeds it
        for i in np.flatnonzero(~node_level):
            occluded[i, features, dims[i], features] = self.reference
        for i in np.flatnonzero(node_level):
            occluded[i, features, :, features] = self.reference[:, None]
        logits = self.logits(occluded)[cells[:, None], features[None, :], dims[:, None]]  # (K, F, 4)
        drops = lead[:, None] - (logits[cells[:, None], features, choices[:, None]] - logits[cells[:, None], features, against[:, None]])
        found = []
        for i in range(k):
            row = node_obs[i].max(axis=0) if node_level[i] else node_obs[i, dims[i]]
            total = float(np.clip(drops[i], 0.0, None).sum()) or 1.0
            found.append(
                [
                    (OBS_FEATURES[f], float(row[f]), float(self.reference[f]), float(drops[i, f]) / total)
                    for f in np.argsort(-drops[i])[:top]
                    if drops[i, f] > 0
                ]
            )
        return found

    def explain(
        self, node_obs: np.ndarray, dims: np.ndarray, choices: np.ndarray, against: np.ndarray, units: Units | None = None
    ) -> list[str]:
        """One phrase per acting cell (see ``drivers``), in operator units: the features that drove the choice, each
        with its value, its typical value in training and its share of the choice's lead; static attributes of the
        node and the service are left out."""
        units = units or Units()
        texts = []
        for drivers in self.drivers(node_obs, dims, choices, against, top=len(STATIC_FEATURES) + 3):
            parts = [
                f"{feature_text(name, value, units)} (typically {feature_value(name, ref, units)}; {share:.0%} of the lead)"
                for name, value, ref, share in drivers
                if name not in STATIC_FEATURES
            ][:3]
            texts.append("driven by " + ", ".join(parts) if parts else "no single changing quantity stood out")
        return texts

    def probabilities(self, node_obs: np.ndarray, node_mask: np.ndarray, dims: np.ndarray, choices: np.ndarray) -> np.ndarray:
        """For K acting cells: node rows (K, S, F), their masks (K, 4 (S + 2)), the action dimension and the choice
        taken -> the probability (K,) the policy gave that choice among the allowed ones (what ``act`` samples from)."""
        k = node_obs.shape[0]
        if k == 0:
            return np.zeros(0)
        cells = np.arange(k)
        logits = self.logits(node_obs)[cells, dims].astype(np.float64)  # (K, 4)
        allowed = node_mask.reshape(k, -1, SCALE_CHOICES)[cells, dims] > 0
        logits = np.where(allowed, logits, -np.inf)
        logits -= logits.max(axis=1, keepdims=True)
        weights = np.exp(logits)
        return weights[cells, choices] / weights.sum(axis=1)


def _argmax_of_four(logits: np.ndarray) -> np.ndarray:
    """``logits.argmax(axis=-1)`` over 4 choices. Beyond ``_ARGMAX_IN_ONE_LOOP`` logits, as a tournament of elementwise
    comparisons, ties to the lower choice like argmax: there numpy's argmax gets about 4x slower per row (1,000 nodes:
    100 µs against 60), below it the tournament's dozen calls cost more than the whole argmax (one node: 14 µs
    against 1). Logits are never NaN (``load_policy`` refuses non-finite weights), where the two would differ."""
    if logits.size <= _ARGMAX_IN_ONE_LOOP:
        return logits.argmax(axis=-1)
    first, second, third, fourth = (logits[..., c] for c in range(SCALE_CHOICES))
    upper = np.maximum(third, fourth) > np.maximum(first, second)
    choice = np.where(upper, fourth > third, second > first).astype(np.int64)
    choice += 2 * upper
    return choice


_ARGMAX_IN_ONE_LOOP = 8192
"""numpy's ufunc buffer size, in elements: the measured crossover (400 nodes of 3 services, 8,000 logits)."""

_CHOICE_ROW = np.dtype((np.void, SCALE_CHOICES * np.dtype(np.float32).itemsize))
"""One action dimension's choices as a single item, to move logits between layouts in one pass."""

_SATURATE = 20.0
"""A pre-activation whose tanh is exactly 1.0 in float32: the constant unit that carries the next layer's bias."""


@dataclass
class _Fused:
    """The actor's weights rearranged for one matmul per layer: each layer has one extra input that is always 1
    (its row holds the bias) and one extra output unit that saturates to 1 (the next layer's bias input). The batched
    path's second layer drops that unit (``w2_rows``) and adds the heads' biases itself (``head_bias``)."""

    w1: np.ndarray
    w2: np.ndarray
    w_row: np.ndarray
    on_sum: np.ndarray
    on_max: np.ndarray
    w2_rows: np.ndarray
    """(H + 1, H): ``w2`` without its constant output unit, for the batched path (whose heads add ``head_bias``)."""
    head_bias: np.ndarray
    """(8,): the scale heads' and the offload head's biases (what the constant unit carries in ``on_max``)."""
    w_power_raw: np.ndarray
    """(F + 1, 4 + 3): the power head's weights on the maximum of the node's raw rows and its bias (on their constant
    input), then the maps to the weights' pressure parts (``log_pressures``): one matmul in the one-node path."""
    w_power_pressure: np.ndarray
    """(3, 4): the power head's weights on the log pressure parts (the logs' map folded in; its shift is in the bias)."""
    w_power_lead: np.ndarray
    w_power_parts: np.ndarray
    """``w_power_raw``'s two halves, contiguous, for the batched path: (F + 1, 4) and (F + 1, 3)."""
    context_heads: dict[int, tuple[np.ndarray, np.ndarray]]
    one_node_heads: dict[int, np.ndarray]
    """By number of services: the one-node path's matrix (``Policy._one_node_heads``)."""


def _fuse(policy: Policy) -> _Fused:
    f, h = policy.w1.shape
    w1 = np.zeros((f + 1, h + 1), np.float32)
    w1[:f, :h], w1[f, :h], w1[f, h] = policy.w1, policy.b1, _SATURATE
    w2 = np.zeros((h + 1, h + 1), np.float32)
    w2[:h, :h], w2[h, :h], w2[h, h] = policy.w2, policy.b2, _SATURATE
    w_row = np.ascontiguousarray(policy.w_scale[:h])  # (H, 4): a service's scale logits from its own row
    # the heads' weights on the sum of the node's rows (row h, the constant unit's, is 0) and on their max (row h
    # carries the biases: the max of a unit that is always 1); each head's first half is the scale heads' context
    # part, then offload
    on_sum = np.zeros((h + 1, 2 * SCALE_CHOICES), np.float32)
    on_sum[:h] = np.concatenate([policy.w_scale[h : 2 * h], policy.w_offload[:h]], axis=1)
    on_max = np.zeros((h + 1, 2 * SCALE_CHOICES), np.float32)
    on_max[:h] = np.concatenate([policy.w_scale[2 * h :], policy.w_offload[h:]], axis=1)
    on_max[h] = np.concatenate([policy.b_scale, policy.b_offload])
    on_pressures = policy.w_power[f:]  # (2, 4)
    w_power_raw = np.zeros((f + 1, SCALE_CHOICES + 3), np.float32)
    w_power_raw[:f, :SCALE_CHOICES], w_power_raw[:f, SCALE_CHOICES:] = policy.w_power[:f], PRESSURE_SUMS
    w_power_raw[f, :SCALE_CHOICES] = policy.b_power + PRESSURE_SHIFT @ on_pressures
    power_pressure = (PRESSURE_LOGS @ on_pressures).astype(np.float32)
    power_lead, power_parts = (np.ascontiguousarray(half) for half in np.split(w_power_raw, [SCALE_CHOICES], axis=1))
    w2_rows = np.ascontiguousarray(w2[:, :h])
    return _Fused(
        w1=w1,
        w2=w2,
        w_row=w_row,
        on_sum=on_sum,
        on_max=on_max,
        w2_rows=w2_rows,
        head_bias=on_max[h].copy(),
        w_power_raw=w_power_raw,
        w_power_pressure=power_pressure,
        w_power_lead=power_lead,
        w_power_parts=power_parts,
        context_heads={},
        one_node_heads={},
    )


def _pressure_maps() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``log_pressures`` as matrices: observation row (F) -> its weights' parts [energy, sla + latency, cost + energy +
    utilization] (F, 3); log parts -> [log energy, log service] pressure (3, 2); and the shift that makes both 0 at
    the default weights (the same ratios as ``simulators.rewards.pressures``, which the tests hold them to)."""
    parts = np.zeros((N_FEATURES, len(PRESSURE_PARTS)), np.float32)
    column = {name: WEIGHT_COLUMNS.start + k for k, name in enumerate(REWARD_COMPONENTS)}
    for part, names in enumerate(PRESSURE_PARTS):
        for name in names:
            parts[column[name], part] = 1.0
    logs = np.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]], np.float32)
    default_row = np.zeros(N_FEATURES, np.float32)
    default_row[WEIGHT_COLUMNS] = RewardWeights().as_array()
    return parts, logs, -(np.log(default_row @ parts) @ logs)


PRESSURE_SUMS, PRESSURE_LOGS, PRESSURE_SHIFT = _pressure_maps()


def log_pressures(rows: Any) -> Any:
    """Raw observation rows (..., F), numpy or torch -> (..., 2): the logarithms of the weights' energy and service
    pressures (``simulators.rewards.pressures``; 0 at the default weights): the power head's weight inputs."""
    if isinstance(rows, np.ndarray):
        return np.log(np.maximum(rows @ PRESSURE_SUMS, 1e-6)) @ PRESSURE_LOGS + PRESSURE_SHIFT
    sums, logs, shift = _pressure_tensors(rows.device)
    return (rows @ sums).clamp(min=1e-6).log() @ logs + shift


@functools.cache
def _pressure_tensors(device: Any) -> tuple[Any, ...]:
    """``log_pressures``' matrices as torch tensors on ``device``, made once (the trainer's actor calls it every tick)."""
    import torch

    return tuple(torch.as_tensor(m, device=device) for m in (PRESSURE_SUMS, PRESSURE_LOGS, PRESSURE_SHIFT))


# ---------------------------------------------------------------------------------------------- files
def save_policy(path: Path, arrays: dict[str, np.ndarray], provenance: dict[str, Any]) -> None:
    """Write the ``.npz`` inference policy (float32 arrays and a JSON header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"format": POLICY_FORMAT, "features": list(OBS_FEATURES), "scale_choices": SCALE_CHOICES, **provenance}
    with path.open("wb") as handle:
        np.savez_compressed(handle, header=np.array(json.dumps(header)), **{k: np.asarray(arrays[k], dtype=np.float32) for k in ARRAYS})


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at ``path`` (default: $AMA_MARL_POLICY, else the shipped one); PolicyError naming the file when it is missing, not a
    policy, corrupted, or trained on another observation layout."""
    path = Path(path if path is not None else os.environ.get("AMA_MARL_POLICY") or DEFAULT_POLICY)
    try:
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as data:  # our handle: closed even when
            header = json.loads(str(data["header"]))  # numpy gives up on a damaged zip half-way
            if header.get("format") not in READABLE_FORMATS:
                formats = " or ".join(map(repr, READABLE_FORMATS))
                raise PolicyError(f"{path}: policy format {header.get('format')!r}, this version reads {formats}")
            names = ARRAYS if header["format"] != READABLE_FORMATS[0] else tuple(k for k in ARRAYS if "power" not in k)
            arrays = {k: np.asarray(data[k], dtype=np.float32) for k in names}
    except FileNotFoundError:
        raise PolicyError(f"{path}: no such policy file") from None
    except KeyError as exc:
        raise PolicyError(f"{path}: not an AMA policy (missing {exc.args[0]!r})") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError) as exc:
        raise PolicyError(f"{path}: corrupted policy file ({type(exc).__name__}: {exc})") from None
    if header.get("features") != list(OBS_FEATURES):
        raise PolicyError(f"{path}: trained on other observation features ({len(header.get('features', []))}), retrain with `ama train`")
    hidden = arrays["w1"].shape[1] if arrays["w1"].ndim == 2 else -1
    if "w_power" not in arrays and hidden > 0:  # format 1: a power head that always holds
        arrays["w_power"] = np.zeros((POWER_INPUTS, SCALE_CHOICES), np.float32)
        arrays["b_power"] = np.array([0.0, _NEVER, _NEVER, _NEVER], np.float32)
    expected = {
        "w1": (N_FEATURES, hidden), "b1": (hidden,), "w2": (hidden, hidden), "b2": (hidden,),
        "w_scale": (3 * hidden, SCALE_CHOICES), "b_scale": (SCALE_CHOICES,), "w_offload": (2 * hidden, SCALE_CHOICES),
        "b_offload": (SCALE_CHOICES,), "w_power": (POWER_INPUTS, SCALE_CHOICES), "b_power": (SCALE_CHOICES,),
        "reference": (N_FEATURES,),
    }  # fmt: skip
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise PolicyError(f"{path}: {name} has shape {arrays[name].shape}, expected {shape}")
        if not np.isfinite(arrays[name]).all():
            raise PolicyError(f"{path}: {name} holds NaN or infinite values")
    return Policy(**arrays, provenance={k: v for k, v in header.items() if k not in ("features",)}, path=path)


# ---------------------------------------------------------------------------------------------- bench
def latency(policy: Policy, nodes: int, services: int, repeats: int, rounds: int, rng: np.random.Generator) -> dict[str, Any]:
    """Microseconds per batched decision (observations, masks -> sampled actions) for ``nodes`` nodes, over
    ``rounds`` rounds of ``repeats`` decisions: each round's p50 and p99, and their medians (a shared VM's noise
    comes in bursts that can land on any one round). After each round the same number of busy-waits exactly as long
    as its p50, timed the same way, give a reference: the p99 this machine's noise alone makes of a task that long
    (``machine_p99_us``). A busy-wait touches no memory and runs right after the round, not with it, so it is a
    lower bound on what the machine adds to a decision's tail, not a measure of it. It doubles the bench's time."""
    obs = rng.uniform(0.0, 1.0, size=(nodes, services, N_FEATURES)).astype(np.float32)
    mask = np.ones((nodes, SCALE_CHOICES * (services + 2)), dtype=np.int8)
    mask[:, -1] = 0  # as in every observation: the power row's last choice is never allowed
    for _ in range(20):
        policy.act(obs, mask, rng)
    p50s, p99s, machine = [], [], []
    for _ in range(rounds):
        times = np.empty(repeats)
        for k in range(repeats):
            start = time.perf_counter()
            policy.act(obs, mask, rng)
            times[k] = time.perf_counter() - start
        p50 = float(np.percentile(times, 50))
        p50s.append(round(p50 * 1e6, 1))
        p99s.append(round(float(np.percentile(times, 99) * 1e6), 1))
        machine.append(round(float(np.percentile(busy_wait_times(p50, repeats), 99) * 1e6), 1))
    return {
        "p50_us": float(np.median(p50s)), "p99_us": float(np.median(p99s)), "machine_p99_us": float(np.median(machine)),
        "rounds_p50_us": p50s, "rounds_p99_us": p99s, "rounds_machine_p99_us": machine,
    }  # fmt: skip


def busy_wait_times(seconds: float, repeats: int) -> np.ndarray:
    """How long ``repeats`` busy-waits of ``seconds`` each took: a task of fixed length, so whatever one takes beyond
    ``seconds`` is time the machine did not give this process (another tenant, an interrupt, a slower vCPU)."""
    times = np.empty(repeats)
    clock = time.perf_counter
    for k in range(repeats):
        start = clock()
        end = start + seconds
        while clock() < end:
            pass
        times[k] = clock() - start
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Latency of the MARL policy's batched decision (numpy, this CPU), each round followed by busy-waits as long as its "
        "median: a reference for what this machine's noise alone makes of a task that long."
    )
    parser.add_argument("--policy", type=Path, default=None, help="policy .npz (default: the shipped one)")
    parser.add_argument("--nodes", default="1,1000", help="comma-separated cluster sizes (default: %(default)s)")
    parser.add_argument("--services", type=int, default=3, help="services per node (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2000, help="timed decisions per round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per size; medians reported (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    policy = load_policy(args.policy)
    single_threaded_blas()
    rng = np.random.default_rng(0)
    report = {f"{n}_nodes": latency(policy, int(n), args.services, args.repeats, args.rounds, rng) for n in args.nodes.split(",")}
    if args.json:
        print(json.dumps(report))
        return
    for name, row in report.items():
        rounds = f"medians of {args.rounds} rounds; p99 by round {row['rounds_p99_us']}"
        print(f"{name:>11}: p50 {row['p50_us']:.1f} µs, p99 {row['p99_us']:.1f} µs ({rounds})")
        print(f"{'':>11}  this machine's p99 for a fixed task as long as that p50: {row['machine_p99_us']:.1f} µs")


if __name__ == "__main__":
    main()
