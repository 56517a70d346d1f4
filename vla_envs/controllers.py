"""Arm controllers robosuite 1.5 offers for the Panda, by name."""

from __future__ import annotations

from typing import Any

# robosuite 1.5 part-controller names; each takes a normalised [-1, 1] action (plus the gripper).
CONTROLLERS: dict[str, str] = {
    "OSC_POSE": "delta end-effector position (3) + axis-angle rotation (3)",
    "OSC_POSITION": "delta end-effector position (3)",
    "JOINT_VELOCITY": "joint velocity targets (7)",
    "JOINT_POSITION": "delta joint position targets (7)",
    "JOINT_TORQUE": "joint torques (7)",
}
DEFAULT_CONTROLLER = "OSC_POSE"


def check_controller(name: str) -> str:
    """``name`` if it is one of ``CONTROLLERS``; a ValueError naming the choices otherwise."""
    if name not in CONTROLLERS:
        raise ValueError(f"controller={name!r} is not supported: expected one of {sorted(CONTROLLERS)}")
    return name


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
