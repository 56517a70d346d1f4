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
"""

from __future__ import annotations

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
