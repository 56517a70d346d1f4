"""Scripted experts that read privileged simulator state (OSC_POSE controller).

They return action chunks of shape (1, action_dim), the ``Policy`` convention.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from policies.base import Policy

# OSC_POSE maps a unit action to 0.05 m of end-effector motion per control step.
_OSC_POS_SCALE_M = 0.05
_GRIPPER_OPEN, _GRIPPER_CLOSED = -1.0, 1.0


def _move_action(target: np.ndarray, eef: np.ndarray, gripper: float, gain: float = 1.0) -> np.ndarray:
    action = np.zeros(7)
    action[:3] = np.clip(gain * (target - eef) / _OSC_POS_SCALE_M, -1.0, 1.0)
    action[6] = gripper
    return action


class _SimulatorExpert(Policy):
    """An expert bound to one env: it reads the robosuite simulator behind it at every step."""

    action_dim = 7
    chunk_size = 1

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.reset()


class _PickPlaceExpert(_SimulatorExpert):
    """Pick an object and put it down at a target: hover, descend, grasp, lift, carry, lower,
    release, retreat. Subclasses say where the object and the target are; with
    ``releases = False`` the expert stops after lifting and holds the object up."""

    hover_m = 0.10
    carry_height_m = 0.15  # above the release point while carrying
    grasp_steps = 8
    release_steps = 6
    grasp_offset_m = -0.005  # how far below the object's centre the grip site goes
    releases = True

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


class DoorExpert(_SimulatorExpert):
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

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
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
        g = self._grasp
        turn = Rotation.from_rotvec((lever_rad - g["lever"]) * g["latch_axis"]).as_matrix()
        swing = Rotation.from_rotvec((hinge_rad - g["hinge"]) * g["hinge_axis"]).as_matrix()
        on_lever = g["latch_anchor"] + turn @ (g["point"] - g["latch_anchor"])
        point = g["hinge_anchor"] + swing @ (on_lever - g["hinge_anchor"])
        return point, swing @ turn @ g["rotation"]

    def act(self, obs=None) -> np.ndarray:
        rs = self._rs
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


def _wrap_angle(angle: float, period: float = 2 * np.pi) -> float:
    """``angle`` wrapped into [-period/2, period/2)."""
    return float((angle + period / 2) % period - period / 2)


def _hand_down(yaw: float) -> np.ndarray:
    """Rotation of the Panda grip site pointing straight down with its x axis (the direction
    the fingers close along) at ``yaw`` about the world z axis."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])


