"""Arm controllers robosuite 1.5 offers for the suite's arms (``vla_envs.robots``), by name.

Task-space controllers (OSC_*) take the same action on every arm; joint-space ones take one
number per arm joint, so their action is one shorter on the 6-joint UR5e than on the 7-joint
arms. Either way the gripper's single dimension (-1 open, +1 closed) comes last.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vla_envs.robots import DEFAULT_ROBOT, arm_joint_count, check_robot

# robosuite 1.5 part-controller names; each takes a normalised [-1, 1] action (plus the gripper).
CONTROLLERS: dict[str, str] = {
    "OSC_POSE": "delta end-effector position (3) + axis-angle rotation (3)",
    "OSC_POSITION": "delta end-effector position (3)",
    "JOINT_VELOCITY": "joint velocity targets (one per arm joint: 7, or 6 on the UR5e)",
    "JOINT_POSITION": "delta joint position targets (one per arm joint)",
    "JOINT_TORQUE": "joint torques (one per arm joint)",
}
DEFAULT_CONTROLLER = "OSC_POSE"
# Arm dimensions of the task-space controllers, the same on every arm; the joint-space
# controllers have one per arm joint (``arm_action_dims``).
TASK_SPACE_ARM_DIMS: dict[str, int] = {"OSC_POSE": 6, "OSC_POSITION": 3}
JOINT_SPACE_CONTROLLERS: tuple[str, ...] = ("JOINT_VELOCITY", "JOINT_POSITION", "JOINT_TORQUE")
assert set(TASK_SPACE_ARM_DIMS) | set(JOINT_SPACE_CONTROLLERS) == set(CONTROLLERS)


def check_controller(name: object) -> str:
    """``name`` if it is one of ``CONTROLLERS``; a ValueError naming the choices otherwise."""
    if not isinstance(name, str) or name not in CONTROLLERS:
        raise ValueError(f"controller={name!r} is not supported: expected one of {sorted(CONTROLLERS)}")
    return name


def arm_action_dims(controller: str, robot: str = DEFAULT_ROBOT) -> int:
    """How many leading action dimensions drive the arm (the gripper's follow).

    For each controller an all-zero arm command asks for no motion: a zero pose or joint delta,
    a zero joint velocity, or no torque beyond robosuite's gravity compensation (the arm then
    coasts)."""
    check_controller(controller)
    if controller in TASK_SPACE_ARM_DIMS:
        check_robot(robot)
        return TASK_SPACE_ARM_DIMS[controller]
    return arm_joint_count(robot)


# Every supported arm's default gripper takes one action dimension (open/close), after the arm's.
GRIPPER_ACTION_DIMS = 1


def action_dims(controller: str, robot: str = DEFAULT_ROBOT) -> int:
    """The size of the action space: the arm's dimensions, then the gripper's."""
    return arm_action_dims(controller, robot) + GRIPPER_ACTION_DIMS


def hold_position_action(controller: str, last_action: np.ndarray, robot: str = DEFAULT_ROBOT) -> np.ndarray:
    """The action that asks ``robot``'s arm for no motion and keeps the gripper as last commanded."""
    held = np.array(last_action, dtype=np.float32, copy=True)
    held[: arm_action_dims(controller, robot)] = 0.0
    return held


def controller_config(name: str, robot: str = DEFAULT_ROBOT) -> dict[str, Any]:
    """The composite controller config robosuite.make expects, with ``name`` driving ``robot``'s
    arm (robosuite fills in the arm's joint count, its gripper and its controller gains)."""
    check_controller(name)
    check_robot(robot)
    from robosuite.controllers import load_part_controller_config
    from robosuite.controllers.composite.composite_controller_factory import (
        refactor_composite_controller_config,
    )

    from vla_envs import robosuite_fixes

    robosuite_fixes.apply()

    part = load_part_controller_config(default_controller=name)
    return refactor_composite_controller_config(part, robot, ["right"])
