"""Controllers by name. Called by ``ama sim --controller NAME``, the evals' runner and the runtime; feeds them a
ready Controller built from a name, a placement policy and ``KEY=VALUE`` parameters, or a ConfigError naming what
is wrong."""

from __future__ import annotations

from collections.abc import Callable

from local_agents.baselines import HPAController, KeepAliveController, KPAController
from local_agents.controllers import PLACEMENTS, Controller, StaticController
from local_agents.hpa import HPASettings
from local_agents.keepalive import make_keepalive_policy
from local_agents.kpa import KPASettings
from local_agents.oracle import OracleController, OracleSettings
from simulators.errors import ConfigError

Builder = Callable[[dict[str, str], str, int], Controller]


def _static(params: dict[str, str], placement: str, seed: int) -> Controller:
    if params:
        raise ConfigError(f"static: takes no parameters, got {', '.join(sorted(params))}")
    return StaticController()


def _oracle(params: dict[str, str], placement: str, seed: int) -> Controller:
    return OracleController(OracleSettings.from_params(params), seed)


MARL_SWITCHES = ("shield", "ood")
"""The MARL controller's safety layers, each ``on`` (default) or ``off`` (to measure what it costs or saves)."""


def _marl(params: dict[str, str], placement: str, seed: int) -> Controller:
    from local_agents.marl import MarlController  # loads the policy file only when asked for

    unknown = sorted(set(params) - {"policy", *MARL_SWITCHES})
    if unknown:
        raise ConfigError(f"marl: unknown parameters {', '.join(unknown)} (takes policy=PATH, shield=on|off, ood=on|off)")
    switches = {}
    for key in MARL_SWITCHES:
        value = params.get(key, "on").lower()
        if value not in ("on", "off"):
            raise ConfigError(f"marl: {key} must be on or off, got {params[key]!r}")
        switches[key] = value == "on"
    return MarlController(params.get("policy"), seed=seed, **switches)


def _marl_without(switch: str) -> Builder:
    """``marl`` with one safety layer off by default: a name ``ama eval --controllers`` can run side by side with ``marl``."""

    def build(params: dict[str, str], placement: str, seed: int) -> Controller:
        return _marl({switch: "off", **params}, placement, seed)

    return build


def _node_rule(params: dict[str, str], placement: str, seed: int) -> Controller:
    from local_agents.node_rule import NodeRuleController, NodeRuleSettings

    values = {}
    for key, value in params.items():
        if key not in ("target_utilization", "prewarm_share"):
            raise ConfigError(f"node-rule: unknown parameter {key!r} (target_utilization, prewarm_share)")
        try:
            values[key] = float(value)
        except ValueError:
            raise ConfigError(f"node-rule: {key} must be a number, got {value!r}") from None
    return NodeRuleController(NodeRuleSettings(**values), seed)


def _hpa(params: dict[str, str], placement: str, seed: int) -> Controller:
    return HPAController(HPASettings.from_params(params), placement, seed)


def _kpa(params: dict[str, str], placement: str, seed: int) -> Controller:
    return KPAController(KPASettings.from_params(params), placement, seed)


def _keepalive(name: str) -> Builder:
    def build(params: dict[str, str], placement: str, seed: int) -> Controller:
        numbers = {}
        for key, value in params.items():
            try:
                numbers[key] = float(value)
            except ValueError:
                raise ConfigError(f"keepalive: {key} must be a number, got {value!r}") from None
        return KeepAliveController(make_keepalive_policy(name, **numbers), placement, seed)

    return build


BUILDERS: dict[str, Builder] = {
    "static": _static,
    "hpa": _hpa,
    "kpa": _kpa,
    "keepalive10": _keepalive("keepalive10"),
    "keepalive20": _keepalive("keepalive20"),
    "hybrid": _keepalive("hybrid"),
    "oracle": _oracle,
    "node-rule": _node_rule,
    "marl": _marl,
    "marl-noshield": _marl_without("shield"),
    "marl-noood": _marl_without("ood"),
}


def controller_names() -> list[str]:
    return list(BUILDERS)


def make_controller(name: str, params: dict[str, str] | None = None, placement: str = "least-loaded", seed: int = 0) -> Controller:
    """A controller by name; unknown names, placements and parameters are ConfigErrors with one line."""
    if name not in BUILDERS:
        raise ConfigError(f"unknown controller {name!r}; choose one of {', '.join(BUILDERS)}")
    if placement not in PLACEMENTS:
        raise ConfigError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    return BUILDERS[name](dict(params or {}), placement, seed)
