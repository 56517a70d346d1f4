"""LIBERO tasks behind ``gym.make``: LIBERO's real scenes, its standard initial states, this suite's
seeding and observation layout, both env checkers and the embodied wrappers.

The tests share built envs (``libero_envs`` in conftest.py: one build per task per session).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

import vla_envs  # noqa: E402,F401


@pytest.fixture(scope="module")
def spatial(libero_envs):
    return libero_envs.get("LIBERO-Spatial", 0)


def test_both_env_checkers_pass(spatial):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(spatial.unwrapped, skip_render_check=True)
    sb3_check_env(spatial.unwrapped, warn=False)


def test_a_seed_reproduces_the_placement_and_leaves_numpys_global_stream_alone(spatial):
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first, _ = spatial.reset(seed=3)
    assert np.array_equal(np.random.get_state()[1], before)  # LIBERO's samplers drew from the env's generator
    again, _ = spatial.reset(seed=3)
    other, _ = spatial.reset(seed=4)
    assert np.array_equal(first["state"], again["state"])
    assert not np.array_equal(first["state"], other["state"])


def test_the_standard_initial_states_are_set_exactly(spatial):
    env = spatial.unwrapped
    assert env.init_states.shape == (50, env.init_states.shape[1])
    obs_a, info = spatial.reset(seed=0, options={"init_state": 7})
    assert info["init_state"] == 7 and not info["is_success"]
    assert np.array_equal(env.robosuite_env.sim.get_state().flatten(), env.init_states[7])
    obs_b, _ = spatial.reset(seed=1, options={"init_state": 7})  # the state, not the seed, decides
    assert np.array_equal(obs_a["state"], obs_b["state"])
    obs_c, _ = spatial.reset(seed=0, options={"init_state": 8})
    assert not np.array_equal(obs_a["state"], obs_c["state"])
    _, _, _, _, info = spatial.step(np.zeros(7, np.float32))
    assert info["init_state"] == 8  # on every step: a fixed info layout


@pytest.mark.parametrize("options, message", [
    ({"init_state": 50}, r"options\['init_state'\] = 50: expected an integer from 0 to 49"),
    ({"init_state": True}, r"options\['init_state'\] = True"),
    ({"init_sate": 1}, r"reset options \['init_sate'\] are not known: expected some of \['init_state'\]"),
])
def test_bad_reset_options_are_refused(spatial, options, message):
    # gymnasium 1.4's PassiveEnvChecker counts its first reset as checked before it runs: if that
    # reset raises, the next first step compares with nothing (TypeError). A good reset first keeps
    # the shared env usable by whichever test steps it next.
    spatial.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        spatial.reset(seed=0, options=options)


def test_time_limits_and_instructions_are_the_suites():
    spec = gym.spec("vla_envs/LIBERO-10-v0")
    assert spec.max_episode_steps == 520 and spec.kwargs == {"suite": "libero_10"}
    with pytest.raises(ValueError, match="task index 10 of LIBERO-Object: expected an integer from 0 to 9"):
        gym.make("vla_envs/LIBERO-Object-v0", task_id=10)
    with pytest.raises(ValueError, match="robot='UR5e': LIBERO's scenes are built for the 'Panda'"):
        gym.make("vla_envs/LIBERO-Object-v0", robot="UR5e")


@pytest.mark.parametrize("suite_title, task_id", [("LIBERO-Object", 3), ("LIBERO-Goal", 5), ("LIBERO-10", 2)])
def test_images_and_the_embodied_wrappers_on_other_suites(libero_envs, suite_title, task_id):
    from wrappers import EmbodiedCost

    env = EmbodiedCost(libero_envs.get(suite_title, task_id))
    try:
        obs, info = env.reset(seed=0, options={"init_state": 0})
        assert obs["image"].shape == (64, 64, 3) and obs["image"].dtype == np.uint8 and obs["image"].std() > 5
        assert info["instruction"] == env.unwrapped.libero_task.instruction
        for _ in range(5):
            obs, _, terminated, truncated, info = env.step(np.array([0.3, 0, 0, 0, 0, 0, -1], np.float32))
        assert not (terminated or truncated)
        embodied = info["embodied"]
        assert embodied["energy_j"] > 0 and embodied["ee_path_m"] > 0 and embodied["n_steps"] == 5
    finally:
        env.embodied_probe.close()  # not env.close(): the env is shared (conftest.LiberoEnvs)


def _hand_driven_substeps(env: gym.Env, actions: np.ndarray, options: dict):
    """``test_wrappers_capture.substep_reference`` on ``env``'s own robosuite env (a second build
    would cost seconds): its reset replaces the simulation and with it any wrapper's substep hook."""
    from test_wrappers_capture import substep_reference

    return substep_reference(env.unwrapped, actions, options)


