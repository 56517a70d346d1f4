"""Parity of this project's LIBERO (robosuite 1.5) with LIBERO as published (robosuite 1.4).

Every LIBERO checkpoint in circulation was trained on demonstrations recorded with robosuite
1.4, so what matters is what a policy sees differently here. This driver runs the same standard
initial state and the same actions in both stacks and compares, step by step, the end-effector
position and orientation, the gripper and joint positions and task success, plus the first
camera frames and the controller configuration actually in use:

    python -m vla_envs.libero.parity [--suites ...] [--tasks 0 1] [--init-states 0 1] [--out DIR]

The robosuite 1.4 side runs in a separate environment (``.venv-libero14``, or the Python that
``$VLA_ENVS_LIBERO14_PYTHON`` names; ``SETUP_COMMAND`` creates it) through
``parity_reference.py``; LIBERO's config for it is written into the project's cache, never the
home folder, and it reads the same asset wheels as this project (nothing copied).

The actions come from a scripted waypoint expert (``PickPlaceExpert``) run closed-loop in this
project's env: above the object, down, close, lift, above the target, open. They are recorded
and replayed open-loop in robosuite 1.4, so success agreement tests whether the same motor
commands accomplish the task in both stacks. Tasks whose goal is not "object in/on target"
(drawers, stove knobs) get a seeded smooth pseudo-random sequence instead, and then success is
still compared on the states reached.

To attribute a divergence, the same actions are also replayed here with robosuite 1.4's
stepping (``lite_physics=False``) and with 1.4's gripper command ramp as well (``Variant``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla_envs.errors import VlaEnvsError
from vla_envs.files import atomic_path, project_cache_dir
from vla_envs.libero.suites import SETTLE_STEPS
from vla_envs.robosuite_fixes import hold_orientation_on_zero_rotation, ramp_gripper_per_substep

CHECKOUT = Path(__file__).resolve().parents[2]
PYTHON_ENV = "VLA_ENVS_LIBERO14_PYTHON"
DEFAULT_VENV = CHECKOUT / ".venv-libero14"
REFERENCE_SCRIPT = Path(__file__).with_name("parity_reference.py")
SETUP_COMMAND = (
    "python3.11 -m venv .venv-libero14 && .venv-libero14/bin/pip install --no-deps hf-libero==0.1.4 && "
    '.venv-libero14/bin/pip install robosuite==1.4.0 "mujoco>=3.0,<3.9" bddl==1.0.1 "numpy<2" pyyaml '
    "easydict cloudpickle gymnasium matplotlib termcolor future"
)
RECORDED = ("eef_pos", "eef_quat", "gripper_qpos", "joint_pos")
CAMERAS = ("agentview", "robot0_eye_in_hand")

# OSC_POSE delta actions: one unit of action is this much motion per control step (the
# controller's output_max, the same in robosuite 1.4's osc_pose.json and 1.5's default_panda).
POS_M_PER_UNIT = 0.05
ROT_RAD_PER_UNIT = 0.5
GRIPPER_CLOSE, GRIPPER_OPEN = 1.0, -1.0  # LIBERO's convention (checked by the expert's test)


class Libero14Unavailable(VlaEnvsError, RuntimeError):
    """The robosuite 1.4 LIBERO environment is not set up (the message says how)."""


# -- the comparison maths (pure) -------------------------------------------------------------
def eef_divergence_m(ours: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(max, final) Euclidean distance in metres between two (T, 3) position tracks."""
    ours, reference = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if ours.shape != reference.shape or ours.ndim != 2 or ours.shape[1] != 3 or len(ours) == 0:
        raise ValueError(f"position tracks of shapes {ours.shape} and {reference.shape}: expected two equal (T, 3)")
    distance = np.linalg.norm(ours - reference, axis=1)
    return float(distance.max()), float(distance[-1])


