"""Scripted experts that read privileged simulator state (OSC_POSE controller).

They return action chunks of shape (1, action_dim), the ``Policy`` convention.
"""

from __future__ import annotations

import numpy as np

from policies.base import Policy

# OSC_POSE maps a unit action to 0.05 m of end-effector motion per control step.
_OSC_POS_SCALE_M = 0.05
_GRIPPER_OPEN, _GRIPPER_CLOSED = -1.0, 1.0


def _move_action(target: np.ndarray, eef: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    action = np.zeros(7)
    action[:3] = np.clip(gain * (target - eef) / _OSC_POS_SCALE_M, -1.0, 1.0)
    action[6] = gripper
    return action


class LiftExpert(Policy):
    """Lift: hover above the cube, descend, close the gripper, raise the cube 0.2 m."""

    action_dim = 7
    chunk_size = 1

    hover_m = 0.10
    lift_m = 0.20
    grasp_steps = 8

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.phase = "hover"
        self._grasp_count = 0
        self._lift_target: np.ndarray | None = None

    def _state(self) -> tuple[np.ndarray, np.ndarray]:
        rs = self._rs
        cube = np.array(rs.sim.data.body_xpos[rs.cube_body_id])
        robot = rs.robots[0]
        eef = np.array(rs.sim.data.site_xpos[robot.eef_site_id[robot.arms[0]]])
        return cube, eef

    def act(self, obs=None) -> np.ndarray:
        cube, eef = self._state()
        if self.phase == "hover":
            target = cube + [0.0, 0.0, self.hover_m]
            if np.linalg.norm(target - eef) < 0.01:
                self.phase = "descend"
            action = _move_action(target, eef, _GRIPPER_OPEN)
        if self.phase == "descend":
            target = cube + [0.0, 0.0, -0.005]
            if np.linalg.norm((target - eef)[:3]) < 0.008:
                self.phase = "grasp"
            action = _move_action(target, eef, _GRIPPER_OPEN)
        if self.phase == "grasp":
            self._grasp_count += 1
            if self._grasp_count >= self.grasp_steps:
                self.phase = "lift"
                self._lift_target = eef + [0.0, 0.0, self.lift_m]
            action = _move_action(eef, eef, _GRIPPER_CLOSED)
        if self.phase == "lift":
            action = _move_action(self._lift_target, eef, _GRIPPER_CLOSED)
        return action[None, :].astype(np.float32)
