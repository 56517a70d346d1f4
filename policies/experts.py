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


class _PickPlaceExpert(Policy):
    """Pick an object and put it down at a target: hover, descend, grasp, lift, carry, lower,
    release, retreat. Subclasses say where the object and the target are; with
    ``releases = False`` the expert stops after lifting and holds the object up."""

    action_dim = 7
    chunk_size = 1
    hover_m = 0.10
    carry_height_m = 0.15  # above the release point while carrying
    grasp_steps = 8
    release_steps = 6
    grasp_offset_m = -0.005  # how far below the object's centre the grip site goes
    releases = True

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.phase = "hover"
        self._count = 0
        self._hold: np.ndarray | None = None
        self._last_eef: np.ndarray | None = None
        self._grasp_point: np.ndarray | None = None

    def _eef(self) -> np.ndarray:
        robot = self._rs.robots[0]
        return np.array(self._rs.sim.data.site_xpos[robot.eef_site_id[robot.arms[0]]])

    def _object(self) -> np.ndarray:
        raise NotImplementedError

    def _release_point(self) -> np.ndarray:
        raise NotImplementedError

    def act(self, obs=None) -> np.ndarray:
        eef, obj = self._eef(), self._object()
        action = self._act(eef, obj)
        self._last_eef = eef
        return action

    def _act(self, eef: np.ndarray, obj: np.ndarray) -> np.ndarray:
        if self.phase == "hover":
            target = obj + [0.0, 0.0, self.hover_m]
            if np.linalg.norm(target - eef) < 0.01:
                self.phase = "descend"
            action = _move_action(target, eef, _GRIPPER_OPEN)
        if self.phase == "descend":
            target = obj + [0.0, 0.0, self.grasp_offset_m]
            # reached, or stopped by the table with the fingers around the object
            stalled = self._last_eef is not None and abs(self._last_eef[2] - eef[2]) < 5e-4
            aligned = np.linalg.norm((target - eef)[:2]) < 0.01
            if np.linalg.norm(target - eef) < 0.008 or (stalled and aligned and eef[2] - target[2] < 0.03):
                self.phase, self._count = "grasp", 0
            action = _move_action(target, eef, _GRIPPER_OPEN)
        if self.phase == "grasp":
            self._count += 1
            if self._count >= self.grasp_steps:
                self.phase = "lift"
                self._grasp_point = eef
            action = _move_action(eef, eef, _GRIPPER_CLOSED)
        if self.phase in ("lift", "carry", "lower"):
            place = self._release_point()
            above = place + [0.0, 0.0, self.carry_height_m]
            if self.phase == "lift":
                target = np.array([eef[0], eef[1], above[2]])
                if abs(target[2] - eef[2]) < 0.02 and self.releases:
                    self.phase = "carry"
            if self.phase == "carry":
                target = above
                if np.linalg.norm(target - eef) < 0.015:
                    self.phase = "lower"
            if self.phase == "lower":
                target = place
                if np.linalg.norm(target - eef) < 0.01:
                    self.phase, self._count = "release", 0
            action = _move_action(target, eef, _GRIPPER_CLOSED)
        if self.phase == "release":
            self._count += 1
            if self._count >= self.release_steps:
                self.phase = "retreat"
                self._hold = eef + [0.0, 0.0, 0.10]
            action = _move_action(eef, eef, _GRIPPER_OPEN)
        if self.phase == "retreat":
            action = _move_action(self._hold, eef, _GRIPPER_OPEN)
        return action[None, :].astype(np.float32)


class StackExpert(_PickPlaceExpert):
    """Stack: pick the red cube (A) and set it down on the green cube (B)."""

    def _object(self) -> np.ndarray:
        return np.array(self._rs.sim.data.body_xpos[self._rs.cubeA_body_id])

    def _release_point(self) -> np.ndarray:
        rs = self._rs
        b = np.array(rs.sim.data.body_xpos[rs.cubeB_body_id])
        # cube half-heights: the grip site holds A at its centre
        half_a = rs.cubeA.size[2] if hasattr(rs.cubeA, "size") else 0.02
        half_b = rs.cubeB.size[2] if hasattr(rs.cubeB, "size") else 0.025
        return b + [0.0, 0.0, half_a + half_b + 0.01 + self.grasp_offset_m]


class PickPlaceCanExpert(_PickPlaceExpert):
    """PickPlaceCan: pick the can and drop it into its bin."""

    carry_height_m = 0.05

    def _object(self) -> np.ndarray:
        return np.array(self._rs.sim.data.body_xpos[self._rs.obj_body_id["Can"]])

    def _release_point(self) -> np.ndarray:
        rs = self._rs
        bin_xyz = np.array(rs.target_bin_placements[rs.object_to_id["can"]])
        return bin_xyz + [0.0, 0.0, 0.12]


