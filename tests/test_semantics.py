"""terminated / truncated semantics and info contents."""

import gymnasium as gym
import numpy as np
import pytest


def _lift_cube(env, height_m=0.25):
    """Teleport Lift's cube well above the table; robosuite checks success after the next step."""
    rs = env.unwrapped.robosuite_env
    addr = rs.sim.model.get_joint_qpos_addr(rs.cube.joints[0])[0]
    rs.sim.data.qpos[addr + 2] += height_m
    rs.sim.forward()


def test_time_out_is_truncated_never_terminated():
    env = gym.make("vla_envs/Lift-v0", max_episode_steps=5)
    try:
        env.reset(seed=0)
        flags = [env.step(np.zeros(7, np.float32))[2:4] for _ in range(5)]
    finally:
        env.close()
    assert flags[:-1] == [(False, False)] * 4
    assert flags[-1] == (False, True)


def test_registered_time_limit_comes_from_the_task_config():
    env = gym.make("vla_envs/Door-v0")
    try:
        assert env.spec.max_episode_steps == 300
        env.reset(seed=0)
        steps, truncated, terminated = 0, False, False
        while not (truncated or terminated):
            _, _, terminated, truncated, _ = env.step(np.zeros(7, np.float32))
            steps += 1
    finally:
        env.close()
    assert (steps, terminated, truncated) == (300, False, True)


def test_success_terminates_and_reports():
    env = gym.make("vla_envs/Lift-v0")
    try:
        _, info = env.reset(seed=0)
        assert info["is_success"] is False
        _, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert (terminated, truncated, info["is_success"]) == (False, False, False)
        _lift_cube(env)
        _, reward, terminated, truncated, info = env.step(np.zeros(7, np.float32))
        assert (terminated, truncated, info["is_success"]) == (True, False, True)
        assert reward == pytest.approx(1.0)  # robosuite's sparse success reward
    finally:
        env.close()


def test_success_without_termination():
    env = gym.make("vla_envs/Lift-v0", terminate_on_success=False)
    try:
        env.reset(seed=0)
        _lift_cube(env)
        _, _, terminated, _, info = env.step(np.zeros(7, np.float32))
        assert terminated is False and info["is_success"] is True
    finally:
        env.close()


def test_instruction_at_reset_and_on_the_env():
    env = gym.make("vla_envs/PickPlaceCan-v0")
    try:
        _, info = env.reset(seed=0)
        assert info["instruction"] == env.unwrapped.instruction
        assert "can" in info["instruction"]
        _, _, _, _, info = env.step(np.zeros(7, np.float32))
        assert set(info) == {"instruction", "is_success"}  # the same keys as at reset
        assert info["instruction"] == env.unwrapped.instruction
    finally:
        env.close()


def test_no_import_form_registers_the_suite():
    import subprocess
    import sys

    code = (
        "import gymnasium as gym\n"
        "env = gym.make('vla_envs:vla_envs/Lift-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(obs['state'].shape, info['instruction'])\n"
        "env.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    assert "(60,) pick up the red cube" in out.stdout