@pytest.mark.parametrize("suite_title, task_id", [("LIBERO-Spatial", 0), ("LIBERO-Object", 3)])
def test_energy_on_libero_equals_an_independent_substep_replay(libero_envs, suite_title, task_id):
    """The wrappers on a LIBERO scene (a table and a floor scene) integrate |tau qd| over every
    substep exactly as a hand-driven robosuite substep loop does, from the same standard
    initial state."""
    from test_wrappers_capture import SEED, _actions

    from wrappers import EmbodiedCost, JointStateRecorder

    options = {"init_state": 0}
    base = libero_envs.get(suite_title, task_id)
    env = JointStateRecorder(EmbodiedCost(base), record_substeps=True)
    actions = _actions(env.action_space, 15)
    env.reset(seed=SEED, options=options)
    for action in actions:
        _, _, _, _, info = env.step(action)
    episode = env.embodied_probe.episode_arrays()
    env.embodied_probe.close()  # not env.close(): the env is shared
    torque, qvel, qpos, ee, dt = _hand_driven_substeps(base, actions, options)
    np.testing.assert_array_equal(episode.qpos, qpos)
    np.testing.assert_array_equal(episode.ee_pos, ee)
    energy = info["embodied"]["energy_j"]
    assert energy > 0.0
    assert energy == pytest.approx(np.abs(torque * qvel).sum() * dt, rel=1e-6)
    assert info["embodied"]["effort_nm2s"] == pytest.approx(np.square(torque).sum() * dt, rel=1e-6)


def test_lean_rendering_leaves_the_physics_bit_identical(spatial):
    """Decimated visual meshes and culling are drawn from a render-only copy of the model: the
    shared (lean) env and a full-quality one follow the same state trajectory."""
    from conftest import LIBERO_ENV_KWARGS

    full = gym.make("vla_envs/LIBERO-Spatial-v0", task_id=0, render_quality="full", **LIBERO_ENV_KWARGS)
    trajectories = {}
    try:
        for quality, env in (("lean", spatial), ("full", full)):
            assert env.unwrapped.render_quality == quality
            obs, _ = env.reset(seed=0, options={"init_state": 1})
            states, images = [obs["state"]], [obs["image"]]
            for action in np.random.default_rng(0).uniform(-1, 1, (6, 7)).astype(np.float32):
                obs, *_ = env.step(action)
                states.append(obs["state"])
                images.append(obs["image"])
            trajectories[quality] = (np.array(states), env.unwrapped.robosuite_env.sim.get_state().flatten(), images)
    finally:
        full.close()
    np.testing.assert_array_equal(trajectories["lean"][0], trajectories["full"][0])
    np.testing.assert_array_equal(trajectories["lean"][1], trajectories["full"][1])
    # the two really rendered differently (shadows, anti-aliasing, meshes)
    assert any(not np.array_equal(a, b) for a, b in zip(trajectories["lean"][2], trajectories["full"][2]))


def test_check_all_resets_a_task_to_its_initial_states_and_steps_it():
    """``python -m vla_envs.libero.check_all``'s check of one task (two initial states, both envs)."""
    from vla_envs.libero.check_all import check_task
    from vla_envs.libero.suites import task

    for env in ("ours", "libero"):
        done, wall = check_task(task("libero_goal", 3), steps=2, env=env, limit=2)
        assert done == 2 and wall > 0