class LiftExpert(_PickPlaceExpert):
    """Lift: hover above the cube, descend, close the gripper, raise the cube 0.2 m and hold it."""

    carry_height_m = 0.20
    releases = False

    def _object(self) -> np.ndarray:
        return np.array(self._rs.sim.data.body_xpos[self._rs.cube_body_id])

    def _release_point(self) -> np.ndarray:
        return self._grasp_point  # lift straight up from where the cube was grasped


class DoorExpert(Policy):
    """Door: approach the lever horizontally (hand pitched 90°, fingers around the lever),
    grasp it, turn it along its arc about the latch axis until the latch frees (~1 rad), then
    pull the handle along an arc about the door's hinge."""

    action_dim = 7
    chunk_size = 1
    standoff_m = 0.12  # approach the lever from this far in front (+y)
    grasp_steps = 10
    turn_lead_rad = 0.5  # the turning target runs this far ahead of the lever's angle
    turn_max_rad = 1.3
    release_rad = 1.0  # lever angle at which the latch is free
    pull_lead_rad = 0.05  # the pulling target runs this far ahead on the hinge arc
    open_rad = 0.45  # past robosuite's success threshold (0.3 rad)
    pull_gain = 2.0
    approach_steps = 40

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        rs = self._rs
        robot = rs.robots[0]
        self._site = robot.eef_site_id[robot.arms[0]]
        model = rs.sim.model._model
        self._hinge = model.joint("Door_hinge").id
        self._latch = model.joint("Door_latch_joint").id
        from scipy.spatial.transform import Rotation

        self._rotation = Rotation
        start = rs.sim.data.site_xmat[self._site].reshape(3, 3)
        self._goal_rotation = Rotation.from_euler("x", -90, degrees=True).as_matrix() @ start
        self.phase = "stage"
        self._count = 0
        self._grasp_point: np.ndarray | None = None
        self._grasp_rotation: np.ndarray | None = None
        self._pull_height = 0.0

    def act(self, obs=None) -> np.ndarray:
        rs, Rotation = self._rs, self._rotation
        data = rs.sim.data._data
        eef = np.array(data.site_xpos[self._site])
        current = data.site_xmat[self._site].reshape(3, 3)
        handle = np.array(data.site_xpos[rs.door_handle_site_id])
        lever = float(data.qpos[rs.handle_qpos_addr])
        gripper, gain = _GRIPPER_OPEN, 1.0
        if self.phase == "stage":
            target = handle + [0.0, self.standoff_m, 0.0]
            aligned = np.linalg.norm(Rotation.from_matrix(self._goal_rotation @ current.T).as_rotvec()) < 0.1
            if np.linalg.norm(target - eef) < 0.015 and aligned:
                self.phase, self._count = "approach", 0
        if self.phase == "approach":
            target = handle
            self._count += 1
            if np.linalg.norm(target - eef) < 0.01 or self._count > self.approach_steps:
                self.phase, self._count = "grasp", 0
        if self.phase == "grasp":
            target, gripper = eef, _GRIPPER_CLOSED
            self._count += 1
            if self._count >= self.grasp_steps:
                self.phase = "turn"
                self._grasp_point, self._grasp_rotation = eef, self._goal_rotation.copy()
        if self.phase == "turn":
            gripper = _GRIPPER_CLOSED
            if lever > self.release_rad:
                self.phase = "pull"
            else:
                # carry the grasp point (and the hand) round the latch axis, ahead of the lever
                axis_point = np.array(data.xanchor[self._latch])
                turn = Rotation.from_rotvec([0.0, -min(lever + self.turn_lead_rad, self.turn_max_rad), 0.0]).as_matrix()
                target = axis_point + turn @ (self._grasp_point - axis_point)
                target[1] = self._grasp_point[1]
                self._goal_rotation = turn @ self._grasp_rotation
                self._pull_height = target[2]
        if self.phase == "pull":
            gripper, gain = _GRIPPER_CLOSED, self.pull_gain
            hinge_xy = data.xanchor[self._hinge][:2]
            angle = float(data.qpos[rs.hinge_qpos_addr])
            ahead = min(angle + self.pull_lead_rad, self.open_rad) - angle
            c, s = np.cos(ahead), np.sin(ahead)
            radial = eef[:2] - hinge_xy
            target = eef.copy()
            target[:2] = hinge_xy + [c * radial[0] - s * radial[1], s * radial[0] + c * radial[1]]
            target[2] = self._pull_height
        action = _move_action(target, eef, gripper, gain)
        # OSC_POSE rotation input: world-frame axis-angle, 0.5 rad per unit
        rotation_error = Rotation.from_matrix(self._goal_rotation @ current.T).as_rotvec()
        action[3:6] = np.clip(rotation_error / 0.5, -1.0, 1.0)
        return action[None, :].astype(np.float32)