class NutAssemblySquareExpert(_SimulatorExpert):
    """NutAssemblySquare: take the square nut by its handle, turn it square to the peg, carry it
    above the peg with its hole centred on it, lower it over the peg and let go.

    Success (robosuite ``on_peg``) wants the nut's centre within 3 cm of the peg's axis in x and
    y, below 5 cm above the table, and the hand more than ~4 cm from the nut's centre (the handle
    is 5.4 cm out, so holding it counts). The hole is 4.55 cm across and the peg 3.2 cm: square to
    each other there is 6.75 mm of play a side, at 45 degrees almost none, so the nut's yaw has to
    be brought to a multiple of 90 degrees and its centre to within a few mm of the peg's axis.

    Reach and wrist range decide the rest. The nut goes on with its handle toward the robot (nut
    yaw 180 degrees): with the handle pointing away or sideways the hand is 0.79-0.84 m out from
    the base, at full stretch above the peg, and the arm jams there. The nut lies at any yaw, so
    the fingers take the handle from whichever side keeps the hand's pre-grasp turn within
    100 degrees of its start, and the hand ends either at its start yaw or half a turn from it
    (joint 7 has room for that one way only). The turn in hand, up to ~280 degrees, is done while
    lifting and at a roomy spot short of the peg, rate-limited so the nut does not slip. All of
    it runs closed loop on the simulator's nut pose, so executed-action noise (DART) is
    corrected; if the nut drops the expert grasps it again, and if it catches on the peg's top
    it is raised and lined up again."""

    hover_m = 0.06  # above the handle before descending
    handle_out_m = 0.008  # grasp this far out along the handle, clear of the ring's wall
    grasp_steps = 8
    release_steps = 4
    carry_clearance_m = 0.04  # nut bottom above the peg's top while carrying
    align_tol_m = 0.003  # nut centre off the peg's axis before lowering
    yaw_tol_rad = 0.05
    release_z_m = 0.87  # let go once the nut's centre is below this (on_peg: table + 0.05)
    kp, kd = 1.5, 1.0  # translation gains on the position error and on the last step's motion
    free_yaw_rate_rad = 0.4  # largest yaw step asked of the hand, empty and holding the nut
    held_yaw_rate_rad = 0.3
    grasp_yaw_max_rad = np.radians(100)  # the hand's yaw from its start when grasping
    turn_clear_m = 0.06  # start turning the nut once it is this far above the table
    turn_back_m = 0.18  # turn the nut this far short of the peg (toward the robot)
    turn_tol_rad = 0.3  # ... until its yaw is this close
    lower_step_m = 0.02  # lower the nut toward a point this far below it
    stuck_steps = 6  # lowering without the nut going down: it caught on the peg's top

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.phase = "hover"
        self._count = 0
        self._home_yaw: float | None = None  # the hand's yaw at the first step
        self._yaw = 0.0  # the hand's yaw, unwrapped
        self._prev_eef: np.ndarray | None = None
        self._prev_nut_z: float | None = None
        self._hold: np.ndarray | None = None

    def _plan(self, nut_yaw: float) -> None:
        """Pick the side the fingers take the handle from, which fixes the hand's yaw at the
        grasp (``_u_grasp``) and on the peg (``_u_place``), both relative to its start yaw."""
        here = self._yaw - self._home_yaw
        best = None
        # hand yaw minus nut yaw while holding it, and the hand's yaw with the nut at 180 degrees
        for offset, u_place in ((-np.pi / 2, 0.0), (np.pi / 2, np.pi)):
            u_grasp = _wrap_angle(nut_yaw + offset - self._home_yaw)
            if abs(u_grasp) > self.grasp_yaw_max_rad:
                continue
            cost = abs(u_grasp - here) + abs(u_place - u_grasp)
            if best is None or cost < best[0]:
                best = (cost, u_grasp, u_place)
        _, self._u_grasp, self._u_place = best  # one side is always within 90 degrees

    def act(self, obs=None) -> np.ndarray:
        rs = self._rs
        data, model = rs.sim.data, rs.sim.model
        robot = rs.robots[0]
        site = robot.eef_site_id[robot.arms[0]]
        eef = np.array(data.site_xpos[site])
        current = np.array(data.site_xmat[site]).reshape(3, 3)
        yaw = float(np.arctan2(current[1, 0], current[0, 0]))
        nut_body = rs.obj_body_id[rs.nuts[rs.nut_id].name]
        nut = np.array(data.body_xpos[nut_body])
        nut_x = np.array(data.body_xmat[nut_body]).reshape(3, 3)[:, 0]  # along the handle
        nut_yaw = float(np.arctan2(nut_x[1], nut_x[0]))
        handle = np.array(data.site_xpos[rs.object_site_ids[rs.nut_id]])
        peg_body = (rs.peg1_body_id, rs.peg2_body_id)[rs.nut_id]
        peg = np.array(data.body_xpos[peg_body])
        peg_top = peg[2] + float(model.geom_size[model.body_geomadr[peg_body]][2])
        table_z = float(rs.table_offset[2])
        if self._home_yaw is None:
            self._home_yaw = self._yaw = yaw
            self._plan(nut_yaw)
        self._yaw += _wrap_angle(yaw - self._yaw)
        u = self._yaw - self._home_yaw
        target, gripper = eef, _GRIPPER_OPEN
        turn, turn_rate = 0.0, self.free_yaw_rate_rad  # wanted change of the hand's yaw

        if self.phase in ("lift", "align", "lower") and np.linalg.norm(handle - eef) > 0.05:
            self.phase = "hover"  # the nut slipped out: open and take it again
            self._plan(nut_yaw)
        if self.phase in ("hover", "descend"):
            turn = self._home_yaw + self._u_grasp - self._yaw
            grasp = handle + self.handle_out_m * nut_x
            if self.phase == "hover":
                target = grasp + [0.0, 0.0, self.hover_m]
                if np.linalg.norm(target - eef) < 0.01 and abs(turn) < self.yaw_tol_rad:
                    self.phase = "descend"
            if self.phase == "descend":
                target = grasp
                # reached, or stopped by the table with the fingers around the handle
                stalled = self._prev_eef is not None and abs(self._prev_eef[2] - eef[2]) < 5e-4
                if np.linalg.norm(target - eef) < 0.006 or (stalled and eef[2] - grasp[2] < 0.02):
                    self.phase, self._count = "grasp", 0
        if self.phase == "grasp":
            gripper = _GRIPPER_CLOSED
            self._count += 1
            if self._count >= self.grasp_steps:
                self.phase = "lift"
        if self.phase in ("lift", "align", "lower"):
            gripper = _GRIPPER_CLOSED
            hand_off_nut = eef - nut
            carry_z = peg_top + 0.01 + self.carry_clearance_m  # the nut is 2 cm thick
            yaw_err = _wrap_angle(np.pi - nut_yaw)
            if self.phase != "lift" or nut[2] > table_z + self.turn_clear_m:
                # follow the nut's own yaw near the end, the planned way round before that
                near = abs(u + yaw_err - self._u_place) < 1.0
                turn, turn_rate = (yaw_err if near else self._u_place - u), self.held_yaw_rate_rad
            if self.phase == "lift":
                target = np.array([eef[0], eef[1], carry_z + hand_off_nut[2]])
                if nut[2] > carry_z - 0.02:
                    self.phase = "align"
            if self.phase == "align":
                short = self.turn_back_m if abs(yaw_err) > self.turn_tol_rad else 0.0
                target = np.array([peg[0] - short, peg[1], carry_z]) + hand_off_nut
                if (
                    np.linalg.norm((peg - nut)[:2]) < self.align_tol_m
                    and abs(yaw_err) < self.yaw_tol_rad
                    and abs(carry_z - nut[2]) < 0.01
                ):
                    self.phase, self._count = "lower", 0
            if self.phase == "lower":
                # step down rather than ram: pressed onto the peg's top the arm folds up badly
                target = np.array([peg[0], peg[1], max(nut[2] - self.lower_step_m, table_z)]) + hand_off_nut
                sinking = self._prev_nut_z is not None and self._prev_nut_z - nut[2] > 1e-3
                self._count = 0 if sinking else self._count + 1
                if nut[2] < self.release_z_m:
                    self.phase, self._count = "release", 0
                elif self._count >= self.stuck_steps:
                    self.phase = "align"  # caught on the peg's top: lift and line up again
        if self.phase == "release":
            self._count += 1
            if self._count >= self.release_steps:
                self.phase = "retreat"
                self._hold = eef + [0.0, 0.0, 0.10]
        if self.phase == "retreat":
            target = self._hold

        action = np.zeros(7)
        velocity = np.zeros(3) if self._prev_eef is None else eef - self._prev_eef
        action[:3] = np.clip((self.kp * (target - eef) - self.kd * velocity) / _OSC_POS_SCALE_M, -1.0, 1.0)
        # OSC_POSE rotation input: world-frame axis-angle, 0.5 rad per unit; the yaw step is
        # limited so a long turn goes the planned way round
        goal = _hand_down(self._yaw + float(np.clip(turn, -turn_rate, turn_rate)))
        action[3:6] = np.clip(Rotation.from_matrix(goal @ current.T).as_rotvec() / 0.5, -1.0, 1.0)
        action[6] = gripper
        self._prev_eef, self._prev_nut_z = eef, float(nut[2])
        return action[None, :].astype(np.float32)


EXPERTS: dict[str, type[Policy]] = {
    "Lift": LiftExpert,
    "Stack": StackExpert,
    "PickPlaceCan": PickPlaceCanExpert,
    "Door": DoorExpert,
    "NutAssemblySquare": NutAssemblySquareExpert,
}


def has_expert(task: str) -> bool:
    """Whether ``task`` has a scripted expert: the suite's five tasks, and the LIBERO tasks whose
    goal is made of ``On``/``In`` predicates (``policies.libero_expert``; read from the task's
    BDDL file, without building the env)."""
    if task in EXPERTS:
        return True
    from policies.libero_expert import supports_task

    return supports_task(task)


def expert_for_task(task: str, env) -> Policy:
    """The scripted expert of ``task`` (a suite task name such as ``"Lift"``, or a LIBERO task
    such as ``"LIBERO-Object-1"``), bound to ``env``."""
    if task in EXPERTS:
        return EXPERTS[task](env)
    if has_expert(task):
        from policies.libero_expert import LiberoPickPlaceExpert

        return LiberoPickPlaceExpert(env)
    raise ValueError(f"task={task!r}: no scripted expert; expected one of {sorted(EXPERTS)} or a LIBERO task whose "
                     f"goal is (On|In object target)")
