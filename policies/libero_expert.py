"""A scripted pick-and-place expert for LIBERO, planned from the task's BDDL goal and the scene.

``LiberoPickPlaceExpert(env)`` reads the goal of the LIBERO task behind ``env`` (a
``vla_envs.libero.env.LiberoEnv``, possibly wrapped): every predicate must be ``(On object
target)`` or ``(In object target)``, which covers LIBERO-Spatial, LIBERO-Object and the
pick-and-place tasks of LIBERO-Goal. For each (object, target) pair it plans, from the simulator
at the moment it reaches for the object:

- **where to grasp**: a yaw of the hand (a rotation about the vertical) and a point, chosen among
  ``GRASP_YAWS_DEG`` so that the open fingers fit around the object (its width across the
  fingers, measured from its collision geometry) and nothing but the object lies under the hand
  and fingers at the grasp height (rays cast down through the gripper's own collision boxes);
  the smallest rotation that clears wins. Bowls and plates are held at the rim, one finger
  inside.
- **how deep**: the object's middle, but never so low that the palm meets the object's top or
  the fingertips the surface it stands on (tall bottles are held by the neck).
- then the waypoints: above the grasp, down (until reached or blocked), close, up to the carry
  height (the carried object clear of everything under its straight path to the target, by rays
  again), level to above the target, down to the release height (the carried object's bottom just
  above the target), open, up.

Positions follow a clipped proportional law on the end-effector error (OSC_POSE delta actions,
``POS_M_PER_UNIT`` metres per unit per step); orientation is held at the initial one turned by
the grasp yaw. ``act`` returns a (1, 7) chunk; once the plan is done it holds still with the
gripper open. The expert reads privileged state, as the suite's other experts do; demonstrations
add executed-action noise around it (``vla_envs.libero.demos``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from policies.base import Policy
from vla_envs.errors import VlaEnvsError

# OSC_POSE delta actions in LIBERO's controller configuration: one unit is this much motion per
# control step (robosuite's default_panda output_max)
POS_M_PER_UNIT = 0.05
ROT_RAD_PER_UNIT = 0.5
GRIPPER_OPEN, GRIPPER_CLOSE = -1.0, 1.0
GOAL_PREDICATES = ("on", "in")
# hand yaws tried for a grasp, from the preferred one outwards
GRASP_YAWS_DEG = (0, 15, -15, 30, -30, 45, -45, 60, -60, 75, -75, 90)
ROBOT_BODY_PREFIXES = ("robot0_", "gripper0_", "mount0_")
FINGER_MARGIN_M = 0.006  # free space left between each open finger and the object
PALM_MARGIN_M = 0.006  # between the palm and the object's top at the grasp
TIP_MARGIN_M = 0.004  # between the fingertips and the object's bottom
COMFORT_CLEARANCE_M = 0.010  # what should lie between the gripper and anything else under it
SUPPORT_TOLERANCE_M = 0.002  # surfaces this close to the object's bottom are what it stands on
RIM_GRASPED = ("bowl", "plate")  # objects held at the rim, one finger inside
RIM_DEPTH_M = 0.015  # a bowl is held this far below its rim
RIM_FRACTION = 0.8  # ... this far out from its centre, in radii


class UnsupportedGoal(VlaEnvsError, ValueError):
    """The task's goal has a predicate this expert cannot achieve (open, turnon, ...)."""


def goal_pairs(goal_state: list[list[str]]) -> list[tuple[str, str]]:
    """The (object, target) pairs of a LIBERO goal made of ``On``/``In`` predicates only."""
    pairs = []
    for predicate in goal_state:
        if len(predicate) != 3 or predicate[0].lower() not in GOAL_PREDICATES:
            raise UnsupportedGoal(f"goal predicate {predicate!r}: the pick-and-place expert handles only "
                                  f"(On object target) and (In object target)")
        pairs.append((predicate[1], predicate[2]))
    return pairs


