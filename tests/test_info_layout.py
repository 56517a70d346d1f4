"""A fixed info layout on reset and every step, as dataset recorders and loggers need: Minari's
DataCollector, SB3's Monitor and an SB3 callback, each the real library."""

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import vla_envs  # noqa: F401
from wrappers import MONITOR_KEYWORDS, EfficiencyReward, EmbodiedCost, JointStateRecorder, METRIC_KEYS, make_embodied_env


def _layout(info: dict) -> dict:
    return {key: (type(value).__name__, _layout(value) if isinstance(value, dict) else None) for key, value in info.items()}


@pytest.mark.parametrize("stack", [
    lambda env: EmbodiedCost(env),
    lambda env: JointStateRecorder(env),
    lambda env: EfficiencyReward(env),
    lambda env: EfficiencyReward(JointStateRecorder(EmbodiedCost(env, flat_info=True))),
    lambda env: EmbodiedCost(EfficiencyReward(env), flat_info=True),
])
def test_the_same_keys_and_types_on_reset_and_every_step(stack):
    env = stack(gym.make("vla_envs/Lift-v0", max_episode_steps=4))
    _, info = env.reset(seed=0)
    layout = _layout(info)
    assert {"instruction", "is_success", "embodied", "sim_unstable"} <= set(info)
    assert list(info["embodied"]) == list(METRIC_KEYS)
    done = False
    while not done:
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        assert _layout(info) == layout
        done = terminated or truncated
    env.close()


def test_minari_data_collector_records_infos(tmp_path, monkeypatch):
    minari = pytest.importorskip("minari")
    from minari import DataCollector

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    env = DataCollector(EmbodiedCost(gym.make("vla_envs/Lift-v0", max_episode_steps=6)), record_infos=True)
    rng = np.random.default_rng(0)
    energies = []
    for seed in (0, 1):
        env.reset(seed=seed)
        done, running = False, []
        while not done:
            _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, 7).astype(np.float32))
            running.append(info["embodied"]["energy_j"])
            done = terminated or truncated
        energies.append(running)
    env.create_dataset("vla_envs/lift-random-v0", algorithm_name="uniform random", author="tests",
                       author_email="tests@example.com", code_permalink="https://example.com",
                       description="uniform random actions on Lift, for a layout test", eval_env=env.spec)
    env.close()

    dataset = minari.load_dataset("vla_envs/lift-random-v0")
    assert dataset.total_episodes == 2 and dataset.total_steps == 12
    for episode, running in zip(dataset.iterate_episodes(), energies):
        recorded = np.asarray(episode.infos["embodied"]["energy_j"])
        assert recorded[0] == 0.0  # the reset's info
        np.testing.assert_allclose(recorded[1:], running, rtol=0, atol=0)
        instruction = episode.infos["instruction"][0]  # HDF5 gives strings back as bytes
        assert (instruction.decode() if isinstance(instruction, bytes) else instruction) == "pick up the red cube and lift it off the table"


def test_sb3_monitor_gets_one_numeric_column_per_metric(tmp_path):
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(EmbodiedCost(gym.make("Pusher-v5", max_episode_steps=10), flat_info=True),
                  str(tmp_path / "pusher"), info_keywords=MONITOR_KEYWORDS)
    for seed in (0, 1):
        env.reset(seed=seed)
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = terminated or truncated
    env.close()
    table = pd.read_csv(tmp_path / "pusher.monitor.csv", skiprows=1)
    assert len(table) == 2
    for keyword in MONITOR_KEYWORDS:
        assert pd.api.types.is_float_dtype(table[keyword]), keyword
    assert (table["embodied/n_steps"] == 10).all() and (table["embodied/energy_j"] > 0).all()
    assert info["embodied/energy_j"] == info["embodied"]["energy_j"]
    assert table["embodied/energy_j"].iloc[-1] == pytest.approx(info["embodied/energy_j"], rel=1e-12)  # CSV text


def test_sb3_make_vec_env_monitors_the_metrics_through_make_embodied_env(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    vec_env = make_vec_env(make_embodied_env, n_envs=1, seed=0, monitor_dir=str(tmp_path),
                           env_kwargs={"env_id": "vla_envs/Lift-v0", "max_episode_steps": 3},
                           monitor_kwargs={"info_keywords": MONITOR_KEYWORDS})
    vec_env.reset()
    for _ in range(3):
        _, _, dones, infos = vec_env.step(np.zeros((1, 7), np.float32))
    vec_env.close()
    assert dones[0] and infos[0]["episode"]["l"] == 3
    assert infos[0]["episode"]["embodied/n_steps"] == 3 and infos[0]["episode"]["embodied/energy_j"] > 0
    table = pd.read_csv(tmp_path / "0.monitor.csv", skiprows=1)
    assert list(table.columns[3:]) == list(MONITOR_KEYWORDS) and table["embodied/n_steps"].tolist() == [3]


@pytest.mark.parametrize("wrapper_kwargs", [{"flat_info": True}, {}])
def test_sb3_make_vec_env_with_wrapper_class_is_refused_clearly(wrapper_kwargs):
    from stable_baselines3.common.env_util import make_vec_env

    # make_vec_env puts wrapper_class outside its Monitor, which would raise a bare KeyError at the episode end
    with pytest.raises(ValueError, match=r"EmbodiedCost is applied over a Monitor with info_keywords=\['embodied/"
                                         r"completion_time_s'.*make_vec_env\(wrappers\.make_embodied_env"):
        make_vec_env("Pusher-v5", wrapper_class=EmbodiedCost, wrapper_kwargs=wrapper_kwargs,
                     monitor_kwargs={"info_keywords": MONITOR_KEYWORDS})


def test_sb3_monitor_with_efficiency_reward_alone(tmp_path):
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(EfficiencyReward(gym.make("Pusher-v5", max_episode_steps=5)), str(tmp_path / "m"), info_keywords=("embodied",))
    env.reset(seed=0)
    for _ in range(5):
        env.step(env.action_space.sample())
    env.close()
    assert len(pd.read_csv(tmp_path / "m.monitor.csv", skiprows=1)) == 1


def test_the_callback_logs_each_episodes_metrics_and_reward_terms(tmp_path):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.logger import configure

    from wrappers.sb3_callback import EmbodiedMetricsCallback

    vec_env = make_vec_env(lambda: EfficiencyReward(gym.make("Pusher-v5", max_episode_steps=16)), n_envs=2, seed=0)
    model = PPO("MlpPolicy", vec_env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path), ["csv"]))
    model.learn(128, callback=EmbodiedMetricsCallback())
    progress = pd.read_csv(tmp_path / "progress.csv")
    assert len(progress) == 2  # one row per rollout of 2 x 32 steps; 4 episodes end in each
    for key in METRIC_KEYS:
        if key == "peak_joint_speed_frac":  # Pusher's model has no velocity limits: NaN, not logged
            assert f"embodied/{key}" not in progress.columns
            continue
        assert progress[f"embodied/{key}"].notna().all(), key
    assert (progress["embodied/n_steps"] == 16).all()
    assert progress["embodied/completion_time_s"].to_numpy() == pytest.approx([16 * 0.05] * 2)
    # the time term's episode sum is -weight * T / f / scale with the default weights
    assert progress["reward_terms/time_s"].to_numpy() == pytest.approx([-1.0 * 0.8 / 10.0] * 2)
    assert (progress["reward_terms/energy_j"] < 0).all() and math.isfinite(progress["embodied/energy_j"].sum())
