"""Bad actions, unstable simulations, re-making a wrapped env from its spec, stacking rules,
and the lifetime rules of the probe's simulator hooks."""

import copy
import gc
import pickle

import gymnasium as gym
import numpy as np
import pytest

from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder


@pytest.mark.parametrize("env_id", ["Pusher-v5", "vla_envs/Lift-v0"])
def test_bad_actions_raise_before_reaching_the_simulator(env_id):
    env = JointStateRecorder(EmbodiedCost(gym.make(env_id)))
    env.reset(seed=0)
    env.step(np.zeros(env.action_space.shape, np.float32))
    data = env.embodied_probe.readout.data
    qpos, time_s = data.qpos.copy(), data.time
    bad = np.zeros(env.action_space.shape, np.float32)
    bad[3] = np.nan
    with pytest.raises(ValueError, match=r"non-finite values at indices \[3\]"):
        env.step(bad)
    bad[3] = np.inf
    with pytest.raises(ValueError, match=r"non-finite values at indices \[3\]"):
        env.step(bad)
    with pytest.raises(ValueError, match=r"action has shape \(2,\), expected \(7,\)"):
        env.step(np.zeros(2, np.float32))
    np.testing.assert_array_equal(data.qpos, qpos)
    assert data.time == time_s
    assert env.embodied_probe.n_recorded_steps == 1  # nothing recorded for the rejected actions
    env.close()


def test_unstable_simulation_truncates_and_keeps_the_recording(tmp_path):
    env = EmbodiedCost(JointStateRecorder(gym.make("Pusher-v5"), out_dir=tmp_path))
    env.reset(seed=0)
    for _ in range(5):
        _, _, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert info["sim_unstable"] is False and not truncated
    env.unwrapped.data.qvel[2] = 1e30  # blows up: MuJoCo warns and resets its data
    _, _, terminated, truncated, info = env.step(np.zeros(7, np.float32))
    assert truncated and not terminated and info["sim_unstable"] is True
    recorder = env.env
    episode = recorder.last_episode
    assert episode.metadata["end_reason"] == "sim_unstable" and episode.n_steps == 6
    assert [p.name for p in recorder.written_paths] == ["episode_000000.parquet"]
    env.reset(seed=1)
    _, _, _, truncated, info = env.step(np.zeros(7, np.float32))
    assert info["sim_unstable"] is False and not truncated
    env.close()


def test_wrapped_env_is_remade_from_its_spec(tmp_path):
    env = EfficiencyReward(
        JointStateRecorder(EmbodiedCost(gym.make("Reacher-v5")), out_dir=tmp_path, record_substeps=True),
        success_bonus=2.0,
    )
    names = [w.name for w in env.spec.additional_wrappers]
    assert names[-3:] == ["EmbodiedCost", "JointStateRecorder", "EfficiencyReward"]
    remade = gym.make(env.spec)
    assert isinstance(remade, EfficiencyReward) and remade.config.success_bonus == 2.0
    recorder = remade.env
    assert isinstance(recorder, JointStateRecorder) and recorder.record_substeps and recorder.out_dir == tmp_path
    a, _ = env.reset(seed=3)
    b, _ = remade.reset(seed=3)
    np.testing.assert_array_equal(a, b)
    env.close()
    remade.close()


def test_stacked_wrappers_share_one_probe_and_refuse_conflicting_settings():
    inner = EmbodiedCost(gym.make("Reacher-v5"), joint_names=["joint0", "joint1"])
    outer = JointStateRecorder(inner)
    assert outer.embodied_probe is inner.embodied_probe
    with pytest.raises(ValueError, match="already measured with joint_names"):
        EfficiencyReward(outer, joint_names=["joint0"])
    outer.close()


def test_step_before_reset_raises_instead_of_running_unbound_kernels():
    env = EmbodiedCost(gym.make("Pusher-v5").unwrapped)  # no OrderEnforcing to catch it first
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.zeros(7, np.float32))
    env.close()


def test_probe_refuses_copies_that_would_share_its_simulator_hooks():
    env = JointStateRecorder(EmbodiedCost(gym.make("Pusher-v5")))
    env.reset(seed=0)
    for clone in (copy.deepcopy, pickle.dumps):
        with pytest.raises(TypeError, match="hooked into a live simulator and cannot be copied or pickled"):
            clone(env.embodied_probe)
    env.close()


def test_the_hook_keeps_its_arrays_alive_when_only_the_bare_env_is_kept():
    env = EfficiencyReward(JointStateRecorder(EmbodiedCost(gym.make("Pusher-v5"))))
    env.reset(seed=0)
    base = env.unwrapped
    del env
    gc.collect()
    junk = [np.ones((64, 64)) for _ in range(200)]  # reuse whatever memory was freed
    for _ in range(50):  # still hooked (never closed): the kernels must write only to live arrays
        base.step(np.zeros(7, np.float32))
    assert all(float(block.sum()) == 64 * 64 for block in junk)
    assert np.isfinite(base.data.qpos).all()