def bddl_goal(text: str) -> list[list[str]]:
    """The goal predicates of a BDDL problem's text, as LIBERO's parser lists them
    (``[["In", "cream_cheese_1", "basket_1_contain_region"]]``), without importing LIBERO."""
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    start = next((i for i in range(len(tokens) - 1) if tokens[i] == "(" and tokens[i + 1].lower() == ":goal"), None)
    if start is None:
        raise ValueError("BDDL problem: no (:goal ...) section")
    stack: list[list] = []
    for token in tokens[start:]:
        if token == "(":
            stack.append([])
        elif token == ")":
            done = stack.pop()
            if not stack:
                goal = done[1] if len(done) > 1 else []
                break
            stack[-1].append(done)
        else:
            stack[-1].append(token)
    else:
        raise ValueError("BDDL problem: the (:goal ...) section is not closed")
    if goal and isinstance(goal[0], str) and goal[0].lower() == "and":
        return [predicate for predicate in goal[1:]]
    return [goal]


def supports_task(task: str) -> bool:
    """Whether ``task`` (``LIBERO-Object-1``) has a goal this expert achieves, from its BDDL file."""
    from vla_envs.libero.suites import parse_task_name
    from vla_envs.libero.suites import task as libero_task

    parsed = parse_task_name(task)
    if parsed is None:
        return False
    try:
        goal_pairs(bddl_goal(libero_task(*parsed).bddl_file.read_text()))
    except UnsupportedGoal:
        return False
    return True


# -- geometry from the simulator (numpy in, numbers out) ----------------------------------------
_UNIT_CORNERS = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], dtype=np.float64)


def geom_corners(model, data, geom: int) -> np.ndarray:
    """The 8 world-frame corners of a geom's bounding box, (8, 3)."""
    centre, half = model.geom_aabb[geom, :3], model.geom_aabb[geom, 3:]
    local = centre + half * _UNIT_CORNERS
    return data.geom_xpos[geom] + local @ data.geom_xmat[geom].reshape(3, 3).T


def colliding(model, geom: int) -> bool:
    return bool(model.geom_contype[geom] or model.geom_conaffinity[geom])


def subtree_bodies(model, root: int) -> set[int]:
    bodies = {root}
    for body in range(root + 1, model.nbody):  # MuJoCo numbers a body after its parent
        if model.body_parentid[body] in bodies:
            bodies.add(body)
    return bodies


def collision_points(model, data, bodies: set[int]) -> np.ndarray:
    """The bounding-box corners of every colliding geom of ``bodies``, (N, 3)."""
    corners = [geom_corners(model, data, g) for g in range(model.ngeom)
               if model.geom_bodyid[g] in bodies and colliding(model, g)]
    if not corners:
        raise ValueError(f"bodies {sorted(bodies)}: no colliding geoms to grasp")
    return np.concatenate(corners)


def width_along(points: np.ndarray, direction: np.ndarray) -> float:
    """The extent of ``points`` along the unit vector ``direction``."""
    projection = points @ direction
    return float(projection.max() - projection.min())


def yaw_rotation(yaw_rad: float) -> np.ndarray:
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class GripperBoxes:
    """The open gripper's colliding geoms as boxes in the hand's yaw frame: axis 0 along the
    fingers' closing direction, axis 1 across it, axis 2 up, origin at the end-effector site.
    ``lo``/``hi`` are (G, 3); ``fingers`` marks the finger geoms (the rest is the palm), ``pads``
    the fingertip pads among them, where an object is held."""

    lo: np.ndarray
    hi: np.ndarray
    fingers: np.ndarray
    pads: np.ndarray
    closing_axis: np.ndarray  # world, horizontal unit vector, at yaw 0

    @property
    def opening_m(self) -> float:
        """The free space between the open fingers' pads (between the whole fingers' boxes for a
        gripper without pads: their boxes are looser)."""
        holding = self.pads if self.pads.any() else self.fingers
        lo, hi = self.lo[holding, 0], self.hi[holding, 0]
        left, right = hi[lo < 0], lo[lo >= 0]
        return float(right.min() - left.max()) if len(left) and len(right) else 0.0

    @property
    def palm_bottom_m(self) -> float:
        return float(self.lo[~self.fingers, 2].min())

    @property
    def tip_bottom_m(self) -> float:
        return float(self.lo[self.fingers, 2].min())


