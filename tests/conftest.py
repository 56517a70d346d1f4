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


# Every LIBERO test module shares these built envs: building a LIBERO task costs 5-8 s here and
# each reset about 2.4 s (its scene is rebuilt), so the LIBERO tests build each task once per
# session instead of once per test.
LIBERO_ENV_KWARGS = {"obs_mode": "state+rgb", "image_size": 64, "terminate_on_success": False}


class LiberoEnvs:
    """``get("LIBERO-Object", 3)``: that task's env, made with ``LIBERO_ENV_KWARGS`` on first use
    and kept for the session. A test resets it (seed, initial state) before it relies on its state,
    and never closes it; wrappers put around it are discarded without ``close`` (that would close
    the env): their substep hook sits on the simulation, which the next reset replaces."""

    def __init__(self) -> None:
        self._envs: dict[tuple[str, int], gym.Env] = {}

    def get(self, suite_title: str, task_id: int) -> gym.Env:
        key = (suite_title, task_id)
        if key not in self._envs:
            self._envs[key] = gym.make(f"vla_envs/{suite_title}-v0", task_id=task_id, **LIBERO_ENV_KWARGS)
        return self._envs[key]

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()


@pytest.fixture(scope="session")
def libero_envs():
    envs = LiberoEnvs()
    yield envs
    envs.close()
