"""Run-time fixes for robosuite 1.5.2 bugs the suite depends on (nothing is edited on disk).

- ``JointVelocityController.__init__`` assigns its ``use_torque_compensation`` flag to the
  read-only ``torque_compensation`` property (gravity torques), so constructing it raises
  ``AttributeError``, and ``run_controller`` then tests that torque array for truth.
  ``JointVelocityControllerFixed`` keeps the flag apart and adds the gravity torques when set,
  which is what the upstream code means.
- The Sawyer's first link (``right_l0``) rests on its base link's collision cylinder, and MuJoCo
  does not filter that parent-child contact because the base is welded to the world: contact
  friction holds joint 0 still against the full 80 N m of its actuator, so the arm cannot turn
  at the base. ``apply`` excludes the pair from contacts, as robosuite did for the Jaco's identical
  problem (ARISE-Initiative/robosuite PR #235).
- LIBERO's floor scenes (LIBERO-Object, and some of -Goal, -10, -90) place ``OnTheGroundPanda``,
  whose ``default_base`` is ``None``: robosuite 1.4 read that as "no mount", robosuite 1.5 looks
  the name up in ``BASE_MAPPING`` and calls the error string it gets back (``TypeError: 'str'
  object is not callable``). ``apply_libero`` names robosuite 1.5's ``NullMount``, its "dummy
  mount to signify no mount" (no geometry, zero offset): what 1.4 built.
- LIBERO's demonstrations, and so every LIBERO checkpoint, were recorded on robosuite 1.4, whose
  OSC arm and Panda gripper step differently from 1.5's in two ways (measured by
  ``vla_envs.libero.parity``: docs/libero.md). ``step_like_robosuite_14`` puts both back on a
  built env's controllers (the controllers are rebuilt on every hard reset, so after each).
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np
from robosuite.controllers.parts import generic
from robosuite.controllers.parts.controller import Controller
from robosuite.controllers.parts.generic.joint_vel import JointVelocityController
from robosuite.models.robots.manipulators.sawyer_robot import Sawyer


class JointVelocityControllerFixed(JointVelocityController):
    use_torque_compensation: bool = True

    @property
    def torque_compensation(self) -> np.ndarray:
        """Gravity (bias) torques at the arm's dofs."""
        return self.sim.data.qfrc_bias[self.qvel_index]

    @torque_compensation.setter
    def torque_compensation(self, flag: bool) -> None:
        self.use_torque_compensation = bool(flag)

    def run_controller(self) -> np.ndarray:
        if self.goal_vel is None:
            self.set_goal(np.zeros(self.joint_dim))
        self.update()
        if self.interpolator is not None:
            if self.interpolator.order == 1:
                self.current_vel = self.interpolator.get_interpolated_goal()
        else:
            self.current_vel = np.array(self.goal_vel)

        err = self.current_vel - self.joint_vel
        derr = err - self.last_err
        self.last_err = err
        self.derr_buf.push(derr)
        if not self.saturated:  # anti-windup
            self.summed_err += err

        torques = self.kp * err + self.ki * self.summed_err + self.kd * self.derr_buf.average
        if self.use_torque_compensation:
            torques = torques + self.torque_compensation
        self.torques = self.clip_torques(torques)
        self.saturated = bool(np.sum(np.abs(self.torques - torques)) != 0)
        Controller.run_controller(self)
        return self.torques


_sawyer_init = Sawyer.__init__


def _sawyer_init_without_the_base_contact(self, idn=0):
    _sawyer_init(self, idn=idn)
    body1, body2 = (self.naming_prefix + name for name in ("right_arm_base_link", "right_l0"))
    if not any(e.get("body1") == body1 and e.get("body2") == body2 for e in self.contact.iter("exclude")):
        ET.SubElement(self.contact, "exclude", body1=body1, body2=body2)


def apply() -> None:
    """Install the fixes (idempotent). robosuite's controller factory looks classes up on
    ``generic``; its robot factory builds ``Sawyer`` from the class, whose ``__init__`` is fixed."""
    generic.JointVelocityController = JointVelocityControllerFixed
    Sawyer.__init__ = _sawyer_init_without_the_base_contact


def _no_mount(self) -> str:
    return "NullMount"


def apply_libero() -> None:
    """Install the fix for LIBERO's floor scenes (idempotent; needs LIBERO importable, so it is
    applied by ``vla_envs.libero.installation.prepare`` rather than by ``apply``)."""
    from libero.libero.envs.robots.on_the_ground_panda import OnTheGroundPanda

    OnTheGroundPanda.default_base = property(_no_mount)


def hold_orientation_on_zero_rotation(rs) -> None:
    """robosuite 1.4's OSC updates its orientation goal only when some rotation component of the
    action is non-zero (``math.isclose(x, 0.0)``): a zero rotation keeps the last goal, which after
    LIBERO's ``set_init_state`` is still the reset pose's orientation. robosuite 1.5 re-bases the
    goal on the current orientation every step. LIBERO's no-op ``[0] * 6 + [-1]``, which openpi
    and LeRobot step 10 times before a policy acts, has a zero rotation: in 1.4 the hand turns
    0.95-3.07 degrees during them, in 1.5 0.23-0.77."""
    arm = rs.robots[0].composite_controller.part_controllers["right"]
    original = arm.set_goal

    def set_goal(action):
        held = None if arm.goal_ori is None else np.array(arm.goal_ori)
        original(action)
        if held is not None and all(math.isclose(float(x), 0.0) for x in np.asarray(action)[3:6]):
            arm.goal_ori = held

    arm.set_goal = set_goal


def ramp_gripper_per_substep(rs) -> None:
    """robosuite 1.4's Panda gripper command moves 0.01 towards the action's sign on every physics
    substep (``format_action`` at speed 0.01: 0.25 per 20 Hz control step, a full close in 8
    steps); robosuite 1.5 moves it 0.2 once per control step (10 steps). The composite controller
    keeps the step's gripper action and ramps the command before each substep's control."""
    robot = rs.robots[0]
    composite = robot.composite_controller
    gripper = robot.gripper["right"]
    arm, grip = composite.part_controllers["right"], composite.part_controllers["right_gripper"]
    held: dict[str, np.ndarray] = {}
    original_run = composite.run_controller

    def set_goal(all_action):
        arm.set_goal(all_action[:arm.control_dim])  # looked up now: the orientation hold's, if installed
        held["gripper"] = np.array(all_action[arm.control_dim:])

    def run_controller(enabled_parts):
        if "gripper" in held:
            step = np.array([-1.0, 1.0]) * 0.01 * np.sign(held["gripper"])
            gripper.current_action = np.clip(gripper.current_action + step, -1.0, 1.0)
            grip.set_goal(gripper.current_action)
        return original_run(enabled_parts)

    composite.set_goal = set_goal
    composite.run_controller = run_controller


def step_like_robosuite_14(rs) -> None:
    """Both robosuite 1.4 behaviours on ``rs``'s Panda (a LIBERO env, after its reset): with them,
    the same initial state and actions give robosuite 1.4 LIBERO's trajectory to within 1e-9 m.
    Controllers that already have them (no hard reset since) are left as they are."""
    if "set_goal" in vars(rs.robots[0].composite_controller):
        return
    ramp_gripper_per_substep(rs)
    hold_orientation_on_zero_rotation(rs)