def gripper_boxes(model, data, eef: np.ndarray, finger_bodies: tuple[str, str]) -> GripperBoxes:
    """Measure the gripper as it is now (open, hand pointing down)."""
    left = data.body(finger_bodies[0]).xpos
    right = data.body(finger_bodies[1]).xpos
    closing = np.array([right[0] - left[0], right[1] - left[1], 0.0])
    closing /= np.linalg.norm(closing)
    frame = np.stack([closing, np.cross([0.0, 0.0, 1.0], closing), [0.0, 0.0, 1.0]])
    lo, hi, fingers, pads = [], [], [], []
    for g in range(model.ngeom):
        name = model.body(model.geom_bodyid[g]).name
        if not name.startswith("gripper0_") or not colliding(model, g):
            continue
        local = (geom_corners(model, data, g) - eef) @ frame.T
        lo.append(local.min(0))
        hi.append(local.max(0))
        fingers.append("finger" in model.geom(g).name)
        pads.append("pad" in model.geom(g).name)
    return GripperBoxes(np.array(lo), np.array(hi), np.array(fingers), np.array(pads), closing)


def floor_under(model, data, point: np.ndarray, ignore: set[int], depth_m: float = 1.0) -> float:
    """The height of the highest colliding surface straight below ``point``, skipping the bodies
    in ``ignore`` and the robot; ``point[2] - depth_m`` when there is none."""
    import mujoco

    start = np.array(point, dtype=np.float64)
    down = np.array([0.0, 0.0, -1.0])
    geom = np.zeros(1, dtype=np.int32)
    travelled = 0.0
    while travelled < depth_m:
        distance = mujoco.mj_ray(model, data, start, down, None, 1, -1, geom)
        if distance < 0 or travelled + distance > depth_m:
            break
        g = int(geom[0])
        body = int(model.geom_bodyid[g])
        if colliding(model, g) and body not in ignore and not model.body(body).name.startswith(ROBOT_BODY_PREFIXES):
            return float(start[2] - distance)
        step = distance + 1e-4
        start = start + step * down
        travelled += step
    return float(point[2] - depth_m)


@dataclass(frozen=True)
class Grasp:
    point: np.ndarray  # end-effector target, world (m)
    yaw_rad: float  # hand rotation about the vertical from its initial orientation
    clearance_m: float  # the smallest gap between the gripper and anything below but the object and its support


def grasp_clearance_m(model, data, boxes: GripperBoxes, point: np.ndarray, yaw_rad: float,
                      ignore: set[int], support_z: float, samples: int = 4) -> float:
    """The smallest height between the bottom of each gripper box, the hand at ``point`` turned
    by ``yaw_rad``, and the highest surface under it (rays on a ``samples`` x ``samples`` grid
    per box), not counting surfaces at or below ``support_z`` (what the object stands on);
    negative where the hand would land on something, ``inf`` where nothing is in the way."""
    rotation = yaw_rotation(yaw_rad)
    closing = rotation @ boxes.closing_axis
    across = np.cross([0.0, 0.0, 1.0], closing)
    smallest = np.inf
    for lo, hi in zip(boxes.lo, boxes.hi):
        bottom = point[2] + lo[2]
        for a in np.linspace(lo[0], hi[0], samples):
            for b in np.linspace(lo[1], hi[1], samples):
                top = point + a * closing + b * across
                top[2] = point[2] + hi[2] + 0.3
                surface = floor_under(model, data, top, ignore)
                if surface > support_z:
                    smallest = min(smallest, bottom - surface)
    return float(smallest)


# -- the expert --------------------------------------------------------------------------------
@dataclass
class _Waypoint:
    kind: str  # "move" (to a target, or until blocked), "descend" (the same, arriving closer), "grip"
    target: object = None  # a callable () -> world point, fixed when the waypoint starts
    gripper: float = GRIPPER_OPEN
    steps: int = 0  # for "grip": how long to hold the command
    max_action: float | None = None  # the law's limit when not the expert's


