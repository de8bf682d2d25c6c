"""The PettingZoo env through PettingZoo's own tests, and its batch API, masks, weights and reward terms."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test, parallel_seed_test

from simulators.cluster import NODE_FAILED, NODE_ON
from simulators.env import DOWN, ENV_NAME, HOLD, OBS_FEATURES, POWER_HOLD, PREWARM, SLEEP, UP, WAKE, ClusterEnv, parallel_env
from simulators.rewards import REWARD_COMPONENTS, RewardWeights
from simulators.scenarios import SCENARIO_DIR, scenario_files, traces_dir

SHIPPED = scenario_files()


def needs_traces(path: Path) -> bool:
    return "traces/" in path.read_text() and not traces_dir().is_dir()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_pettingzoo_api_and_seed_tests_pass_on_every_shipped_scenario(path: Path) -> None:
    if needs_traces(path):
        pytest.skip(f"shared traces not found at {traces_dir()}")
    parallel_api_test(parallel_env(path, max_ticks=60), num_cycles=80)
    parallel_seed_test(lambda: parallel_env(path, max_ticks=30))


def small_env(**options: object) -> ClusterEnv:
    return parallel_env(SCENARIO_DIR / "spike-then-failure.yaml", **options)


def test_env_card_and_spaces() -> None:
    env = small_env()
    assert env.metadata["name"] == ENV_NAME == "ama_cluster_v2"
    assert ENV_NAME in (sys.modules[ClusterEnv.__module__].__doc__ or "")
    agent = env.possible_agents[0]
    assert env.observation_space(agent) is env.observation_space(agent)  # cached, same object
    assert env.action_space(agent) is env.action_space(env.possible_agents[-1])
    obs, _ = env.reset(seed=1)
    assert obs[agent]["observation"].shape == (2, len(OBS_FEATURES))
    masks = obs[agent]["action_mask"]
    assert [len(m) for m in masks] == [4, 4, 4, 3]  # two services, offload, power
    assert env.action_space(agent).contains(np.array([HOLD, HOLD, 0, POWER_HOLD]))
    assert env.state().shape == env.state_space.shape


def test_weights_are_in_every_observation_and_shape_the_reward() -> None:
    env = small_env()
    obs, _ = env.reset(seed=1)
    w_cols = [OBS_FEATURES.index(f"w_{name}") for name in REWARD_COMPONENTS]
    agent = env.possible_agents[0]
    assert np.allclose(obs[agent]["observation"][:, w_cols], RewardWeights().as_array())
    hold = {a: np.array([HOLD, HOLD, 0, POWER_HOLD]) for a in env.agents}
    _, rewards, _, _, infos = env.step(hold)
    terms = np.array(list(infos[agent]["reward_terms"].values()))
    assert list(infos[agent]["reward_terms"]) == list(REWARD_COMPONENTS)
    assert rewards[agent] == pytest.approx(float(terms @ RewardWeights().as_array()))

    energy_only = RewardWeights(latency=0, sla=0, utilization=0, energy=1, cost=0, churn=0)
    env.set_reward_weights(energy_only)
    obs, rewards, _, _, infos = env.step(hold)
    assert np.allclose(obs[agent]["observation"][:, w_cols], energy_only.as_array())
    assert rewards[agent] == pytest.approx(infos[agent]["reward_terms"]["energy"])


def test_batch_api_matches_the_pettingzoo_api() -> None:
    a, b = small_env(), small_env()
    a.reset(seed=4)
    b.reset_arrays(seed=4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        batch = rng.integers(0, 4, size=(b.n_nodes, b.n_services + 2))
        batch[:, -1] = rng.integers(0, 3, size=b.n_nodes)
        obs_a, rew_a, _, _, _ = a.step(dict(zip(a.agents, batch, strict=True)))
        obs_b, _, rew_b, _, _ = b.step_arrays(batch)
        assert np.array_equal(np.stack([obs_a[x]["observation"] for x in a.possible_agents]), obs_b)
        assert np.allclose([rew_a[x] for x in a.possible_agents], rew_b)


def test_masked_actions_are_never_taken() -> None:
    env = small_env(max_ticks=200)
    _, masks = env.reset_arrays(seed=2)
    rng = np.random.default_rng(1)
    slept_and_woke = np.zeros(2, np.int64)
    for _ in range(150):
        before = env.cluster.replicas().copy()
        min_total = env.cluster.min_replicas.copy()
        state_before, asleep_before = env.cluster.state.copy(), env.cluster.asleep.copy()
        masks = masks.reshape(env.n_nodes, env.n_services + 2, 4).copy()
        assert not masks[:, -1, 3].any()  # the power row's padding is never allowed
        batch = rng.integers(0, 4, size=(env.n_nodes, env.n_services + 2))
        chosen_allowed = np.take_along_axis(masks, batch[:, :, None], axis=2)[:, :, 0].astype(bool)
        _, masks, _, _, _ = env.step_arrays(batch)
        after = env.cluster.replicas()
        change = after - before
        scale = batch[:, :-2]
        allowed = chosen_allowed[:, :-2]
        power, power_allowed = batch[:, -1], chosen_allowed[:, -1]
        slept, woke = (power == SLEEP) & power_allowed, (power == WAKE) & power_allowed
        # only an empty node that was on sleeps, only a node its agent put to sleep wakes; a node going to sleep
        # starts nothing, and a masked power choice changes nothing
        assert np.all(before[slept].sum(axis=1) == 0) and np.all(state_before[slept] == NODE_ON) and np.all(after[slept] == 0)
        assert np.all(asleep_before[woke]) and not env.cluster.asleep[woke].any()
        unchanged = ~power_allowed & (env.cluster.state != NODE_FAILED)
        assert np.all(env.cluster.asleep[unchanged] == asleep_before[unchanged])
        slept_and_woke += slept.sum(), woke.sum()
        # a masked choice is taken as hold: no replica change beyond events (failures empty a node entirely)
        failed = env.cluster.state == 3
        assert np.all(change[~allowed & ~failed[:, None]] == 0)
        # pre-warm only ever starts the first replica on a node, up only adds to one that has replicas
        assert np.all(before[(scale == PREWARM) & allowed] == 0)
        assert np.all(before[(scale == UP) & allowed] > 0)
        assert np.all(env.cluster.replicas().sum(0) >= np.minimum(min_total, before.sum(0)))
        assert np.all(after[(scale == DOWN) & allowed] <= before[(scale == DOWN) & allowed])
    assert (slept_and_woke > 0).all()  # the power checks above did run


def test_invalid_render_mode_and_weights_are_rejected() -> None:
    with pytest.raises(ValueError, match="render_mode"):
        small_env(render_mode="human")
    env = small_env(render_mode="ansi")
    env.reset(seed=0)
    assert "cloud-0" in env.render()
    with pytest.raises(TypeError):
        env.set_reward_weights({"sla": 1.0})  # type: ignore[arg-type]


def test_episode_ends_by_truncation_and_agents_leave() -> None:
    env = small_env(max_ticks=3)
    env.reset(seed=0)
    for tick in range(3):
        _, _, terminations, truncations, _ = env.step({a: np.array([HOLD, HOLD, 0, POWER_HOLD]) for a in env.agents})
        assert not any(terminations.values())
        assert all(truncations.values()) == (tick == 2)
    assert env.agents == []
