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
    """Door: approach the lever along the door's normal (hand pitched 90°, fingers around the
    lever), grasp it, turn it about the latch axis until the latch tip clears the frame, then
    pull the door open about its hinge while holding the lever turned.

    The hand is driven along a kinematic model of the door captured at the grasp: the grasp
    point and hand orientation are carried round the latch axis by the wanted lever angle and
    then round the hinge axis by the wanted door angle. This matters because the door has a
    random yaw (up to 0.25 rad): turning about the world y axis instead of the real latch axis
    drags the door ajar while the lever turns, the latch tip then jams against the frame post
    and the door sticks near 0.04 rad. So the turn uses the real axis, the door is held shut
    until the latch is free, and the lever is kept turned while the door swings."""

    action_dim = 7
    chunk_size = 1
    standoff_m = 0.12  # approach the lever from this far in front, along the door's normal
    grasp_steps = 10
    approach_steps = 40
    turn_lead_rad = 0.5  # the wanted lever angle runs this far ahead of the lever's angle
    turn_max_rad = 1.5  # the latch joint's limit is 1.57 rad
    # The latch tip only clears the frame post once the lever is past ~1.16 rad (door_lock.xml
    # geometry); pulling earlier wedges the tip against the post and the door stays shut.
    release_rad = 1.25
    pull_lead_rad = 0.05  # the wanted door angle runs this far ahead of the hinge's angle
    open_rad = 0.45  # past robosuite's success threshold (0.3 rad)
    pull_gain = 2.0

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        from scipy.spatial.transform import Rotation

        self._rotation = Rotation
        rs = self._rs
        robot = rs.robots[0]
        self._site = robot.eef_site_id[robot.arms[0]]
        model, data = rs.sim.model._model, rs.sim.data._data
        self._hinge = model.joint("Door_hinge").id
        self._latch = model.joint("Door_latch_joint").id
        # The door is placed with a random yaw: face it square by turning the hand about z so
        # its pointing direction (pitched from straight down to horizontal) is the latch axis.
        into_door = np.array(data.xaxis[self._latch])
        yaw = np.arctan2(into_door[0], -into_door[1])
        start = data.site_xmat[self._site].reshape(3, 3)
        pitch = Rotation.from_euler("x", -90, degrees=True).as_matrix()
        self._goal_rotation = Rotation.from_euler("z", yaw).as_matrix() @ pitch @ start
        self.phase = "stage"
        self._count = 0
        self._grasp: dict | None = None

    def _door_pose(self, lever_rad: float, hinge_rad: float) -> tuple[np.ndarray, np.ndarray]:
        """Where the grasp point and the hand would be with the lever and door at these angles."""
        g, Rotation = self._grasp, self._rotation
        turn = Rotation.from_rotvec((lever_rad - g["lever"]) * g["latch_axis"]).as_matrix()
        swing = Rotation.from_rotvec((hinge_rad - g["hinge"]) * g["hinge_axis"]).as_matrix()
        on_lever = g["latch_anchor"] + turn @ (g["point"] - g["latch_anchor"])
        point = g["hinge_anchor"] + swing @ (on_lever - g["hinge_anchor"])
        return point, swing @ turn @ g["rotation"]

    def act(self, obs=None) -> np.ndarray:
        rs, Rotation = self._rs, self._rotation
        data = rs.sim.data._data
        eef = np.array(data.site_xpos[self._site])
        current = data.site_xmat[self._site].reshape(3, 3)
        handle = np.array(data.site_xpos[rs.door_handle_site_id])
        lever = float(data.qpos[rs.handle_qpos_addr])
        hinge = float(data.qpos[rs.hinge_qpos_addr])
        gripper, gain = _GRIPPER_OPEN, 1.0
        if self.phase == "stage":
            target = handle - self.standoff_m * np.array(data.xaxis[self._latch])
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
                self._grasp = {
                    "point": eef,
                    "rotation": self._goal_rotation.copy(),
                    "lever": lever,
                    "hinge": hinge,
                    "latch_axis": np.array(data.xaxis[self._latch]),
                    "latch_anchor": np.array(data.xanchor[self._latch]),
                    "hinge_axis": np.array(data.xaxis[self._hinge]),
                    "hinge_anchor": np.array(data.xanchor[self._hinge]),
                }
        if self.phase in ("turn", "pull"):
            gripper = _GRIPPER_CLOSED
            if self.phase == "turn" and lever > self.release_rad:
                self.phase = "pull"
            # keep turning during the pull too, so the latch tip cannot drop back onto the post
            lever_goal = min(lever + self.turn_lead_rad, self.turn_max_rad)
            if self.phase == "turn":
                hinge_goal = self._grasp["hinge"]  # keep the door shut so the latch tip turns freely
            else:
                hinge_goal, gain = min(hinge + self.pull_lead_rad, self.open_rad), self.pull_gain
            target, self._goal_rotation = self._door_pose(lever_goal, hinge_goal)
        action = _move_action(target, eef, gripper, gain)
        # OSC_POSE rotation input: world-frame axis-angle, 0.5 rad per unit
        rotation_error = Rotation.from_matrix(self._goal_rotation @ current.T).as_rotvec()
        action[3:6] = np.clip(rotation_error / 0.5, -1.0, 1.0)
        return action[None, :].astype(np.float32)


EXPERTS: dict[str, type[Policy]] = {
    "Lift": LiftExpert,
    "Stack": StackExpert,
    "PickPlaceCan": PickPlaceCanExpert,
    "Door": DoorExpert,
}


def expert_for_task(task: str, env) -> Policy:
    """The scripted expert of ``task`` (a suite task name such as ``"Lift"``), bound to ``env``."""
    try:
        return EXPERTS[task](env)
    except KeyError:
        raise ValueError(f"task={task!r}: no scripted expert; expected one of {sorted(EXPERTS)}") from None