class LiberoPickPlaceExpert(Policy):
    """The expert of the module docstring, bound to one LIBERO env (read at every step)."""

    action_dim = 7
    chunk_size = 1
    gain = 2.0  # the OSC lags a commanded delta: at 1 a stretched arm settled 2-3 cm short of its target
    max_action = 0.8
    lift_max_action = 0.5  # a bowl held at the rim slips out of a fast lift
    tolerance_m = 0.012  # a "move" has arrived within this
    descend_tolerance_m = 0.004  # ... a "descend": a flat object's grasp leaves no slack
    min_action = 0.15  # the proportional law's floor, so that the last millimetres are not crawled
    hover_m = 0.12
    min_lift_m = 0.05  # the object leaves what it stood on by at least this before it travels
    carry_clearance_m = 0.04  # the carried object's bottom passes this far above what lies below its path
    approach_m = 0.08  # the carried object comes down onto the target from this much higher
    drop_m = 0.02  # the carried object's bottom is released this far above the target's surface
    max_phase_steps = 80
    stall_steps = 6  # a move that went less than ``stall_m`` in this many steps is blocked (or out of reach)
    stall_m = 0.002

    def __init__(self, env):
        self._rs = env.unwrapped.robosuite_env
        self.pairs = goal_pairs(self._rs.parsed_problem["goal_state"])
        self.reset()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self._plan: list[_Waypoint] = []
        self._phase = 0
        self._timer = 0
        self._target: np.ndarray | None = None
        self._home: Rotation | None = None
        self._yaw = 0.0
        self._gripper = GRIPPER_OPEN
        self._recent: list[np.ndarray] = []
        self.grasps: list[Grasp] = []  # chosen so far, for inspection

    # -- simulator reads --
    def _sim(self):
        return self._rs.sim.model._model, self._rs.sim.data._data

    def _eef(self) -> np.ndarray:
        robot = self._rs.robots[0]
        return np.array(self._rs.sim.data.site_xpos[robot.eef_site_id[robot.arms[0]]])

    def _eef_rotation(self) -> Rotation:
        robot = self._rs.robots[0]
        matrix = self._rs.sim.data.site_xmat[robot.eef_site_id[robot.arms[0]]].reshape(3, 3)
        return Rotation.from_matrix(matrix)

    def _body(self, name: str) -> int:
        return int(self._rs.obj_body_id[name])

    def _object_points(self, name: str) -> np.ndarray:
        model, data = self._sim()
        return collision_points(model, data, subtree_bodies(model, self._body(name)))

    # -- planning --
    def _choose_grasp(self, name: str, target: str) -> Grasp:
        """The grasp of object ``name`` (to be carried to ``target``): the first of the yaws
        (``GRASP_YAWS_DEG`` from the preferred one) whose gripper clears everything else by
        ``COMFORT_CLEARANCE_M``, else the one that clears most. Objects are held with their
        narrow side across the fingers and no rotation preferred; bowls and plates at the rim, with the
        fingers closing along the way they will be carried, so that they do not swing about
        the fingers' axis."""
        model, data = self._sim()
        eef = self._eef()
        gripper = self._rs.robots[0].gripper["right"]
        boxes = gripper_boxes(model, data, eef, (gripper.naming_prefix + "leftfinger", gripper.naming_prefix + "rightfinger"))
        ignore = subtree_bodies(model, self._body(name))
        points = collision_points(model, data, ignore)
        bottom, top = float(points[:, 2].min()), float(points[:, 2].max())
        centre = np.array(data.xpos[self._body(name)])
        rim = any(kind in name for kind in RIM_GRASPED)
        preferred_deg = 0.0
        if rim:
            height = max(top - RIM_DEPTH_M, bottom - boxes.tip_bottom_m + TIP_MARGIN_M)
            carry = self._target_centre(target) - centre
            axis = boxes.closing_axis  # horizontal
            preferred_deg = float(np.rad2deg(np.arctan2(axis[0] * carry[1] - axis[1] * carry[0], axis[0] * carry[0] + axis[1] * carry[1])))
        else:
            height = max(0.5 * (bottom + top), top - boxes.palm_bottom_m + PALM_MARGIN_M,
                         bottom - boxes.tip_bottom_m + TIP_MARGIN_M)
        middle = 0.5 * (points.min(0) + points.max(0))
        fitting: list[Grasp] = []
        too_wide: list[tuple[float, Grasp]] = []
        for offset_deg in GRASP_YAWS_DEG:
            yaw = np.deg2rad((preferred_deg + offset_deg + 90.0) % 180.0 - 90.0)  # the hand is symmetric under a half turn
            closing = yaw_rotation(yaw) @ boxes.closing_axis
            if rim:
                radius = 0.5 * width_along(points, closing)
                options = [centre + side * RIM_FRACTION * radius * closing for side in (1.0, -1.0)]
                width = 0.0
            else:
                options = [middle]
                width = width_along(points, closing)
            for option in options:
                point = np.array([option[0], option[1], height])
                clearance = grasp_clearance_m(model, data, boxes, point, yaw, ignore, bottom + SUPPORT_TOLERANCE_M)
                grasp = Grasp(point, float(yaw), clearance)
                if width > boxes.opening_m - 2 * FINGER_MARGIN_M:
                    too_wide.append((width, grasp))
                elif clearance >= COMFORT_CLEARANCE_M:
                    self.grasps.append(grasp)
                    return grasp
                else:
                    fitting.append(grasp)
        # nothing comfortable: the grasp that clears most, else (wider than the open fingers at
        # every yaw) the narrowest; the episode will likely fail, and be counted
        chosen = max(fitting, key=lambda grasp: grasp.clearance_m) if fitting else min(too_wide, key=lambda item: item[0])[1]
        self.grasps.append(chosen)
        return chosen

    def _target_centre(self, target: str) -> np.ndarray:
        data = self._sim()[1]
        if target in self._rs.object_sites_dict:  # a region: its site
            return np.array(data.site(target).xpos)
        return np.array(data.xpos[self._body(target)])

    def _release_point(self, target: str, carried: str) -> np.ndarray:
        """Where the end effector opens: over the target (a region's site, or an object's top),
        offset by where the carried object hangs from the hand, so that the object's bottom is
        ``drop_m`` above the target's surface."""
        model, data = self._sim()
        eef = self._eef()
        points = self._object_points(carried)
        hang = eef - np.array(data.xpos[self._body(carried)])
        below_m = eef[2] - float(points[:, 2].min())  # the carried object's bottom under the hand
        centre = self._target_centre(target)
        if target in self._rs.object_sites_dict:  # a region: its site marks the surface
            surface = float(centre[2])
        else:
            surface = float(self._object_points(target)[:, 2].max())
        return np.array([centre[0] + hang[0], centre[1] + hang[1], surface + self.drop_m + below_m])

    def _carry_height(self, carried: str, target: str) -> float:
        """The end-effector height at which ``carried`` clears everything between it and the
        release point by ``carry_clearance_m`` (rays down along the straight path, as for the
        grasp), and the release point is approached from ``approach_m`` above."""
        model, data = self._sim()
        eef = self._eef()
        ignore = subtree_bodies(model, self._body(carried))
        points = self._object_points(carried)
        below_m = eef[2] - float(points[:, 2].min())
        release = self._release_point(target, carried)
        # the object's footprint around the hand, swept along the path every centimetre: thin
        # walls (a drawer's) fall between coarser samples
        lo, hi = points[:, :2].min(0) - eef[:2], points[:, :2].max(0) - eef[:2]
        footprint = [np.array([x, y]) for x in np.linspace(lo[0], hi[0], 3) for y in np.linspace(lo[1], hi[1], 3)]
        samples = max(2, int(np.ceil(np.linalg.norm((release - eef)[:2]) / 0.01)) + 1)
        highest = -np.inf
        for fraction in np.linspace(0.0, 1.0, samples):
            centre = eef + fraction * (release - eef)
            for offset in footprint:
                point = np.array([centre[0] + offset[0], centre[1] + offset[1], eef[2] + 0.5])
                highest = max(highest, floor_under(model, data, point, ignore))
        return max(highest + below_m + self.carry_clearance_m, release[2] + self.approach_m,
                   eef[2] + self.min_lift_m)

    def _make_plan(self) -> list[_Waypoint]:
        plan: list[_Waypoint] = []
        grasps: dict[str, Grasp] = {}
        carry: dict[str, float] = {}
        for carried, target in self.pairs:
            def grasp_point(name=carried, target=target):
                grasps[name] = self._choose_grasp(name, target)
                return grasps[name].point

            def lift(name=carried, target=target):
                carry[name] = self._carry_height(name, target)
                return np.array([*self._eef()[:2], carry[name]])

            def above(name=carried, target=target):
                release = self._release_point(target, name)
                return np.array([release[0], release[1], max(carry[name], self._eef()[2])])

            plan += [
                _Waypoint("move", lambda g=grasp_point: g() + [0.0, 0.0, self.hover_m]),
                _Waypoint("descend", lambda name=carried: grasps[name].point),
                _Waypoint("grip", gripper=GRIPPER_CLOSE, steps=15),
                _Waypoint("move", lift, gripper=GRIPPER_CLOSE, max_action=self.lift_max_action),
                _Waypoint("move", above, gripper=GRIPPER_CLOSE),
                _Waypoint("descend", lambda t=target, c=carried: self._release_point(t, c), gripper=GRIPPER_CLOSE),
                _Waypoint("grip", gripper=GRIPPER_OPEN, steps=12),
                _Waypoint("move", lambda: self._eef() + [0.0, 0.0, 0.12]),
            ]
        return plan

    # -- acting --
    def act(self, obs=None) -> np.ndarray:
        if self._home is None:
            self._home = self._eef_rotation()
            self._plan = self._make_plan()
        eef = self._eef()
        self._recent = (self._recent + [eef])[-(self.stall_steps + 1):]
        while self._phase < len(self._plan):
            waypoint = self._plan[self._phase]
            if waypoint.kind == "grip":
                if self._target is None:  # hold where the grip starts: a zero delta lets the arm sag
                    self._target = eef
                if self._timer < waypoint.steps:
                    self._timer += 1
                    return self._action(self._target - eef, waypoint.gripper, floor=False)
                self._advance()
                continue
            if self._target is None:
                self._target = np.asarray(waypoint.target(), dtype=np.float64)
                self._yaw = self.grasps[-1].yaw_rad if self.grasps else 0.0
            error = self._target - eef
            blocked = (self._timer >= self.stall_steps
                       and np.linalg.norm(self._recent[-1] - self._recent[0]) < self.stall_m)
            tolerance = self.descend_tolerance_m if waypoint.kind == "descend" else self.tolerance_m
            if np.linalg.norm(error) < tolerance or blocked or self._timer >= self.max_phase_steps:
                self._advance()
                continue
            self._timer += 1
            return self._action(error, waypoint.gripper, limit=waypoint.max_action)
        return self._action(np.zeros(3), self._gripper, floor=False)

    def _advance(self) -> None:
        self._gripper = self._plan[self._phase].gripper
        self._phase += 1
        self._timer = 0
        self._target = None
        self._recent = self._recent[-1:]

    def _action(self, error_m: np.ndarray, gripper: float, floor: bool = True, limit: float | None = None) -> np.ndarray:
        position = self.gain * error_m / POS_M_PER_UNIT
        norm = np.linalg.norm(position)
        if floor and 0.0 < norm < self.min_action:
            position *= self.min_action / norm
        limit = self.max_action if limit is None else limit
        position = np.clip(position, -limit, limit)
        goal = Rotation.from_rotvec([0.0, 0.0, self._yaw]) * self._home
        rotation = np.clip((goal * self._eef_rotation().inv()).as_rotvec() / ROT_RAD_PER_UNIT, -0.5, 0.5)
        return np.concatenate([position, rotation, [gripper]]).astype(np.float32)[None, :]
