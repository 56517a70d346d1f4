"""Arm controllers robosuite 1.5 offers for the Panda, by name."""

from __future__ import annotations

from typing import Any

import numpy as np

# robosuite 1.5 part-controller names; each takes a normalised [-1, 1] action (plus the gripper).
CONTROLLERS: dict[str, str] = {
    "OSC_POSE": "delta end-effector position (3) + axis-angle rotation (3)",
    "OSC_POSITION": "delta end-effector position (3)",
    "JOINT_VELOCITY": "joint velocity targets (7)",
    "JOINT_POSITION": "delta joint position targets (7)",
    "JOINT_TORQUE": "joint torques (7)",
}
DEFAULT_CONTROLLER = "OSC_POSE"
# How many leading action dimensions drive the arm (the gripper's follow). For each of these
# controllers an all-zero arm command asks for no motion: a zero pose or joint delta, a zero
# joint velocity, or no torque beyond robosuite's gravity compensation (the arm then coasts).
ARM_ACTION_DIMS: dict[str, int] = {
    "OSC_POSE": 6,
    "OSC_POSITION": 3,
    "JOINT_VELOCITY": 7,
    "JOINT_POSITION": 7,
    "JOINT_TORQUE": 7,
}
assert set(ARM_ACTION_DIMS) == set(CONTROLLERS)


def check_controller(name: str) -> str:
    """``name`` if it is one of ``CONTROLLERS``; a ValueError naming the choices otherwise."""
    if name not in CONTROLLERS:
        raise ValueError(f"controller={name!r} is not supported: expected one of {sorted(CONTROLLERS)}")
    return name


def hold_position_action(controller: str, last_action: np.ndarray) -> np.ndarray:
    """The action that asks the arm for no motion and keeps the gripper as last commanded."""
    held = np.array(last_action, dtype=np.float32, copy=True)
    held[: ARM_ACTION_DIMS[check_controller(controller)]] = 0.0
    return held


def controller_config(name: str, robot: str = "Panda") -> dict[str, Any]:
    """The composite controller config robosuite.make expects, with ``name`` driving the arm."""
    check_controller(name)
    from robosuite.controllers import load_part_controller_config
    from robosuite.controllers.composite.composite_controller_factory import (
        refactor_composite_controller_config,
    )

    from vla_envs import robosuite_fixes

    robosuite_fixes.apply()

    part = load_part_controller_config(default_controller=name)
    return refactor_composite_controller_config(part, robot, ["right"])
