"""The robosuite arms the suite supports, declared once.

Every place that takes an arm (``gym.make(..., robot=)``, a task file's ``robot``, an eval
config's ``env.robot``, ``controllers.controller_config``) checks it against ``SUPPORTED_ROBOTS``,
and ``tests/test_arms.py`` runs each arm listed here through the env checkers, every controller
and the wrappers' substep energy, so adding an arm is one entry plus a green test run.

An arm is listed when robosuite 1.5.2 builds it on a fixed base with one arm and a parallel
gripper, every controller in ``controllers.CONTROLLERS`` drives it, and it has the
``robot0_eye_in_hand`` camera the task files name as wrist camera. Left out: two-arm robots
(Baxter), humanoids (GR1*), mobile bases (PandaOmron, Tiago, SpotWithArm*) and dexterous hands
(PandaDex*), which need other controllers and another action layout.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_ROBOT = "Panda"


@dataclass(frozen=True)
class ArmSpec:
    """What the suite relies on about an arm (checked against robosuite in tests/test_arms.py)."""

    n_joints: int  # arm joints = joint-space controller action dims (before the gripper's)
    gripper: str  # robosuite's default gripper for the arm (1 action dim: open -1 .. close +1)
    description: str


SUPPORTED_ROBOTS: dict[str, ArmSpec] = {
    "Panda": ArmSpec(7, "PandaGripper", "Franka Emika Panda"),
    "UR5e": ArmSpec(6, "Robotiq85Gripper", "Universal Robots UR5e"),
    "Kinova3": ArmSpec(7, "Robotiq85Gripper", "Kinova Gen3 (7 DoF)"),
    "IIWA": ArmSpec(7, "Robotiq140Gripper", "KUKA LBR iiwa"),
    "Sawyer": ArmSpec(7, "RethinkGripper", "Rethink Robotics Sawyer"),
    "Jaco": ArmSpec(7, "JacoThreeFingerGripper", "Kinova Jaco (7 DoF)"),
    "XArm7": ArmSpec(7, "XArm7Gripper", "UFactory xArm 7"),
}
assert DEFAULT_ROBOT in SUPPORTED_ROBOTS


def check_robot(name: object, field: str = "robot") -> str:
    """``name`` if it is one of ``SUPPORTED_ROBOTS``; a ValueError naming the field, the value and
    the choices otherwise."""
    if not isinstance(name, str) or name not in SUPPORTED_ROBOTS:
        raise ValueError(f"{field}={name!r} is not a supported arm: expected one of {list(SUPPORTED_ROBOTS)}")
    return name


def arm_joint_count(name: str) -> int:
    """How many joints the arm has (6 for the UR5e, 7 for the others)."""
    return SUPPORTED_ROBOTS[check_robot(name)].n_joints
