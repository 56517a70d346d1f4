"""Wrappers under gymnasium vector envs and stable-baselines3 SubprocVecEnv + Monitor."""

import csv

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder

SEEDS = [5, 6]
STEPS = 8


def _make(env_id="Pusher-v5"):
    def thunk():
        return EfficiencyReward(EmbodiedCost(gym.make(env_id, max_episode_steps=STEPS)))

    return thunk


def _single_env_episode_metrics(env_id, seed, actions):
    env = _make(env_id)()
    env.reset(seed=seed)
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
    assert truncated
    env.close()
    return info["embodied"]


def _actions(n_envs, space, n=STEPS):
    return np.random.default_rng(0).uniform(-1, 1, (n, n_envs, *space.shape)).astype(np.float32)


@pytest.mark.parametrize("vector_cls", [gym.vector.SyncVectorEnv, gym.vector.AsyncVectorEnv])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_vector_episodes_match_single_env_runs(vector_cls, mode):
    envs = vector_cls([_make(), _make()], autoreset_mode=mode)
    actions = _actions(2, envs.single_action_space)
    envs.reset(seed=SEEDS)
    for t in range(STEPS):
        _, _, terminated, truncated, infos = envs.step(actions[t])
    assert truncated.all()
    if mode == AutoresetMode.SAME_STEP:  # the finished episode's info moved to final_info
        infos = infos["final_info"]
    for i, seed in enumerate(SEEDS):
        expected = _single_env_episode_metrics("Pusher-v5", seed, actions[:, i])
        got = {key: float(values[i]) for key, values in infos["embodied"].items() if not key.startswith("_")}
        assert got == pytest.approx(expected, rel=1e-12, nan_ok=True), f"sub-env {i}"
    # the next episode starts from zero in each sub-env
    if mode == AutoresetMode.NEXT_STEP:
        _, _, _, _, infos = envs.step(actions[0])  # the reset step
    _, _, _, _, infos = envs.step(actions[1])
    assert list(infos["embodied"]["n_steps"]) == [1.0, 1.0]
    envs.close()


def test_lift_in_async_vector_env_matches_single_env():
    envs = gym.vector.AsyncVectorEnv([_make("vla_envs/Lift-v0"), _make("vla_envs/Lift-v0")])
    actions = _actions(2, envs.single_action_space)
    envs.reset(seed=SEEDS)
    for t in range(STEPS):
        _, _, _, _, infos = envs.step(actions[t])
    envs.close()
    expected = _single_env_episode_metrics("vla_envs/Lift-v0", SEEDS[1], actions[:, 1])
    got = {k: float(v[1]) for k, v in infos["embodied"].items() if not k.startswith("_")}
    assert got == pytest.approx(expected, rel=1e-12, nan_ok=True)


def test_sb3_subproc_vec_env_with_monitor(tmp_path):
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import SubprocVecEnv

    def factory(rank):
        def thunk():
            env = JointStateRecorder(EmbodiedCost(gym.make("Pusher-v5", max_episode_steps=STEPS)), out_dir=tmp_path / f"w{rank}")
            return Monitor(env, str(tmp_path / f"monitor{rank}"), info_keywords=("embodied",))
        return thunk

    vec = SubprocVecEnv([factory(0), factory(1)])
    vec.seed(11)
    vec.reset()
    for t in range(STEPS):
        _, _, dones, infos = vec.step(np.zeros((2, 7), np.float32))
    assert dones.all()
    vec.close()
    for rank, info in enumerate(infos):
        assert info["episode"]["l"] == STEPS and info["embodied"]["n_steps"] == STEPS
        with open(tmp_path / f"monitor{rank}.monitor.csv") as handle:
            rows = list(csv.reader(handle))
        assert rows[1][:4] == ["r", "l", "t", "embodied"] and rows[2][1] == str(STEPS)
        [episode_file] = (tmp_path / f"w{rank}").glob("*.parquet")
        assert episode_file.name == "episode_000000.parquet"
