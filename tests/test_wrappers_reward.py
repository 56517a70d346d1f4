"""EfficiencyReward: terms, configs, and 'doing nothing must not beat solving' on Lift."""

import gymnasium as gym
import numpy as np
import pytest

from policies.experts import LiftExpert
from vla_envs.config import ConfigError
from wrappers import EfficiencyReward, EmbodiedCost, RewardConfig, load_reward_config
from wrappers.metrics import STEP_TERM_KEYS


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


def step_quantities(episode, t: int, f_hz: float, dt: float) -> dict[str, float]:
    """The documented quantity behind each reward term of control step ``t`` (samples ``t - 1`` ->
    ``t``), recomputed from a recorded episode's arrays."""
    q, qd, p, a = episode.qpos, episode.qvel, episode.ee_pos, episode.action.astype(np.float64)
    tau, qd_sub = episode.substep_torque, episode.substep_qvel
    jerk = qd[t] - 2 * qd[t - 1] + qd[t - 2] if t >= 2 else np.zeros_like(qd[0])
    return {
        "time_s": 1.0 / f_hz,
        "ee_path_m": np.linalg.norm(p[t] - p[t - 1]),
        "joint_path_rad": np.linalg.norm(q[t] - q[t - 1]),
        "joint_rotation_rad": np.abs(q[t] - q[t - 1]).sum(),
        "jerk_sq": f_hz**4 * np.dot(jerk, jerk),
        "action_change": np.linalg.norm(a[t - 1] - a[t - 2]) if t >= 2 else 0.0,
        "energy_j": np.abs(tau[t - 1] * qd_sub[t - 1]).sum() * dt,
        "effort_nm2s": np.square(tau[t - 1]).sum() * dt,
    }


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


WEIGHTS = {"time_s": 0.7, "ee_path_m": 1.3, "joint_path_rad": 0.9, "joint_rotation_rad": 0.4,
           "jerk_sq": 0.2, "action_change": 0.6, "energy_j": 0.5, "effort_nm2s": 0.3}
SCALES = {"time_s": 2.0, "ee_path_m": 0.5, "joint_path_rad": 3.0, "joint_rotation_rad": 1.5,
          "jerk_sq": 1e5, "action_change": 4.0, "energy_j": 10.0, "effort_nm2s": 1e3}


def _physics_dt(env) -> float:
    unwrapped = env.unwrapped
    sim = getattr(unwrapped, "robosuite_env", None)
    return float(sim.sim.model.opt.timestep if sim is not None else unwrapped.model.opt.timestep)


@pytest.mark.parametrize("env_id, kwargs", [("vla_envs/Lift-v0", {"max_episode_steps": 25}), ("Pusher-v5", {"max_episode_steps": 25})])
def test_every_term_equals_its_quantity_recomputed_from_the_recorded_arrays(env_id, kwargs):
    """All eight weights non-zero; each step's term is recomputed here from what the recorder
    kept (positions, velocities, actions, every substep's torque and velocity), not read back
    from the accounting that produced it."""
    from wrappers import JointStateRecorder

    f = 20.0  # both envs step at 20 Hz (Lift: 25 x 2 ms, Pusher: 5 x 10 ms)
    env = EfficiencyReward(
        JointStateRecorder(EmbodiedCost(gym.make(env_id, **kwargs)), record_substeps=True),
        config={"weights": WEIGHTS, "scales": SCALES},
    )
    dt = _physics_dt(env)
    env.reset(seed=4)
    rng = np.random.default_rng(4)
    terms, rewards, task_rewards, done = [], [], [], False
    while not done:
        _, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        terms.append(info["reward_terms"])
        rewards.append(reward)
        task_rewards.append(info["task_reward"])
        done = terminated or truncated
    episode = env.get_wrapper_attr("last_episode")
    env.close()
    n = len(terms)
    assert n == 25 and episode.n_steps == n and episode.substep_torque.shape[:2] == (n, round(1 / (f * dt)))

    for t in range(1, n + 1):
        expected = step_quantities(episode, t, f, dt)
        got = terms[t - 1]
        for key, quantity in expected.items():
            assert got[key] == pytest.approx(-WEIGHTS[key] * quantity / SCALES[key], rel=1e-9, abs=1e-15), (t, key)
        assert got["success_bonus"] == 0.0
        assert rewards[t - 1] == pytest.approx(task_rewards[t - 1] + sum(got.values()), rel=1e-12, abs=1e-15)
    # every term was exercised: random actions move, jerk and spend energy on most steps
    for key in WEIGHTS:
        assert sum(terms[t][key] < 0 for t in range(n)) >= n - 2, key
