"""The LIBERO pick-and-place expert (``policies.libero_expert``): its geometry against closed
forms, its goal parsing, and episodes it must solve from standard initial states where the
earlier generic waypoints failed (the bowl in a drawer, a flat box beside a taller can).

The episode tests share built envs (``libero_envs`` in conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

from policies.libero_expert import (  # noqa: E402
    COMFORT_CLEARANCE_M,
    LiberoPickPlaceExpert,
    UnsupportedGoal,
    goal_pairs,
    width_along,
    yaw_rotation,
)
from vla_envs.libero.env import SETTLE_ACTION  # noqa: E402


def test_width_of_a_cube_along_an_axis_and_a_diagonal():
    corners = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=float)
    assert width_along(corners, np.array([1.0, 0.0, 0.0])) == pytest.approx(2.0)
    diagonal = yaw_rotation(np.pi / 4) @ np.array([1.0, 0.0, 0.0])
    assert width_along(corners, diagonal) == pytest.approx(2.0 * np.sqrt(2.0))


def test_yaw_rotation_turns_x_towards_y():
    np.testing.assert_allclose(yaw_rotation(np.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def test_goal_pairs_read_on_and_in_and_refuse_anything_else():
    assert goal_pairs([["On", "bowl_1", "plate_1"], ["in", "milk_1", "basket_1_contain_region"]]) == [
        ("bowl_1", "plate_1"), ("milk_1", "basket_1_contain_region")]
    with pytest.raises(UnsupportedGoal, match=r"\['Open', 'drawer_1'\].*\(On object target\)"):
        goal_pairs([["Open", "drawer_1"]])


def _run(env, init_state: int, steps: int) -> tuple[bool, LiberoPickPlaceExpert]:
    obs, info = env.reset(seed=0, options={"init_state": init_state})
    for _ in range(10):  # LIBERO's settle steps, as evaluation takes them
        obs, *_ = env.step(SETTLE_ACTION)
    expert = LiberoPickPlaceExpert(env)
    expert.reset(info["instruction"])
    for _ in range(steps):
        obs, _, _, _, info = env.step(expert.act(obs)[0])
        if info["is_success"]:
            return True, expert
    return False, expert


def test_the_bowl_in_the_drawer_is_taken_from_the_rim_turned_clear_of_the_drawer_walls(libero_envs):
    solved, expert = _run(libero_envs.get("LIBERO-Spatial", 4), 0, 210)
    grasp = expert.grasps[0]
    assert grasp.clearance_m >= COMFORT_CLEARANCE_M
    assert abs(np.rad2deg(grasp.yaw_rad)) > 10  # the fingers closing along y land on the walls
    assert solved


def test_a_flat_box_beside_a_taller_can_is_grasped_turned_and_put_in_the_basket(libero_envs):
    # init state 1 of LIBERO-Object task 1: the cream cheese 8 cm from the tomato sauce can, on
    # which the palm lands unturned
    solved, expert = _run(libero_envs.get("LIBERO-Object", 1), 1, 270)
    grasp = expert.grasps[0]
    assert grasp.yaw_rad != 0.0 and grasp.clearance_m >= COMFORT_CLEARANCE_M
    assert solved


def test_an_eval_config_takes_the_expert_on_pick_and_place_libero_tasks_and_refuses_the_others(tmp_path):
    from evaluation.run.config import load_eval_config
    from vla_envs.config import ConfigError

    text = "tasks: [{tasks}]\nepisodes: 2\nenv: {{obs_mode: state}}\nbase: {{name: expert, policy: {{kind: expert}}}}\n"
    path = tmp_path / "eval.yaml"
    path.write_text(text.format(tasks="LIBERO-Object-1, LIBERO-Goal-8"))
    assert load_eval_config(path).tasks == ["LIBERO-Object-1", "LIBERO-Goal-8"]
    path.write_text(text.format(tasks="LIBERO-Goal-0, LIBERO-Goal-7"))  # open a drawer, turn on the stove
    with pytest.raises(ConfigError, match=r"no scripted expert for \['LIBERO-Goal-0', 'LIBERO-Goal-7'\]"):
        load_eval_config(path)


def test_the_goal_is_read_from_the_bddl_text_as_libero_parses_it():
    from policies.libero_expert import bddl_goal

    text = "(define (problem x)\n (:objects a b)\n (:goal\n   (And (In a_1 basket_region) (On b_1 plate_1))\n )\n)"
    assert bddl_goal(text) == [["In", "a_1", "basket_region"], ["On", "b_1", "plate_1"]]
    assert bddl_goal("(:goal (Open drawer_1))") == [["Open", "drawer_1"]]
    with pytest.raises(ValueError, match="no \\(:goal"):
        bddl_goal("(define (problem x))")
