"""Shared fixtures. Every test runs against real robosuite/MuJoCo."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import vla_envs

TASK_IDS = list(vla_envs.TASK_IDS)


def rollout_trajectory(env: gym.Env, seed: int, n_steps: int, action_seed: int = 123) -> dict[str, np.ndarray]:
    """Reset with ``seed`` and apply ``n_steps`` fixed pseudo-random actions; stack what came back."""
    rng = np.random.default_rng(action_seed)
    obs, _ = env.reset(seed=seed)
    states = [obs["state"]]
    rewards = []
    for _ in range(n_steps):
        action = rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        states.append(obs["state"])
        rewards.append(reward)
        if terminated or truncated:
            break
    return {"state": np.stack(states), "reward": np.asarray(rewards)}


@pytest.fixture(scope="module")
def lift_env():
    env = gym.make("vla_envs/Lift-v0")
    yield env
    env.close()
