"""stable-baselines3 training loop on a real robosuite task."""

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO


def test_ppo_multiinput_learns_256_steps():
    env = gym.make("vla_envs/Lift-v0", max_episode_steps=64)
    try:
        model = PPO("MultiInputPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
        model.learn(256)
        assert model.num_timesteps == 256
        obs, _ = env.reset(seed=0)
        action, _ = model.predict(obs, deterministic=True)
        assert action.shape == (7,) and np.all(np.abs(action) <= 1)
    finally:
        env.close()
