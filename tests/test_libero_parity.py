"""Parity of this project's LIBERO (robosuite 1.5) with LIBERO as published (robosuite 1.4):
``vla_envs.libero.parity``.

Without the robosuite 1.4 environment: the comparison maths on known arrays, and the scripted
expert that produces the compared actions succeeding here on a LIBERO-Object initial state
(with LIBERO's gripper sign: +1 closes). With it (``.venv-libero14`` or
``$VLA_ENVS_LIBERO14_PYTHON``): one task, one initial state, 30 steps in both stacks; the
initial state, the base pose and the image orientation are the same, the two known behaviour
differences are the only ones (putting both back makes the two stacks agree to 1e-9 m), and
as shipped the end effector diverges by a bounded amount.
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pytest

from vla_envs.libero import parity


# -- the comparison maths (no LIBERO needed) --------------------------------------------------
def test_eef_divergence_is_max_and_final_distance_in_metres():
    ours = np.zeros((4, 3))
    reference = np.array([[0, 0, 0], [0.003, 0.004, 0], [0, 0, 0.01], [0, 0, 0.002]], dtype=float)
    max_m, final_m = parity.eef_divergence_m(ours, reference)
    assert max_m == pytest.approx(0.01) and final_m == pytest.approx(0.002)
    with pytest.raises(ValueError, match=r"shapes \(4, 3\) and \(3, 3\): expected two equal \(T, 3\)"):
        parity.eef_divergence_m(ours, reference[:3])


def test_quat_angle_is_sign_blind_and_in_radians():
    identity = np.array([0.0, 0.0, 0.0, 1.0])  # xyzw
    quarter_turn_z = np.array([0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)])
    assert parity.quat_angle_rad(identity, -identity)[0] == pytest.approx(0.0, abs=1e-7)
    assert parity.quat_angle_rad(identity, quarter_turn_z)[0] == pytest.approx(math.pi / 2)
    with pytest.raises(ValueError, match="expected two equal"):
        parity.quat_angle_rad(identity, np.zeros(3))


def test_image_transform_errors_find_the_flip():
    rng = np.random.default_rng(0)
    upright = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    errors = parity.image_transform_errors(upright, upright[::-1])  # what OpenGL hands back
    assert errors["flip_rows"] == 0.0 and parity.best_transform(errors) == "flip_rows"
    assert parity.best_transform(parity.image_transform_errors(upright, upright[::-1, ::-1])) == "rotate_180"
    with pytest.raises(ValueError, match=r"expected two equal \(H, W, C\)"):
        parity.image_transform_errors(upright, upright[:8])


def test_success_agreement_counts_equal_outcomes():
    assert parity.success_agreement([True, False, True], [True, True, True]) == (2, 3)
    with pytest.raises(ValueError, match="expected as many in both stacks"):
        parity.success_agreement([True], [True, False])


def test_smooth_random_actions_are_seeded_bounded_and_smooth():
    a = parity.smooth_random_actions(120, seed=3)
    assert a.shape == (120, 7) and np.abs(a).max() <= 1.0
    assert np.array_equal(a, parity.smooth_random_actions(120, seed=3))
    assert not np.array_equal(a, parity.smooth_random_actions(120, seed=4))
    step = np.abs(np.diff(a[:, :6], axis=0)).mean()
    white = np.abs(np.diff(np.random.default_rng(3).uniform(-1, 1, (120, 6)), axis=0)).mean()
    assert step < 0.35 * white  # a low-pass, not white noise
    assert set(np.unique(a[:, 6])) == {parity.GRIPPER_OPEN, parity.GRIPPER_CLOSE}


def test_goal_pairs_take_in_and_on_goals_only():
    goal = [["In", "alphabet_soup_1", "basket_1_contain_region"], ["on", "bowl_1", "plate_1"]]
    assert parity.PickPlaceExpert.goal_pairs(goal) == [("alphabet_soup_1", "basket_1_contain_region"),
                                                       ("bowl_1", "plate_1")]
    assert parity.PickPlaceExpert.goal_pairs([["open", "wooden_cabinet_1_middle_region"]]) == []


def test_the_expert_succeeds_here_and_plus_one_closes_the_gripper():
    """LIBERO-Object task 0 ("pick up the alphabet soup and place it in the basket"), standard
    initial state 0: the expert's actions succeed in this project's env."""
    env = parity.make_env("libero_object", 0)
    try:
        episode = parity.run_ours(env, 0, None, expert_steps=250)
    finally:
        env.close()
    assert episode.success[-1], "the scripted expert did not put the soup in the basket"
    closing = np.flatnonzero(episode.actions[:, 6] == parity.GRIPPER_CLOSE)
    assert closing.size > 0
    start = closing[0]
    opening_m = episode.tracks["gripper_qpos"][:, 0] - episode.tracks["gripper_qpos"][:, 1]  # finger gap
    assert opening_m[start + 10] < opening_m[start] - 0.01  # +1 closed the fingers


def test_the_libero_envs_step_like_robosuite_14_by_default():
    """The default env (robosuite_controller="1.4") gives, bit for bit, the trajectory of the
    parity tooling's variant with both 1.4 behaviours put back, across two resets (the controllers
    are rebuilt on each); robosuite_controller="1.5" does not."""
    actions = np.zeros((24, 7))  # a zero rotation (LIBERO's no-op has it), the arm moving, the gripper closing
    actions[:, 0], actions[:, 6], actions[12:, 6] = 0.5, parity.GRIPPER_OPEN, parity.GRIPPER_CLOSE
    env15 = parity.make_env("libero_object", 0)
    shipped = parity.make_env("libero_object", 0, robosuite_controller="1.4")
    try:
        emulated = parity.run_ours(env15, 0, actions, parity.AS_SHIPPED).tracks["eef_pos"]
        plain = parity.run_ours(env15, 0, actions, parity.ROBOSUITE_15).tracks["eef_pos"]
        for _ in range(2):
            shipped.reset(seed=0, options={"init_state": 0})
            rs = shipped.unwrapped.robosuite_env
            track = [parity._record(rs)["eef_pos"]]
            for action in actions:
                shipped.step(action.astype(np.float32))
                track.append(parity._record(rs)["eef_pos"])
            assert np.array_equal(np.asarray(track), emulated)
    finally:
        env15.close()
        shipped.close()
    assert np.abs(plain - emulated).max() > 1e-4
    with pytest.raises(ValueError, match=r"robosuite_controller='1.3': expected one of \('1.4', '1.5'\)"):
        parity.make_env("libero_object", 0, robosuite_controller="1.3")


# -- both stacks (needs the robosuite 1.4 environment) ----------------------------------------
def _libero14_ready() -> bool:
    try:
        python = parity.libero14_python()
    except parity.Libero14Unavailable:
        return False
    probe = subprocess.run([python, "-c", "import robosuite, bddl, importlib.util as u; "
                            "assert robosuite.__version__.startswith('1.4'); assert u.find_spec('libero')"],
                           capture_output=True, timeout=300)
    return probe.returncode == 0


needs_libero14 = pytest.mark.skipif(
    not _libero14_ready(),
    reason="robosuite 1.4 LIBERO environment is not set up: create .venv-libero14 with "
           f"`{parity.SETUP_COMMAND}` (docs/libero.md), or export {parity.PYTHON_ENV}",
)


@needs_libero14
def test_thirty_steps_agree_once_the_two_known_differences_are_put_back():
    from vla_envs.libero.suites import load_init_states, task

    libero_task = task("libero_object", 0)
    state = load_init_states(libero_task.init_states_file)[0]
    actions = np.zeros((30, 7))  # rotation exactly 0 (LIBERO's no-op has it), arm moving in x
    actions[:, 0], actions[:, 6], actions[15:, 6] = 0.5, parity.GRIPPER_OPEN, parity.GRIPPER_CLOSE
    shipped, emulated = parity.ROBOSUITE_15, parity.AS_SHIPPED  # robosuite 1.5's stepping; 1.4's, as shipped
    assert emulated.gripper_per_substep and emulated.hold_orientation_on_zero
    env = parity.make_env("libero_object", 0)
    try:
        ours = {variant.name: parity.run_ours(env, 0, actions, variant) for variant in (shipped, emulated)}
        env.reset(seed=0, options={"init_state": 0})
        frames = parity.first_frames_ours(env, 128)
        controller, base = parity.controller_config_ours(env), parity.base_pose_ours(env)
    finally:
        env.close()
    python = parity.libero14_python()
    bddl = parity._bddl_in(parity._libero14_package(python), "libero_object", libero_task.bddl_file.name)
    reference = parity.run_reference(python, bddl, [state], [actions])
    meta = reference["meta"]
    assert meta["robosuite"].startswith("1.4")

    # the same starting point: state, robot base (the NullMount fix), images up to OpenGL's flip
    assert np.array_equal(reference["state_0"][0][1:], state[1:])
    assert meta["state_size"] == state.size
    assert meta["base"] == base
    for camera in parity.CAMERAS:
        errors = parity.image_transform_errors(frames[camera], reference[f"image_{camera}"])
        assert parity.best_transform(errors) == "flip_rows" and errors["flip_rows"] < 1.0, errors

    # the controllers: the same gains, limits and scaling; the known differences only
    differing = {key for key in controller if controller[key] != meta["controller"].get(key)}
    assert differing <= {"input_ref_frame", "gripper_speed", "gripper_format_action", "lite_physics"}, differing
    assert controller["kp"] == meta["controller"]["kp"] and controller["output_max"] == meta["controller"]["output_max"]

    # with 1.4's gripper ramp and orientation hold put back, the trajectories are the same
    for key in parity.RECORDED:
        assert np.abs(ours[emulated.name].tracks[key] - reference[f"{key}_0"]).max() < 1e-9, key
    max_m, _ = parity.eef_divergence_m(ours[shipped.name].tracks["eef_pos"], reference["eef_pos_0"])
    assert 1e-5 < max_m < 0.02  # robosuite 1.5's own stepping: a measurable, bounded divergence (docs/libero.md)
