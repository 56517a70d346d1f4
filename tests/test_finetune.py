"""Residual fine-tuning: the residual env's action algebra and bounds, the deployed residual
policy, checkpoints that restore exactly, the ``vla-envs finetune`` command end to end (resume
after an interruption included) and a fine-tuned residual evaluated by ``vla-envs eval``."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import vla_envs  # noqa: F401
from finetuning import ResidualActionEnv
from finetuning.config import FinetuneConfig, load_finetune_config
from policies.base import Policy
from policies.residual import (
    ResidualPolicy,
    ResidualSpec,
    broadcast_scale,
    compose_action,
    load_residual,
    read_residual_spec,
    residual_features,
    save_residual,
)
from vla_envs.config import ConfigError
from wrappers import JointStateRecorder

REPO = Path(__file__).resolve().parents[1]
SCALE = [0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.25]


class RampChunks(Policy):
    """A chunk of 4 actions whose x command ramps and whose gripper is closed; counts queries."""

    action_dim = 7
    chunk_size = 4

    def __init__(self):
        self.queries = 0

    def act(self, obs) -> np.ndarray:
        self.queries += 1
        chunk = np.zeros((4, 7), np.float32)
        chunk[:, 0] = [-0.9, -0.3, 0.3, 0.9]
        chunk[:, 2] = 0.8
        chunk[:, 6] = 1.0
        return chunk


def test_compose_action_is_base_plus_scaled_bounded_residual_clipped_to_the_action_space():
    base = np.array([0.9, -0.9, 0.2, 0.1, 0.0, 0.0, 1.0])
    residual = np.array([1.0, -1.0, 3.0, -0.4, 1.0, 1.0, -2.0])  # 3 and -2 lie outside [-1, 1]
    scale = broadcast_scale(SCALE, 7)
    executed = compose_action(base, residual, scale, -np.ones(7), np.ones(7))
    # 0.9 + 0.5 = 1.4 -> 1; -0.9 - 0.5 -> -1; 0.2 + 0.5 * 1 (3 bounded to 1); scale 0 keeps 0.1;
    # gripper 1 + 0.25 * (-1) (-2 bounded to -1)
    np.testing.assert_allclose(executed, [1.0, -1.0, 0.7, 0.1, 0.0, 0.0, 0.75], atol=1e-7)
    assert executed.dtype == np.float32


def test_scale_and_features_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match=r"shape \(3,\): expected a number or 7 numbers"):
        broadcast_scale([0.1, 0.2, 0.3], 7)
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        broadcast_scale(-0.1, 7)
    with pytest.raises(KeyError, match=r"obs\['state'\].*keys \['image'\]"):
        residual_features({"image": np.zeros(3)}, ["state"], None)
    features = residual_features({"a": np.ones((2, 2)), "b": np.zeros(1)}, ["b", "a"], np.full(3, 2.0))
    np.testing.assert_array_equal(features, [0, 1, 1, 1, 1, 2, 2, 2])


def _residual_env(max_steps: int = 10, **kwargs):
    env = JointStateRecorder(gym.make("vla_envs/Lift-v0", max_episode_steps=max_steps))
    policy = RampChunks()
    return ResidualActionEnv(env, policy, scale=SCALE, execution={"execute_steps": 4}, **kwargs), policy, env


def test_the_env_executes_base_plus_scaled_residual_and_the_simulator_receives_it():
    env, policy, recorder = _residual_env(max_steps=10)
    assert env.action_space.shape == (7,) and env.action_space.low.min() == -1 and env.action_space.high.max() == 1
    obs, info = env.reset(seed=0)
    state_size = recorder.observation_space["state"].shape[0]
    assert env.observation_space.shape == (state_size + 7,) and obs.shape == (state_size + 7,)
    np.testing.assert_array_equal(obs[-7:], info["base_action"])
    rng = np.random.default_rng(0)
    executed, bases = [], []
    for step in range(10):
        base = info["base_action"]
        np.testing.assert_allclose(base[0], [-0.9, -0.3, 0.3, 0.9][step % 4], atol=1e-7)
        residual = rng.uniform(-2.0, 2.0, 7)
        obs, _, terminated, truncated, info = env.step(residual)
        expected = compose_action(base, residual, np.asarray(SCALE), -np.ones(7), np.ones(7))
        np.testing.assert_array_equal(info["executed_action"], expected)
        np.testing.assert_array_equal(info["residual_action"], np.clip(residual, -1, 1).astype(np.float32))
        assert np.all(np.abs(info["executed_action"] - base) <= np.asarray(SCALE) + 1e-6)  # never further than scale
        executed.append(expected)
        bases.append(base)
        if terminated or truncated:
            break
    assert truncated and step == 9
    # the base was asked once per chunk of 4: steps 0-3, 4-7, 8-9 (no query after the last step)
    assert policy.queries == 3
    np.testing.assert_allclose(recorder.last_episode.action, np.stack(executed), atol=1e-7)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(7))


def test_the_env_refuses_bad_residuals_and_unknown_observation_keys():
    env, _, _ = _residual_env()
    env.reset(seed=1)
    with pytest.raises(ValueError, match=r"shape \(6,\), expected \(7,\)"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="not finite"):
        env.step(np.array([np.nan, 0, 0, 0, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"obs_keys \['image'\] are not in the env's observations \['state'\]"):
        ResidualActionEnv(gym.make("vla_envs/Lift-v0"), RampChunks(), obs_keys=["image"])
    with pytest.raises(ValueError, match="expected a number or 7 numbers"):
        ResidualActionEnv(gym.make("vla_envs/Lift-v0"), RampChunks(), scale=[0.1, 0.1])


def test_sb3_checks_and_vector_envs_accept_the_residual_env_with_the_shaped_reward():
    from stable_baselines3.common.env_checker import check_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    from policies.experts import LiftExpert
    from wrappers import EfficiencyReward

    def make():
        return ResidualActionEnv(EfficiencyReward(gym.make("vla_envs/Lift-v0", max_episode_steps=40)), LiftExpert)

    check_env(make(), warn=False)
    vec = DummyVecEnv([make, make])
    vec.seed(3)
    obs = vec.reset()
    assert obs.shape == (2, vec.observation_space.shape[0])
    rewards = []
    for _ in range(45):  # past the time limit: autoreset and a terminal info on each sub-env
        obs, reward, _, infos = vec.step(np.zeros((2, 7), np.float32))
        rewards.append(reward)
        assert all("reward_terms" in info and "executed_action" in info for info in infos)
    # a zero residual runs the expert itself: it solves Lift, so the success bonus was paid
    assert np.concatenate(rewards).max() > 1.0
    vec.close()


def _random_spec(features: int, squash: str = "tanh") -> ResidualSpec:
    return ResidualSpec(obs_keys=["state"], include_base_action=True, scale=SCALE, action_low=[-1.0] * 7,
                        action_high=[1.0] * 7, activation="tanh", squash=squash, obs_clip=5.0,
                        base_policy={"kind": "expert"}, task="Lift")


def test_the_residual_network_computes_its_documented_formula(tmp_path):
    rng = np.random.default_rng(1)
    w1, b1 = rng.normal(size=(16, 10)), rng.normal(size=16)
    w2, b2 = rng.normal(size=(7, 16)), rng.normal(size=7)
    mean, std = rng.normal(size=10), rng.uniform(0.5, 2.0, 10)
    layers = [(torch.tensor(w1), torch.tensor(b1)), (torch.tensor(w2), torch.tensor(b2))]
    for squash in ("tanh", "clip"):
        path = save_residual(tmp_path / f"{squash}.safetensors", _random_spec(10, squash), layers, mean, std)
        network = load_residual(path)
        assert read_residual_spec(path).squash == squash
        for _ in range(5):
            x = rng.normal(scale=8.0, size=10)  # some features beyond the +-5 clip
            hidden = np.tanh(w1 @ np.clip((x - mean) / std, -5, 5) + b1)
            out = w2 @ hidden + b2
            expected = np.tanh(out) if squash == "tanh" else np.clip(out, -1, 1)
            np.testing.assert_allclose(network(x), expected, atol=2e-5)  # float32 weights
    with pytest.raises(ValueError, match=r"features have shape \(9,\), expected \(10,\)"):
        network(np.zeros(9))
    (tmp_path / "other.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ValueError, match="not a residual checkpoint"):
        read_residual_spec(tmp_path / "other.safetensors")


def test_the_deployed_policy_acts_exactly_like_the_training_env(tmp_path):
    """A constant residual (zero weights, a bias) through ResidualPolicy and through
    ResidualActionEnv gives the same executed actions and trajectory on the same seed."""
    from policies.experts import LiftExpert

    bias = np.array([-0.625, 0.375, -0.75, 0.25, 0.0, 0.0, 0.5])  # exact in float32, as stored
    probe = gym.make("vla_envs/Lift-v0")
    features = probe.observation_space["state"].shape[0] + 7
    path = save_residual(tmp_path / "r.safetensors", _random_spec(features, "clip"),
                         [(torch.zeros(7, features), torch.tensor(bias))], np.zeros(features), np.ones(features))

    env = ResidualActionEnv(gym.make("vla_envs/Lift-v0", max_episode_steps=25), LiftExpert, scale=SCALE)
    env.reset(seed=4)
    trained = []
    for _ in range(25):
        obs, _, terminated, truncated, info = env.step(bias)
        trained.append(info["executed_action"])
        if terminated or truncated:
            break

    deploy_env = gym.make("vla_envs/Lift-v0", max_episode_steps=25)
    obs, info = deploy_env.reset(seed=4)
    policy = ResidualPolicy.load(path, LiftExpert(deploy_env))
    policy.reset(info["instruction"])
    deployed = []
    for _ in range(25):
        action = policy.act(obs)
        assert action.shape == (1, 7)
        obs, _, terminated, truncated, _ = deploy_env.step(action[0])
        deployed.append(action[0])
        if terminated or truncated:
            break
    np.testing.assert_array_equal(np.stack(deployed), np.stack(trained))


# -- configs ----------------------------------------------------------------------------------
def _tiny_config(algorithm: str = "PPO", **training) -> dict:
    hyper = ({"n_steps": 64, "batch_size": 32, "n_epochs": 1} if algorithm == "PPO"
             else {"buffer_size": 2000, "learning_starts": 16, "batch_size": 32})
    return {
        "name": "tiny",
        "task": "Lift",
        "env": {"obs_mode": "state", "max_episode_steps": 40},
        "base": {"policy": {"kind": "expert"}},
        "residual": {"scale": SCALE},
        "reward": "finetune_smooth",
        "algorithm": {"name": algorithm, "hyperparameters": hyper, "policy_kwargs": {"net_arch": [16, 16]}},
        "training": {"total_steps": 128, "num_envs": 1, "checkpoint_every": 64, **training},
    }


def _write(tmp_path: Path, config: dict, name: str = "ft.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c["algorithm"]["hyperparameters"].update(n_step=8), r"unknown PPO hyperparameters \['n_step'\]"),
        (lambda c: c["residual"].update(obs_keys=["image"]), r"residual.obs_keys \['image'\] are not observations"),
        (lambda c: c["residual"].update(scale=0.0), "every dimension is 0"),
        (lambda c: c.update(reward="no_such_reward"), r"reward 'no_such_reward': no file"),
        (lambda c: c.update(task="Lfit"), "unknown task 'Lfit'"),
        (lambda c: c["algorithm"]["policy_kwargs"].update(net_arch={"pi": [8]}), "net_arch"),
        (lambda c: c["training"].update(total_steps=0), "total_steps"),
    ],
)
def test_invalid_finetune_configs_fail_at_load_time(tmp_path, edit, message):
    config = _tiny_config()
    edit(config)
    with pytest.raises(ConfigError, match=message):
        load_finetune_config(_write(tmp_path, config))


def test_an_expert_base_on_a_task_without_one_fails_at_load(tmp_path, monkeypatch):
    """Every shipped task has a scripted expert; a task added without one must fail at load."""
    from policies import experts

    monkeypatch.setattr(experts, "EXPERTS", {k: v for k, v in experts.EXPERTS.items() if k != "Door"})
    config = _tiny_config()
    config.update(task="Door")
    with pytest.raises(ConfigError, match="no scripted expert for task 'Door'"):
        load_finetune_config(_write(tmp_path, config))


def test_shipped_finetune_configs_load():
    for path in sorted((REPO / "configs" / "finetune").glob("*.yaml")):
        assert isinstance(load_finetune_config(path), FinetuneConfig)


# -- checkpoints ------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["PPO", "SAC"])
def test_a_checkpoint_restores_networks_optimizers_normaliser_and_replay_buffer(tmp_path, algorithm):
    from finetuning import checkpoints
    from finetuning.trainer import (
        build_model,
        load_checkpoint,
        make_vec_env,
        save_checkpoint,
    )

    config = FinetuneConfig.model_validate(_tiny_config(algorithm))
    vec = make_vec_env(config)
    model = build_model(config, vec)
    model.learn(64)
    saved = save_checkpoint(model, vec, config, tmp_path, wall_time_s=1.0)
    assert checkpoints.latest_checkpoint(tmp_path / "checkpoints") == saved

    fresh_vec = make_vec_env(config)
    fresh = build_model(FinetuneConfig.model_validate(_tiny_config(algorithm, seed=7)), fresh_vec)
    state = load_checkpoint(fresh, fresh_vec, saved)
    assert state["num_timesteps"] == fresh.num_timesteps == model.num_timesteps == 64
    before, after = model.get_parameters(), fresh.get_parameters()
    assert before.keys() == after.keys()
    for name in before:
        _assert_state_equal(before[name], after[name], name)
    np.testing.assert_array_equal(vec.obs_rms.mean, fresh_vec.obs_rms.mean)
    np.testing.assert_array_equal(vec.obs_rms.var, fresh_vec.obs_rms.var)
    if algorithm == "SAC":
        assert torch.equal(model.log_ent_coef, fresh.log_ent_coef)
        size = model.replay_buffer.pos
        assert size > 0 and fresh.replay_buffer.pos == size
        np.testing.assert_array_equal(model.replay_buffer.observations[:size], fresh.replay_buffer.observations[:size])
        np.testing.assert_array_equal(model.replay_buffer.rewards[:size], fresh.replay_buffer.rewards[:size])
    # the deployable residual in the checkpoint is the actor: same action as SB3's deterministic predict
    network = load_residual(saved / "residual.safetensors")
    raw = np.asarray(vec.get_original_obs() if hasattr(vec, "get_original_obs") else vec.reset())[0]
    sb3_action, _ = model.predict(vec.normalize_obs(raw[None]), deterministic=True)
    np.testing.assert_allclose(network(raw), np.clip(sb3_action[0], -1, 1), atol=1e-5)
    vec.close()
    fresh_vec.close()


def _assert_state_equal(a, b, name):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), name
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), name
        for key in a:
            _assert_state_equal(a[key], b[key], f"{name}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), name
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_state_equal(x, y, f"{name}[{i}]")
    else:
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), name


# -- the command --------------------------------------------------------------------------------
def _cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "cli", *args], check=False, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=600, **kwargs)


def test_finetune_then_eval_the_residual_against_its_base(tmp_path):
    """A tiny fine-tune writes a checkpoint, a log, a curve and a residual that `vla-envs eval`
    loads by config and runs as a variant beside its base."""
    config_path = _write(tmp_path, _tiny_config(total_steps=192))
    out = tmp_path / "run"
    result = _cli("finetune", str(config_path), "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    residual = out / "residual.safetensors"
    assert residual.is_file() and (out / "learning_curve.png").stat().st_size > 10_000
    progress = pd.read_csv(out / "logs" / "progress.csv")
    assert progress["time/total_timesteps"].max() == 192
    assert {"rollout/success_rate", "embodied/jerk_ms", "embodied/energy_j", "reward_terms/jerk_sq"} <= set(progress)
    spec = read_residual_spec(residual)
    assert spec.base_policy == {"kind": "expert"} and spec.training["steps"] == 192 and spec.scale == SCALE

    eval_config = {
        "tasks": ["Lift"], "seeds": [0, 1], "env": {"obs_mode": "state"},
        "base": {"name": "expert", "policy": {"kind": "expert"}},
        "variants": [{"name": "residual", "policy": {"kind": "residual", "checkpoint": str(residual)}}],
        "recording": {"record_steps": False}, "profile": {"enabled": False},
    }
    eval_path = _write(tmp_path, eval_config, "eval.yaml")
    result = _cli("eval", str(eval_path), "--out", str(tmp_path / "eval"))
    assert result.returncode == 0, result.stdout + result.stderr
    episodes = pd.read_parquet(tmp_path / "eval" / "episodes.parquet")
    assert sorted(episodes["variant"].unique()) == ["expert", "residual"]
    assert len(episodes) == 4
    # the residual changes the motion: a trained (if briefly) correction is not the base
    by_variant = episodes.set_index(["variant", "seed"])["energy_j"]
    assert not np.allclose(by_variant["residual"].to_numpy(), by_variant["expert"].to_numpy())

    # an eval whose observations lack what the residual reads fails at load time
    eval_config["env"]["obs_mode"] = "rgb"
    result = _cli("eval", str(_write(tmp_path, eval_config, "eval_rgb.yaml")), "--out", str(tmp_path / "eval2"))
    assert result.returncode == 2 and "the residual reads observation entries ['state']" in result.stdout


def test_an_interrupted_finetune_resumes_from_its_last_checkpoint(tmp_path):
    config_path = _write(tmp_path, _tiny_config(total_steps=100_000, checkpoint_every=64))
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "cli", "finetune", str(config_path), "--out", str(out)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 300
    while not latest.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.5)
    assert latest.exists(), process.communicate()[0] if process.poll() is not None else "no checkpoint in 300 s"
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "rerun with --resume" in output
    from finetuning import checkpoints

    interrupted_at = checkpoints.read_state(checkpoints.latest_checkpoint(out / "checkpoints"))["num_timesteps"]
    assert interrupted_at >= 64

    # starting again without --resume would mix two runs: refused
    again = _cli("finetune", str(config_path), "--out", str(out), "--steps", "512")
    assert again.returncode == 2 and "pass --resume" in again.stdout
    # a changed setting is refused too, naming it
    changed = _tiny_config(total_steps=512, checkpoint_every=64)
    changed["residual"]["scale"] = 0.3
    refused = _cli("finetune", str(_write(tmp_path, changed, "changed.yaml")), "--out", str(out), "--resume")
    assert refused.returncode == 2 and "residual.scale" in refused.stdout

    total = interrupted_at + 128
    resumed = _cli("finetune", str(config_path), "--out", str(out), "--resume", "--steps", str(total))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed from {out / 'checkpoints' / checkpoints.checkpoint_name(interrupted_at)} at step {interrupted_at}" in resumed.stdout.replace("\n", "")
    final = checkpoints.read_state(checkpoints.latest_checkpoint(out / "checkpoints"))
    assert final["num_timesteps"] >= total
    steps = pd.read_csv(out / "logs" / "progress.csv")["time/total_timesteps"].to_numpy()
    assert steps.max() >= total and (np.diff(steps) > 0).all()  # one log, continued, no step repeated
    assert (out / "residual.safetensors").is_file()


def test_profile_counts_the_residual_networks_parameters_and_flops(tmp_path):
    from policies.experts import LiftExpert
    from policies.profiling import profile

    env = gym.make("vla_envs/Lift-v0")
    obs, _ = env.reset(seed=0)
    features = obs["state"].shape[0] + 7
    path = save_residual(tmp_path / "r.safetensors", _random_spec(features),
                         [(torch.zeros(32, features), torch.zeros(32)), (torch.zeros(7, 32), torch.zeros(7))],
                         np.zeros(features), np.ones(features))
    result = profile(ResidualPolicy.load(path, LiftExpert(env)), obs, repeats=3, warmup=1)
    assert result.params == 32 * features + 32 + 7 * 32 + 7
    assert result.flops_per_call == 2 * (32 * features + 7 * 32)
