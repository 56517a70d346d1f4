"""Scripted-expert regressions that need more than the one seed in test_policies_executor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from policies.experts import DoorExpert


def _run_to_the_end(env, expert, obs, noise: float = 0.0, rng=None, max_steps: int = 10_000):
    """Step ``expert`` until the episode ends (or ``max_steps``); executed translation gets
    Gaussian ``noise`` as in demonstration collection. Returns (steps, terminated, info)."""
    for step in range(1, max_steps + 1):
        action = expert.act(obs)[0].copy()
        if noise:
            action[:3] += rng.normal(0.0, noise, 3)
        obs, _, terminated, truncated, info = env.step(np.clip(action, -1.0, 1.0))
        if terminated or truncated:
            break
    return step, terminated, info


def test_door_expert_opens_doors_placed_with_a_large_yaw():
    # Seeds 1 and 29 place the door 0.19-0.24 rad off square; an expert that turned the lever
    # about the world y axis instead of the latch axis dragged these doors ajar, the latch tip
    # jammed on the frame post and the hinge stuck near 0.04 rad until the time limit.
    env = gym.make("vla_envs/Door-v0")
    rs = env.unwrapped.robosuite_env
    try:
        for seed in (1, 29):
            obs, info = env.reset(seed=seed)
            latch_axis = rs.sim.data.xaxis[rs.sim.model._model.joint("Door_latch_joint").id]
            assert abs(np.arctan2(latch_axis[0], -latch_axis[1])) > 0.15  # the seed still yaws the door
            expert = DoorExpert(env)
            expert.reset(info["instruction"])
            step, terminated, info = _run_to_the_end(env, expert, obs, max_steps=120)
            assert terminated and info["is_success"], f"seed {seed}: door not opened, phase {expert.phase}"
            assert step <= 100, f"seed {seed}: took {step} steps"
    finally:
        env.close()


def test_every_registered_task_has_a_scripted_expert():
    # the task list comes from configs/tasks/ (what vla_envs registers), not a hand-typed list
    from policies.base import Policy
    from policies.experts import EXPERTS, expert_for_task
    from vla_envs import load_task_configs

    configs = load_task_configs()
    assert set(configs) <= set(EXPERTS), f"no scripted expert for {sorted(set(configs) - set(EXPERTS))}"
    for name, cfg in configs.items():
        env = gym.make(cfg.env_id, obs_mode="state")
        try:
            expert = expert_for_task(name, env)
            assert isinstance(expert, EXPERTS[name]) and isinstance(expert, Policy)
            assert expert.action_dim == env.action_space.shape[0]
        finally:
            env.close()
    with pytest.raises(ValueError, match="no scripted expert"):
        expert_for_task("NoSuchTask", None)


@pytest.mark.parametrize("seed, noise", [(0, 0.0), (1000, 0.1)])
def test_nut_assembly_square_expert_puts_the_nut_on_the_peg(seed, noise):
    # Seed 0 lays the nut so that the fingers take the handle from the side that leaves a
    # ~200 degree turn in hand; seed 1000 runs with the executed-action noise of demo collection
    # (policies/tinyvla/demos.py: Gaussian, std 0.1 action units on the translation).
    from policies.experts import expert_for_task

    env = gym.make("vla_envs/NutAssemblySquare-v0", obs_mode="state")
    rng = np.random.default_rng(seed)
    try:
        obs, info = env.reset(seed=seed)
        expert = expert_for_task("NutAssemblySquare", env)
        expert.reset(info["instruction"])
        step, terminated, info = _run_to_the_end(env, expert, obs, noise, rng)
        assert terminated and info["is_success"], f"seed {seed}: nut not on the peg, phase {expert.phase}"
        assert step <= 250, f"seed {seed}: took {step} steps"
    finally:
        env.close()
