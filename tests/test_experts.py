"""Scripted-expert regressions that need more than the one seed in test_policies_executor."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from policies.experts import DoorExpert


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
            for step in range(1, 121):
                obs, _, terminated, truncated, info = env.step(expert.act(obs)[0])
                if terminated or truncated:
                    break
            assert terminated and info["is_success"], f"seed {seed}: door not opened, phase {expert.phase}"
            assert step <= 100, f"seed {seed}: took {step} steps"
    finally:
        env.close()