def quat_angle_rad(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle between unit quaternions (any one order, the same for both; sign-blind:
    q and -q are the same rotation), per row."""
    q1, q2 = np.atleast_2d(np.asarray(q1, dtype=np.float64)), np.atleast_2d(np.asarray(q2, dtype=np.float64))
    if q1.shape != q2.shape or q1.shape[-1] != 4:
        raise ValueError(f"quaternions of shapes {q1.shape} and {q2.shape}: expected two equal (T, 4)")
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    dot = np.clip(np.abs(np.sum(q1 * q2, axis=-1)), 0.0, 1.0)
    return 2.0 * np.arccos(dot)


IMAGE_TRANSFORMS = {
    "identity": lambda image: image,
    "flip_rows": lambda image: image[::-1],  # upside down: OpenGL's bottom-left origin
    "flip_columns": lambda image: image[:, ::-1],
    "rotate_180": lambda image: image[::-1, ::-1],  # openpi's and OpenVLA's LIBERO preprocessing
}


def image_transform_errors(ours: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Mean absolute pixel error (0-255) between ``ours`` and each transform of ``reference``:
    the transform with the smallest error is the one that maps LIBERO's frame onto ours."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    if ours.shape != reference.shape or ours.ndim != 3:
        raise ValueError(f"images of shapes {ours.shape} and {reference.shape}: expected two equal (H, W, C)")
    return {name: float(np.abs(ours.astype(np.int16) - transform(reference).astype(np.int16)).mean())
            for name, transform in IMAGE_TRANSFORMS.items()}


def best_transform(errors: dict[str, float]) -> str:
    return min(errors, key=errors.__getitem__)


def success_agreement(ours: list[bool], reference: list[bool]) -> tuple[int, int]:
    """(episodes whose final success is the same in both stacks, episodes)."""
    if len(ours) != len(reference):
        raise ValueError(f"{len(ours)} and {len(reference)} episodes: expected as many in both stacks")
    return sum(a == b for a, b in zip(ours, reference)), len(ours)


def smooth_random_actions(steps: int, seed: int, scale: float = 0.5, smoothing: float = 0.9) -> np.ndarray:
    """A seeded smooth pseudo-random (steps, 7) OSC_POSE action sequence in [-1, 1]: a first-order
    low-pass of Gaussian noise (arm), and a gripper that toggles every 40 steps."""
    if steps < 0:
        raise ValueError(f"steps={steps}: expected a non-negative number of control steps")
    rng = np.random.default_rng(seed)
    actions = np.zeros((steps, 7))
    state = np.zeros(6)
    for t in range(steps):
        state = smoothing * state + (1.0 - smoothing) * rng.normal(0.0, 1.0, 6) * scale * 4.0
        actions[t, :6] = np.clip(state, -1.0, 1.0)
        actions[t, 6] = GRIPPER_OPEN if (t // 40) % 2 == 0 else GRIPPER_CLOSE
    return actions


def axis_angle_error(target_quat_xyzw: np.ndarray, current_quat_xyzw: np.ndarray) -> np.ndarray:
    """The world-frame rotation vector (rad) taking ``current`` to ``target`` (R_t R_c^T)."""
    from scipy.spatial.transform import Rotation

    error = Rotation.from_quat(target_quat_xyzw) * Rotation.from_quat(current_quat_xyzw).inv()
    return error.as_rotvec()


# -- the scripted expert -----------------------------------------------------------------------
@dataclass
class PickPlaceExpert:
    """Waypoint pick-and-place over LIBERO goals ``(in|on object target)``, read from the sim.

    For each (object, target) pair: above the object, down to grasp height, close, lift, above
    the target, down to release height, open, up. Position actions are a clipped proportional
    law on the end-effector error (``gain`` units of action per ``POS_M_PER_UNIT`` of error);
    the gripper keeps its initial (downward) orientation. Bowls are grasped at the rim: offset
    along the fingers' closing axis by ``rim_fraction`` of their radius.
    """

    pairs: list[tuple[str, str]]
    gain: float = 1.0
    max_action: float = 0.8
    tolerance_m: float = 0.012
    hover_m: float = 0.12
    rim_fraction: float = 0.8
    max_phase_steps: int = 80
    phase: int = 0
    timer: int = 0
    gripper: float = GRIPPER_OPEN
    target: np.ndarray | None = None
    home_quat: np.ndarray | None = None
    waypoints: list[tuple[str, Any]] = field(default_factory=list)

    @staticmethod
    def goal_pairs(goal_state: list[list[str]]) -> list[tuple[str, str]]:
        """The (object, target) pairs of a LIBERO goal whose predicates are all ``in``/``on``;
        empty when any predicate is something else (open, turnon, ...)."""
        pairs = []
        for predicate in goal_state:
            if len(predicate) != 3 or predicate[0].lower() not in ("in", "on"):
                return []
            pairs.append((predicate[1], predicate[2]))
        return pairs

    def act(self, rs) -> np.ndarray | None:
        """The next action for robosuite env ``rs`` (None when the script is done)."""
        obs = rs._get_observations()
        eef, quat = obs["robot0_eef_pos"], obs["robot0_eef_quat"]
        if self.home_quat is None:
            self.home_quat = np.array(quat)
            self.waypoints = self._plan()
        while self.phase < len(self.waypoints):
            kind, arg = self.waypoints[self.phase]
            if kind == "grip":
                gripper, steps = arg
                if self.timer < steps:
                    self.timer += 1
                    return self._action(np.zeros(3), quat, gripper)
                self._next()
                continue
            if self.target is None:  # a waypoint is fixed when it is reached for
                self.target = np.asarray(arg(rs), dtype=np.float64)
            error = self.target - eef
            if np.linalg.norm(error) < self.tolerance_m or self.timer >= self.max_phase_steps:
                self._next()
                continue
            self.timer += 1
            return self._action(error, quat, self.gripper)
        return None

    def _next(self) -> None:
        self.phase += 1
        self.timer = 0
        self.target = None
        if self.phase < len(self.waypoints) and self.waypoints[self.phase][0] == "grip":
            self.gripper = self.waypoints[self.phase][1][0]

    def _action(self, error_m: np.ndarray, quat: np.ndarray, gripper: float) -> np.ndarray:
        position = np.clip(self.gain * error_m / POS_M_PER_UNIT, -self.max_action, self.max_action)
        rotation = np.clip(axis_angle_error(self.home_quat, quat) / ROT_RAD_PER_UNIT, -0.5, 0.5)
        return np.concatenate([position, rotation, [gripper]])

    def _plan(self) -> list[tuple[str, Any]]:
        plan: list[tuple[str, Any]] = []
        for obj, target in self.pairs:
            grasp = _grasp_point(obj, self.rim_fraction)
            release = _release_point(target, obj)
            plan += [
                ("move", lambda rs, g=grasp: g(rs) + [0, 0, self.hover_m]),
                ("move", grasp),
                ("grip", (GRIPPER_CLOSE, 15)),
                ("move", lambda rs: _eef(rs) + [0, 0, self.hover_m + 0.08]),
                ("move", lambda rs, r=release: r(rs) + [0, 0, 0.08]),
                ("move", release),
                ("grip", (GRIPPER_OPEN, 12)),
                ("move", lambda rs, r=release: r(rs) + [0, 0, 0.12]),
            ]
        return plan


def _body_pos(rs, name: str) -> np.ndarray:
    return np.array(rs.sim.data.body_xpos[rs.obj_body_id[name]])


def _object_model(rs, name: str):
    return rs.objects_dict.get(name) or rs.fixtures_dict.get(name)


def _grasp_point(obj: str, rim_fraction: float):
    def point(rs) -> np.ndarray:
        pos = _body_pos(rs, obj)
        model = _object_model(rs, obj)
        bottom = pos[2] + float(np.asarray(model.bottom_offset)[2])
        top = pos[2] + float(np.asarray(model.top_offset)[2])
        if "bowl" in obj:  # grasp the rim: one finger inside, one outside
            return np.array([pos[0], pos[1] + rim_fraction * model.horizontal_radius, top - 0.015])
        return np.array([pos[0], pos[1], max(bottom + 0.5 * (top - bottom), bottom + 0.02)])
    return point


def _release_point(target: str, carried: str):
    """Where the end effector lets go: above the target, shifted by where the carried object
    hangs from the gripper (a bowl held at its rim hangs off-centre)."""
    def point(rs) -> np.ndarray:
        if target in rs.object_sites_dict:  # a region: its site
            site = rs.sim.model.site_name2id(target)
            pos = np.array(rs.sim.data.site_xpos[site]) + [0, 0, 0.10]
        else:
            model = _object_model(rs, target)
            pos = _body_pos(rs, target) + [0, 0, float(np.asarray(model.top_offset)[2]) + 0.06]
        hang = _eef(rs) - _body_pos(rs, carried)
        return pos + [hang[0], hang[1], 0.0]
    return point


def _eef(rs) -> np.ndarray:
    return np.array(rs._get_observations()["robot0_eef_pos"])


# -- this project's side ----------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """How this project's env is stepped: as shipped, or with a robosuite 1.4 behaviour put back
    (to attribute a divergence)."""

    name: str
    lite_physics: bool = True  # robosuite 1.5's default; 1.4 stepped with forward() + step()
    gripper_per_substep: bool = False  # 1.4: gripper command ramps 0.01 per physics substep
    hold_orientation_on_zero: bool = False  # 1.4: a rotation action of exactly 0 keeps the last goal


# The variants run on an env built with robosuite_controller="1.5" (robosuite 1.5's own stepping);
# the last is what the LIBERO envs ship (robosuite_controller="1.4", the default).
ROBOSUITE_15 = Variant("robosuite 1.5")
VARIANTS = (
    ROBOSUITE_15,
    Variant("lite_physics=False", lite_physics=False),
    Variant("1.4 gripper ramp", gripper_per_substep=True),
    Variant("1.4 orientation hold", hold_orientation_on_zero=True),
    Variant("1.4 gripper ramp + orientation hold (shipped)", gripper_per_substep=True, hold_orientation_on_zero=True),
)
AS_SHIPPED = VARIANTS[-1]


# the two robosuite 1.4 behaviours, as the LIBERO envs install them (vla_envs.robosuite_fixes)
_install_14_orientation_hold = hold_orientation_on_zero_rotation
_install_14_gripper = ramp_gripper_per_substep


def _record(rs) -> dict[str, np.ndarray]:
    obs = rs._get_observations()
    return {key: np.array(obs[f"robot0_{key}"], dtype=np.float64) for key in RECORDED}


@dataclass
class Episode:
    """One episode's per-step tracks (T+1 rows: after the initial state and after each action)."""

    tracks: dict[str, np.ndarray]
    success: np.ndarray
    states: np.ndarray
    actions: np.ndarray


def make_env(suite: str, task_id: int, robosuite_controller: str = "1.5"):
    import gymnasium as gym

    import vla_envs  # noqa: F401 - registers the ids

    title = {"libero_spatial": "Spatial", "libero_object": "Object", "libero_goal": "Goal", "libero_10": "10",
             "libero_90": "90"}[suite]
    return gym.make(f"vla_envs/LIBERO-{title}-v0", task_id=task_id, obs_mode="state", robosuite_controller=robosuite_controller)


def run_ours(env, init_state: int, actions: np.ndarray | None, variant: Variant = AS_SHIPPED,
             expert_steps: int = 0) -> Episode:
    """Reset ``env`` to standard ``init_state`` and step ``actions``; with ``actions=None`` the
    expert drives (after ``SETTLE_STEPS`` no-ops) for at most ``expert_steps`` steps, then holds."""
    env.reset(seed=0, options={"init_state": init_state})
    rs = env.unwrapped.robosuite_env
    composite = rs.robots[0].composite_controller
    if "set_goal" in vars(composite) or "set_goal" in vars(composite.part_controllers["right"]):
        raise RuntimeError("a robosuite 1.4 behaviour installed for an earlier variant outlived the reset")
    rs.lite_physics = variant.lite_physics
    for controller in rs.robots[0].composite_controller.part_controllers.values():
        controller.lite_physics = variant.lite_physics  # each part reads its own flag (default True)
    if variant.gripper_per_substep:
        _install_14_gripper(rs)
    if variant.hold_orientation_on_zero:
        _install_14_orientation_hold(rs)
    rows = {key: [value] for key, value in _record(rs).items()}
    success = [bool(rs._check_success())]
    states = [rs.sim.get_state().flatten()]
    taken: list[np.ndarray] = []
    expert = None
    if actions is None:
        expert = PickPlaceExpert(PickPlaceExpert.goal_pairs(rs.parsed_problem["goal_state"]))
        if not expert.pairs:
            raise ValueError(f"goal {rs.parsed_problem['goal_state']}: the expert handles in/on goals only")
    steps = len(actions) if actions is not None else expert_steps
    for t in range(steps):
        if actions is not None:
            action = actions[t]
        elif t < SETTLE_STEPS:
            action = np.array([0.0] * 6 + [GRIPPER_OPEN])
        else:
            action = expert.act(rs)
            if action is None:
                if success[-1]:
                    break
                action = np.array([0.0] * 6 + [GRIPPER_OPEN])
        action = np.asarray(action, dtype=np.float64)
        taken.append(action)
        env.step(action.astype(np.float32))
        for key, value in _record(rs).items():
            rows[key].append(value)
        success.append(bool(rs._check_success()))
        states.append(rs.sim.get_state().flatten())
    return Episode({key: np.stack(value) for key, value in rows.items()}, np.asarray(success), np.stack(states),
                   np.asarray(taken, dtype=np.float64).reshape(-1, 7))


def controller_config_ours(env) -> dict[str, Any]:
    """The arm and gripper controller settings actually in use here (from the live objects)."""
    rs = env.unwrapped.robosuite_env
    robot = rs.robots[0]
    arm = robot.composite_controller.part_controllers["right"]
    gripper = robot.gripper["right"]
    as_list = lambda value: np.asarray(value).tolist()  # noqa: E731
    return {
        "type": arm.name, "kp": as_list(arm.kp), "kd": as_list(arm.kd),
        "input_max": as_list(arm.input_max), "input_min": as_list(arm.input_min),
        "output_max": as_list(arm.output_max), "output_min": as_list(arm.output_min),
        "control_delta": arm.input_type == "delta", "input_ref_frame": arm.input_ref_frame,
        "uncouple_pos_ori": bool(arm.uncoupling),
        "interpolator": None if arm.interpolator_pos is None else type(arm.interpolator_pos).__name__,
        "impedance_mode": arm.impedance_mode, "control_freq_hz": float(rs.control_freq),
        "model_timestep_s": float(rs.model_timestep), "gripper": type(gripper).__name__,
        "gripper_speed": float(gripper.speed), "gripper_format_action": "once per control step",
        "lite_physics": bool(rs.lite_physics),
        "torque_limits": [as_list(limit) for limit in (arm.actuator_min, arm.actuator_max)],
    }


def base_pose_ours(env) -> dict[str, Any]:
    sim = env.unwrapped.robosuite_env.sim
    out = {}
    for name in ("robot0_base", "robot0_link0"):
        body = sim.model.body_name2id(name)
        out[name] = {"pos": sim.data.xpos[body].tolist(), "quat_wxyz": sim.data.xquat[body].tolist()}
    return out


def first_frames_ours(env, size: int) -> dict[str, np.ndarray]:
    """This project's upright frames of the current state, drawn at full quality."""
    from vla_envs.rendering import CameraRenderer

    rs = env.unwrapped.robosuite_env
    renderer = CameraRenderer("full", size, size, None)
    try:
        renderer.bind(rs.sim.model._model)
        return {camera: renderer.render(rs.sim.data._data, camera, size, size) for camera in CAMERAS}
    finally:
        renderer.close()


# -- the robosuite 1.4 side -------------------------------------------------------------------
def libero14_python() -> str:
    """The robosuite 1.4 LIBERO Python: ``$VLA_ENVS_LIBERO14_PYTHON``, else ``.venv-libero14``."""
    chosen = os.environ.get(PYTHON_ENV)
    if chosen:
        if not Path(chosen).is_file():
            raise Libero14Unavailable(f"${PYTHON_ENV}={chosen!r}: no such file, expected a Python executable")
        return chosen
    default = DEFAULT_VENV / "bin" / "python"
    if not default.is_file():
        raise Libero14Unavailable(f"the robosuite 1.4 LIBERO environment is not set up: create it with `{SETUP_COMMAND}` "
                                  f"in {CHECKOUT}, or set ${PYTHON_ENV}")
    return str(default)


def _libero14_package(python: str) -> Path:
    probe = subprocess.run([python, "-c", "import importlib.util as u; print(u.find_spec('libero').submodule_search_locations[0])"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        raise Libero14Unavailable(f"{python} cannot find LIBERO (hf-libero): {probe.stderr.strip()[-500:]}; "
                                  f"create the environment with `{SETUP_COMMAND}`")
    return Path(probe.stdout.strip()) / "libero"


def libero14_config(python: str, assets: Path) -> Path:
    """LIBERO's config for the robosuite 1.4 environment, in the project's cache (its own
    LIBERO otherwise writes ``~/.libero`` and asks questions on standard input)."""
    import yaml

    package = _libero14_package(python)
    folder = project_cache_dir() / "libero14"
    config = {"benchmark_root": str(package), "bddl_files": str(package / "bddl_files"),
              "init_states": str(package / "init_files"), "datasets": str(folder / "datasets"), "assets": str(assets)}
    text = yaml.safe_dump(config, sort_keys=True)
    path = folder / "config.yaml"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return folder


def run_reference(python: str, bddl_file: Path, init_states: list[np.ndarray], actions: list[np.ndarray],
                  image_size: int = 128, timeout_s: float = 3600) -> dict[str, Any]:
    """Run ``parity_reference.py`` in the robosuite 1.4 environment; its result arrays and meta."""
    from vla_envs.libero.installation import find_assets

    assets = find_assets()
    config_dir = libero14_config(python, assets)
    meta = {"bddl_file": str(bddl_file), "assets": str(assets), "image_size": image_size, "episodes": len(init_states)}
    with tempfile.TemporaryDirectory(prefix="libero-parity-") as tmp:
        request, result = Path(tmp) / "request.npz", Path(tmp) / "result.npz"
        arrays = {"meta": np.asarray(json.dumps(meta))}
        for e, (state, acts) in enumerate(zip(init_states, actions)):
            arrays[f"init_state_{e}"] = np.asarray(state, dtype=np.float64)
            arrays[f"actions_{e}"] = np.asarray(acts, dtype=np.float64).reshape(-1, 7)
        np.savez(request, **arrays)
        env = {**os.environ, "LIBERO_CONFIG_PATH": str(config_dir), "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
               "PYTHONPATH": ""}
        done = subprocess.run([python, str(REFERENCE_SCRIPT), str(request), str(result)], capture_output=True, text=True,
                              env=env, stdin=subprocess.DEVNULL, timeout=timeout_s, cwd=tmp)
        if done.returncode != 0:
            raise RuntimeError(f"the robosuite 1.4 reference failed (exit {done.returncode}): {done.stderr[-3000:]}")
        with np.load(result, allow_pickle=False) as loaded:
            out = {key: loaded[key] for key in loaded.files}
    out["meta"] = json.loads(str(out["meta"]))
    return out


# -- one task, both stacks ----------------------------------------------------------------------
def _bddl_in(package: Path, suite: str, name: str) -> Path:
    return package / "bddl_files" / suite / name


def compare_task(suite: str, task_id: int, init_states: list[int], python: str, max_steps: int = 300,
                 variants: tuple[Variant, ...] = VARIANTS, image_size: int = 128,
                 fixed_steps: int | None = None) -> dict[str, Any]:
    """Run ``init_states`` of one task in both stacks with the same actions; the comparison.
    ``fixed_steps`` replaces the expert by that many smooth pseudo-random actions."""
    from vla_envs.libero.suites import load_init_states, task

    libero_task = task(suite, task_id)
    states = load_init_states(libero_task.init_states_file)
    env = make_env(suite, task_id)
    started = time.perf_counter()
    try:
        ours: dict[str, list[Episode]] = {variant.name: [] for variant in variants}
        action_source = "expert"
        for i in init_states:
            actions = None
            if fixed_steps is not None:
                actions, action_source = smooth_random_actions(fixed_steps, seed=1000 * task_id + i), "smooth random"
            else:
                env.reset(seed=0, options={"init_state": i})
                if not PickPlaceExpert.goal_pairs(env.unwrapped.robosuite_env.parsed_problem["goal_state"]):
                    actions, action_source = smooth_random_actions(max_steps, seed=1000 * task_id + i), "smooth random"
            first = run_ours(env, i, actions, variants[0], expert_steps=max_steps)
            ours[variants[0].name].append(first)
            for variant in variants[1:]:
                ours[variant.name].append(run_ours(env, i, first.actions, variant))
        env.reset(seed=0, options={"init_state": init_states[0]})
        frames = first_frames_ours(env, image_size)
        info_ours = {"controller": controller_config_ours(env), "base": base_pose_ours(env),
                     "state_size": int(env.unwrapped.robosuite_env.sim.get_state().flatten().size),
                     "init_state_size": int(states.shape[1])}
        ours_seconds = time.perf_counter() - started
    finally:
        env.close()
    package = _libero14_package(python)
    reference = run_reference(python, _bddl_in(package, suite, libero_task.bddl_file.name),
                              [states[i] for i in init_states], [e.actions for e in ours[variants[0].name]], image_size)
    return summarize_task(suite, task_id, libero_task.instruction, init_states, states, ours, reference, frames,
                          info_ours, action_source, ours_seconds)


def summarize_task(suite: str, task_id: int, instruction: str, init_states: list[int], states: np.ndarray,
                   ours: dict[str, list[Episode]], reference: dict[str, Any], frames: dict[str, np.ndarray],
                   info_ours: dict[str, Any], action_source: str, ours_seconds: float) -> dict[str, Any]:
    episodes = []
    for e, i in enumerate(init_states):
        ref_tracks = {key: reference[f"{key}_{e}"] for key in RECORDED}
        ref_success = reference[f"success_{e}"]
        row: dict[str, Any] = {"init_state": i, "steps": int(len(ref_success) - 1),
                               "success_reference": bool(ref_success[-1]),
                               "initial_state_identical": bool(np.array_equal(reference[f"state_{e}"][0][1:], states[i][1:])),
                               "variants": {}}
        for name, runs in ours.items():
            run = runs[e]
            max_m, final_m = eef_divergence_m(run.tracks["eef_pos"], ref_tracks["eef_pos"])
            angle = quat_angle_rad(run.tracks["eef_quat"], ref_tracks["eef_quat"])
            row["variants"][name] = {
                "success": bool(run.success[-1]), "first_success_step": _first(run.success),
                "eef_divergence_max_m": max_m, "eef_divergence_final_m": final_m,
                "eef_quat_angle_max_rad": float(angle.max()),
                "gripper_qpos_max_abs_diff_m": float(np.abs(run.tracks["gripper_qpos"] - ref_tracks["gripper_qpos"]).max()),
                "joint_pos_max_abs_diff_rad": float(np.abs(run.tracks["joint_pos"] - ref_tracks["joint_pos"]).max()),
                "initial_eef_pos_diff_m": float(np.linalg.norm(run.tracks["eef_pos"][0] - ref_tracks["eef_pos"][0])),
            }
        row["first_success_step_reference"] = _first(ref_success)
        episodes.append(row)
    images = {camera: image_transform_errors(frames[camera], reference[f"image_{camera}"]) for camera in CAMERAS}
    return {"suite": suite, "task_id": task_id, "instruction": instruction, "actions": action_source,
            "episodes": episodes, "images_mean_abs_error": images,
            "image_transform": {camera: best_transform(errors) for camera, errors in images.items()},
            "ours": info_ours, "reference": reference["meta"], "ours_seconds": round(ours_seconds, 1)}


def _first(success: np.ndarray) -> int | None:
    hits = np.flatnonzero(np.asarray(success))
    return int(hits[0]) if hits.size else None


def format_table(results: list[dict[str, Any]], variant: str = AS_SHIPPED.name) -> str:
    """Markdown: per suite, eef divergence (max and final, worst over episodes) and success agreement."""
    lines = ["| suite | episodes | actions | success ours / 1.4 | agree | eef max (m) | eef final (m) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    by_suite: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        by_suite.setdefault(result["suite"], []).append(result)
    for suite, rows in by_suite.items():
        eps = [(r, e) for r in rows for e in r["episodes"]]
        ours = [e["variants"][variant]["success"] for _, e in eps]
        ref = [e["success_reference"] for _, e in eps]
        agree, n = success_agreement(ours, ref)
        max_m = max(e["variants"][variant]["eef_divergence_max_m"] for _, e in eps)
        final_m = max(e["variants"][variant]["eef_divergence_final_m"] for _, e in eps)
        sources = "/".join(sorted({r["actions"] for r in rows}))
        lines.append(f"| {suite} | {n} | {sources} | {sum(ours)} / {sum(ref)} | {agree}/{n} | {max_m:.4f} | {final_m:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vla_envs.libero.suites import STANDARD_SUITES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(STANDARD_SUITES))
    parser.add_argument("--tasks", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--init-states", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--max-steps", type=int, default=300, help="expert steps per episode at most")
    parser.add_argument("--random-steps", type=int, default=None, help="smooth random actions instead of the expert")
    parser.add_argument("--out", type=Path, default=Path("runs/libero_parity"))
    args = parser.parse_args(argv)
    try:
        python = libero14_python()
    except Libero14Unavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    from rich.progress import Progress

    from vla_envs.progress import progress_columns

    results = []
    pairs = [(suite, task_id) for suite in args.suites for task_id in args.tasks]
    with Progress(*progress_columns("tasks")) as progress:
        bar = progress.add_task("LIBERO parity with robosuite 1.4", total=len(pairs))
        for suite, task_id in pairs:
            started = time.perf_counter()
            result = compare_task(suite, task_id, args.init_states, python, args.max_steps, fixed_steps=args.random_steps)
            results.append(result)
            for e in result["episodes"]:
                shipped = e["variants"][AS_SHIPPED.name]
                progress.console.print(
                    f"{suite} task {task_id} init {e['init_state']}: {e['steps']} steps, success ours "
                    f"{shipped['success']} / 1.4 {e['success_reference']}; eef max "
                    + ", ".join(f"{name} {v['eef_divergence_max_m']:.2e} m" for name, v in e["variants"].items()))
            progress.console.print(f"  images: {result['image_transform']} ({time.perf_counter() - started:.0f} s)")
            args.out.mkdir(parents=True, exist_ok=True)
            with atomic_path(args.out / "parity.json") as tmp:
                tmp.write_text(json.dumps(results, indent=1, default=_jsonable), encoding="utf-8")
            progress.advance(bar)
    print(f"as shipped ({AS_SHIPPED.name}):\n" + format_table(results))
    for variant in VARIANTS[:-1]:
        print(f"\nwith {variant.name}:\n" + format_table(results, variant.name))
    return 0


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


if __name__ == "__main__":
    sys.exit(main())
