"""stable-baselines3 on a real robosuite task: PPO collects, updates and predicts.

This checks the plumbing (dict observations, time-limit truncation, episode bookkeeping, an
actual gradient update), not learning: 256 steps of Lift teach PPO nothing measurable.
"""

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO


def test_ppo_multiinput_collects_episodes_updates_and_predicts_on_lift():
    env = gym.make("vla_envs/Lift-v0", max_episode_steps=64)
    try:
        model = PPO("MultiInputPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
        before = [p.detach().clone() for p in model.policy.parameters()]
        model.learn(256)
        assert model.num_timesteps == 256
        # SB3's Monitor saw four whole 64-step episodes end by truncation
        assert [info["l"] for info in model.ep_info_buffer] == [64, 64, 64, 64]
        after = list(model.policy.parameters())
        assert all(torch.isfinite(p).all() for p in after)
        assert any(not torch.equal(a, b) for a, b in zip(after, before)), "no gradient step changed the policy"
        obs, _ = env.reset(seed=0)
        assert set(obs) == set(model.observation_space.spaces)
        action, _ = model.predict(obs, deterministic=True)
        assert action.shape == (7,) and np.all(np.abs(action) <= 1)
    finally:
        env.close()
