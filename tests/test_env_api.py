"""Gymnasium and stable-baselines3 API conformance on every registered task."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import vla_envs
from vla_envs.controllers import CONTROLLERS

from conftest import TASK_IDS


def test_all_tasks_registered():
    assert TASK_IDS == [
        "vla_envs/Door-v0",
        "vla_envs/Lift-v0",
        "vla_envs/NutAssemblySquare-v0",
        "vla_envs/PickPlaceCan-v0",
        "vla_envs/Stack-v0",
    ]
    assert vla_envs.LIBERO_IDS == ["vla_envs/LIBERO-Spatial-v0", "vla_envs/LIBERO-Object-v0", "vla_envs/LIBERO-Goal-v0",
                                   "vla_envs/LIBERO-10-v0", "vla_envs/LIBERO-90-v0"]
    assert vla_envs.registered_ids() == sorted(TASK_IDS + vla_envs.LIBERO_IDS)


@pytest.mark.parametrize("env_id", TASK_IDS)
def test_check_env_state_mode(env_id):
    env = gym.make(env_id)
    try:
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env, warn=True)
        assert env.spec.max_episode_steps == vla_envs.get_task_config(env.unwrapped.task_config.name).max_episode_steps
        obs, info = env.reset(seed=0)
        assert info["instruction"] == env.unwrapped.instruction
        assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_check_env_rgb_mode():
    env = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=64, render_mode="rgb_array", render_size=96)
    try:
        gym_check_env(env.unwrapped)
        sb3_check_env(env, warn=True)
        space = env.observation_space
        assert set(space.spaces) == {"image", "wrist_image", "proprio"}
        assert space["image"].shape == (64, 64, 3) and space["image"].dtype == np.uint8
        assert env.render().shape == (96, 96, 3)
    finally:
        env.close()


def test_state_plus_rgb_has_all_keys():
    env = gym.make("vla_envs/Stack-v0", obs_mode="state+rgb", image_size=32)
    try:
        obs, _ = env.reset(seed=1)
        assert set(obs) == {"state", "image", "wrist_image", "proprio"}
        assert env.observation_space.contains(obs)
        # proprio is the leading block of the full state vector
        np.testing.assert_array_equal(obs["state"][: obs["proprio"].size], obs["proprio"])
    finally:
        env.close()


ACTION_DIMS = {"OSC_POSE": 7, "JOINT_VELOCITY": 8, "JOINT_POSITION": 8, "JOINT_TORQUE": 8, "OSC_POSITION": 4}


def test_every_supported_controller_is_tested():
    assert set(ACTION_DIMS) == set(CONTROLLERS)


@pytest.mark.parametrize("controller, dim", list(ACTION_DIMS.items()))
def test_controllers_shape_action_space(controller, dim):
    env = gym.make("vla_envs/Lift-v0", controller=controller)
    try:
        assert env.action_space.shape == (dim,)
        assert env.action_space.dtype == np.float32
        np.testing.assert_array_equal(env.action_space.low, -1)
        np.testing.assert_array_equal(env.action_space.high, 1)
        env.reset(seed=0)
        obs, *_ = env.step(env.action_space.sample())
        assert obs["state"].dtype == np.float32
        # the arm is driven by the controller asked for, not a default
        arm = env.unwrapped.robosuite_env.robots[0].composite_controller.part_controllers["right"]
        assert arm.name == controller
    finally:
        env.close()


def test_default_controller_is_osc_pose(lift_env):
    assert lift_env.action_space.shape == (7,)
    assert lift_env.unwrapped.controller == "OSC_POSE"


def test_bad_constructor_arguments_are_named():
    with pytest.raises(ValueError, match=r"obs_mode='depth'.*'state'"):
        gym.make("vla_envs/Lift-v0", obs_mode="depth")
    with pytest.raises(ValueError, match=r"controller='FLY'.*OSC_POSE"):
        gym.make("vla_envs/Lift-v0", controller="FLY")
    with pytest.raises(ValueError, match=r"image_size=0"):
        gym.make("vla_envs/Lift-v0", image_size=0)
    with pytest.raises(ValueError, match=r"render_quality='ultra'"):
        gym.make("vla_envs/Lift-v0", obs_mode="rgb", render_quality="ultra")


def test_bad_actions_raise_before_the_simulator(lift_env):
    lift_env.reset(seed=0)
    qpos = lift_env.unwrapped.robosuite_env.sim.data.qpos.copy()
    with pytest.raises(ValueError, match=r"shape \(6,\), expected \(7,\)"):
        lift_env.step(np.zeros(6, np.float32))
    with pytest.raises(ValueError, match=r"non-finite values at indices \[2\]"):
        lift_env.step(np.array([0, 0, np.nan, 0, 0, 0, 0], np.float32))
    np.testing.assert_array_equal(lift_env.unwrapped.robosuite_env.sim.data.qpos, qpos)


def test_make_vec_sync():
    envs = gym.make_vec("vla_envs/Lift-v0", num_envs=2, vectorization_mode="sync")
    try:
        obs, infos = envs.reset(seed=[3, 4])
        assert obs["state"].shape == (2, 60)
        assert list(infos["instruction"]) == [envs.envs[0].unwrapped.instruction] * 2
        obs, rewards, terminated, truncated, infos = envs.step(envs.action_space.sample())
        assert rewards.shape == (2,) and "is_success" in infos
        assert not np.array_equal(obs["state"][0], obs["state"][1])
    finally:
        envs.close()


def test_make_vec_async():
    envs = gym.make_vec("vla_envs/Door-v0", num_envs=2, vectorization_mode="async")
    try:
        obs, _ = envs.reset(seed=0)
        for _ in range(3):
            obs, *_ = envs.step(envs.action_space.sample())
        assert obs["state"].dtype == np.float32 and obs["state"].shape[0] == 2
    finally:
        envs.close()


def test_joint_velocity_controller_tracks_a_velocity_command():
    """robosuite 1.5.2's JOINT_VELOCITY crashes at construction; the suite's fix must move the arm."""
    env = gym.make("vla_envs/Lift-v0", controller="JOINT_VELOCITY", terminate_on_success=False)
    try:
        env.reset(seed=0)
        rs = env.unwrapped.robosuite_env
        joint = rs.robots[0]._ref_joint_pos_indexes[0]
        q0 = rs.sim.data.qpos[joint]
        action = np.zeros(8, np.float32)
        action[0] = 0.5  # joint 0 at +0.25 rad/s (output range +-0.5)
        for _ in range(20):
            env.step(action)
        moved = rs.sim.data.qpos[joint] - q0
        velocity = rs.sim.data.qvel[rs.robots[0]._ref_joint_vel_indexes[0]]
    finally:
        env.close()
    assert moved > 0.1  # 1 s at up to 0.25 rad/s
    assert velocity == pytest.approx(0.25, abs=0.08)
