"""EfficiencyReward: terms, configs, and 'doing nothing must not beat solving' on Lift."""

import gymnasium as gym
import numpy as np
import pytest

from policies.experts import LiftExpert
from vla_envs.config import ConfigError
from wrappers import EfficiencyReward, EmbodiedCost, RewardConfig, load_reward_config
from wrappers.running_metrics import STEP_TERM_KEYS


def _episode_return(env, policy=None, seed=0):
    obs, info = env.reset(seed=seed)
    total, task_total, done, steps = 0.0, 0.0, False, 0
    while not done:
        action = policy.act(obs)[0] if policy is not None else np.zeros(env.action_space.shape, np.float32)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        task_total += info["task_reward"]
        steps += 1
        done = terminated or truncated
    return total, task_total, info, steps


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_standing_still_does_not_beat_solving_lift(seed):
    env = EfficiencyReward(gym.make("vla_envs/Lift-v0"))
    expert = LiftExpert(env)
    expert.reset()
    solved, solved_task, solved_info, solved_steps = _episode_return(env, expert, seed)
    still, still_task, still_info, still_steps = _episode_return(env, None, seed)
    env.close()
    assert solved_info["is_success"] and solved_steps < 60
    assert not still_info["is_success"] and still_steps == 300
    assert still_task == 0.0 and solved_task == pytest.approx(1.0)
    print(f"seed {seed}: solving return {solved:+.3f} in {solved_steps} steps, standing still {still:+.3f}")
    assert solved > still + 2.0


def test_terms_are_the_weighted_step_increments():
    weights = {"time_s": 1.0, "energy_j": 0.5, "jerk_sq": 0.2}
    scales = {"time_s": 2.0, "energy_j": 10.0, "jerk_sq": 1e5}
    env = EfficiencyReward(EmbodiedCost(gym.make("Pusher-v5")), config={"weights": weights, "scales": scales})
    _, info = env.reset(seed=0)
    assert info["task_reward"] == 0.0 and list(info["reward_terms"]) == [*STEP_TERM_KEYS, "success_bonus"]
    previous = info["embodied"]
    bare = gym.make("Pusher-v5")
    bare.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(10):
        action = rng.uniform(-1, 1, 7).astype(np.float32)
        _, reward, _, _, info = env.step(action)
        _, bare_reward, _, _, _ = bare.step(action)
        terms, now = info["reward_terms"], info["embodied"]
        assert list(terms) == [*STEP_TERM_KEYS, "success_bonus"] and now is not previous
        assert info["task_reward"] == bare_reward  # untouched
        assert terms["time_s"] == pytest.approx(-1.0 * 0.05 / 2.0)
        assert terms["energy_j"] == pytest.approx(-0.5 * (now["energy_j"] - previous["energy_j"]) / 10.0)
        assert terms["effort_nm2s"] == 0.0 and terms["success_bonus"] == 0.0
        assert reward == pytest.approx(bare_reward + sum(terms.values()))
        previous = now
    env.close()


def test_success_bonus_is_paid_once():
    env = EfficiencyReward(gym.make("vla_envs/Lift-v0", terminate_on_success=False), success_bonus=3.0)
    expert = LiftExpert(env)
    env.reset(seed=0)
    bonuses = []
    for _ in range(60):
        _, _, _, _, info = env.step(expert.act(None)[0])
        bonuses.append(info["reward_terms"]["success_bonus"])
    env.close()
    assert bonuses.count(3.0) == 1 and set(bonuses) == {0.0, 3.0}


def test_reward_config_validation(tmp_path):
    assert load_reward_config("configs/rewards/default.yaml").weights["time_s"] == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("weights: {time_s: 1.0, smoothness: 2.0}\nscales: {energy_j: 0}\n")
    message = str(pytest.raises(ConfigError, load_reward_config, bad).value)
    assert str(bad) in message
    assert "unknown cost term 'smoothness'" in message
    assert "scale of 'energy_j' is 0.0: expected > 0" in message
    with pytest.raises(ValueError, match="expected >= 0"):
        RewardConfig(weights={"time_s": -1.0})
