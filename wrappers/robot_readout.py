"""Find the robot inside a (wrapped) MuJoCo-backed Gymnasium environment.

Supported environments:

- the suite's robosuite tasks (``vla_envs.robosuite_env.RobosuiteEnv``): the robot's arm joints,
  robosuite's grip site as end effector, robosuite's control and physics rates;
- gymnasium ``MujocoEnv`` subclasses (``Pusher-v5``, ``Reacher-v5``, Meta-World, ...) and any
  other env holding a ``mujoco.MjModel``/``MjData`` pair (gymnasium-robotics' Fetch and
  FrankaKitchen, ...): the hinge joints driven by actuators, the last body of that joint
  chain as end effector (or a site/body you name), ``1 / (timestep * substeps)`` as control
  frequency, with the substeps from ``frame_skip``, ``n_substeps`` or ``dt``.

``joint_names=`` overrides the joint choice for either. Two defaults would measure the wrong
thing, so they are refused with the joints to pass instead (docs/metrics.md, "Arm joints"):

- an arm moved by a mocap body welded to it (Fetch, Meta-World's Sawyer): no actuator drives
  its joints, so the actuated joints are the gripper's fingers below the weld, not the arm;
- slide joints (metres) among the joints: ``HINGE_ONLY_KEYS`` add every joint up in radians
  (Adroit's hand translation, FrankaKitchen's fingers). Only hinge joints are measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium.envs.mujoco import MujocoEnv

from vla_envs.errors import VlaEnvsError
from wrappers.metrics import HINGE_ONLY_KEYS

_ONE_DOF_JOINTS = (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)


class RobotNotFoundError(VlaEnvsError, ValueError):
    """The environment does not expose what the embodied wrappers need."""


@dataclass(frozen=True)
class RobotReadout:
    """Where the arm lives in a MuJoCo model, and the rates it is driven at."""

    source: str  # "robosuite" or "mujoco_env"
    joint_names: tuple[str, ...]
    qpos_index: np.ndarray  # int, into data.qpos
    dof_index: np.ndarray  # int, into data.qvel / qacc / qfrc_actuator
    ee_kind: str  # "site" or "body"
    ee_name: str
    ee_id: int
    control_freq_hz: float
    physics_dt_s: float
    n_substeps: int  # physics substeps per control step
    get_model_data: Callable[[], tuple[mujoco.MjModel, mujoco.MjData]]
    robot_name: str | None = None  # robosuite's arm ("Panda", "UR5e"; LIBERO's Pandas too) when its arm joints are measured
    sim_owner: object | None = None  # the object holding .model/.data (its steps are hooked)

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def model(self) -> mujoco.MjModel:
        return self.get_model_data()[0]

    @property
    def data(self) -> mujoco.MjData:
        return self.get_model_data()[1]

    def ee_position(self, data: mujoco.MjData) -> np.ndarray:
        return (data.site_xpos if self.ee_kind == "site" else data.xpos)[self.ee_id]

    def limits(self) -> tuple[np.ndarray, np.ndarray]:
        """(torque limit N m, velocity limit rad/s) per arm joint, NaN where none is defined:
        ``torque_limits`` from the model's actuators, ``velocity_limits`` from the robot."""
        return (
            torque_limits(self.model, self.dof_index),
            velocity_limits(self.robot_name, len(self.joint_names)),
        )

    def settings(self) -> dict:
        """Plain-data description (for episode metadata)."""
        return {
            "source": self.source,
            "robot_name": self.robot_name,  # robosuite's arm ("UR5e"); None for other envs
            "n_joints": self.n_joints,
            "joint_names": list(self.joint_names),
            "ee": f"{self.ee_kind}:{self.ee_name}",
            "control_freq_hz": self.control_freq_hz,
            "physics_dt_s": self.physics_dt_s,
            "n_substeps": self.n_substeps,
        }


def _joint_indices(model: mujoco.MjModel, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    qpos, dofs = [], []
    for name in names:
        jid = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            known = [model.joint(i).name for i in range(model.njnt)]
            raise RobotNotFoundError(f"joint {name!r} does not exist: expected one of {known}")
        if model.jnt_type[jid] == mujoco.mjtJoint.mjJNT_SLIDE:
            raise RobotNotFoundError(
                f"joint_names= has the slide joint {name!r} (metres): {', '.join(HINGE_ONLY_KEYS)} add every "
                f"joint up in radians, expected hinge joints only, e.g. joint_names={_hinges(model, names)}"
            )
        if model.jnt_type[jid] not in _ONE_DOF_JOINTS:
            raise RobotNotFoundError(
                f"joint {name!r} has type {mujoco.mjtJoint(model.jnt_type[jid]).name}: expected a hinge joint"
            )
        qpos.append(model.jnt_qposadr[jid])
        dofs.append(model.jnt_dofadr[jid])
    return np.asarray(qpos, dtype=np.intp), np.asarray(dofs, dtype=np.intp)


# Joint velocity limits of the arms the suite drives (MuJoCo models carry none), rad/s.
# Panda: Franka Emika's datasheet (the same values as franka_ros / libfranka).
ARM_VELOCITY_LIMITS: dict[str, tuple[float, ...]] = {
    "Panda": (2.1750, 2.1750, 2.1750, 2.1750, 2.6100, 2.6100, 2.6100),
}


# robosuite robots that are another robot's arm on a different base, by the arm they are. LIBERO's
# MountedPanda (its table scenes) and OnTheGroundPanda (its floor scenes) load robosuite's own
# robots/panda/robot.xml (the same joints, actuators and limits) and differ only in the mount;
# without this they measured no velocity limits (peak_joint_speed_frac NaN on every LIBERO
# episode) and did not count as the Panda when comparing arms.
SAME_ARM_AS: dict[str, str] = {"MountedPanda": "Panda", "OnTheGroundPanda": "Panda"}


def arm_name(robot_name: str) -> str:
    """The arm a robosuite robot is (``SAME_ARM_AS``): LIBERO's Pandas are the ``"Panda"``."""
    return SAME_ARM_AS.get(robot_name, robot_name)


def velocity_limits(robot_name: str | None, n_joints: int) -> np.ndarray:
    """The arm's joint velocity limits (``ARM_VELOCITY_LIMITS``), or NaN per joint where the
    robot is unknown or the joints are not its arm's."""
    known = ARM_VELOCITY_LIMITS.get(robot_name or "")
    if known is None or len(known) != n_joints:
        return np.full(n_joints, np.nan)
    return np.asarray(known, dtype=np.float64)


def torque_limits(model: mujoco.MjModel, dof_index) -> np.ndarray:
    """The largest generalized force the actuators can apply at each dof, N m (N for slides).

    Per actuator on the joint: ``|gear| * max|forcerange|`` when force-limited, else, for a
    motor (fixed gain, no bias) with a control range, ``|gear| * |gain| * max|ctrlrange|``;
    summed over the joint's actuators, capped by the joint's own ``actuatorfrcrange``. NaN for
    a dof no actuator drives, inf where an actuator is unbounded.
    """
    limits = []
    for dof in np.asarray(dof_index, dtype=np.intp):
        joint = int(model.dof_jntid[dof])
        total, driven = 0.0, False
        for a in range(model.nu):
            if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT or int(model.actuator_trnid[a, 0]) != joint:
                continue
            driven = True
            gear = abs(float(model.actuator_gear[a, 0]))
            if model.actuator_forcelimited[a]:
                total += gear * float(np.abs(model.actuator_forcerange[a]).max())
            elif (
                model.actuator_ctrllimited[a]
                and model.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_FIXED
                and model.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_NONE
            ):
                total += gear * abs(float(model.actuator_gainprm[a, 0])) * float(np.abs(model.actuator_ctrlrange[a]).max())
            else:
                total = np.inf
        limit = total if driven else np.nan
        if model.jnt_actfrclimited[joint]:
            limit = min(limit, float(np.abs(model.jnt_actfrcrange[joint]).max())) if driven else np.nan
        limits.append(limit)
    return np.asarray(limits, dtype=np.float64)


def _hinges(model: mujoco.MjModel, names: list[str]) -> list[str]:
    """The hinge joints among ``names``, or all of the model's when ``names`` has none."""

    def hinge(j: int) -> bool:
        return j >= 0 and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE

    chosen = [n for n in names if hinge(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n))]
    return chosen or [model.joint(j).name for j in range(model.njnt) if hinge(j)]


def _mocap_welds(model: mujoco.MjModel) -> list[tuple[int, int]]:
    """(mocap body, the body it moves) for each active weld between a mocap body and a body."""
    welds = []
    for e in range(model.neq):
        if model.eq_type[e] != mujoco.mjtEq.mjEQ_WELD or not model.eq_active0[e]:
            continue
        a, b = int(model.eq_obj1id[e]), int(model.eq_obj2id[e])
        if model.eq_objtype[e] == mujoco.mjtObj.mjOBJ_SITE:
            a, b = int(model.site_bodyid[a]), int(model.site_bodyid[b])
        for mocap, body in ((a, b), (b, a)):
            if model.body_mocapid[mocap] >= 0 and model.body_mocapid[body] < 0:
                welds.append((mocap, body))
    return welds


def _ancestors(model: mujoco.MjModel, body: int) -> list[int]:
    """``body`` and the bodies above it, up to (not including) the world."""
    chain = []
    while body != 0:
        chain.append(body)
        body = int(model.body_parentid[body])
    return chain


def _refuse_wrong_default(model: mujoco.MjModel, names: list[str], env_name: str) -> None:
    """Refuse a default joint choice that is not the arm, naming the joints to pass instead."""
    for mocap, welded in _mocap_welds(model):
        # every actuated joint sits at or below the welded body (the gripper's fingers, or none):
        # the arm above it follows the mocap through the weld, and no actuator moves it
        below = [n for n in names if welded in _ancestors(model, int(model.joint(n).bodyid[0]))]
        if len(below) < len(names):
            continue
        arm = [
            model.joint(j).name
            for body in reversed(_ancestors(model, welded))
            for j in range(int(model.body_jntadr[body]), int(model.body_jntadr[body] + model.body_jntnum[body]))
            if model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
        ]
        actuated = f"the actuated joints {names} are the gripper's, below the weld" if names else "no joint is actuated"
        raise RobotNotFoundError(
            f"{env_name}: the arm is moved by the mocap body {model.body(mocap).name!r}, welded to "
            f"{model.body(welded).name!r}, and no actuator drives its joints ({actuated}), so the default "
            f"joints would not be the arm. Expected joint_names= with the arm's hinge joints: joint_names={arm} "
            "(their energy_j and effort_nm2s are 0, the weld moves them: docs/metrics.md, 'Arm joints')"
        )
    slides = [n for n in names if model.jnt_type[model.joint(n).id] == mujoco.mjtJoint.mjJNT_SLIDE]
    if slides:
        raise RobotNotFoundError(
            f"{env_name}: the default joints (the actuated ones) include the slide joints {slides} (metres); "
            f"{', '.join(HINGE_ONLY_KEYS)} add every joint up in radians. Expected joint_names= with hinge "
            f"joints only, e.g. joint_names={_hinges(model, names)}"
        )


def _actuated_joints(model: mujoco.MjModel) -> list[str]:
    names: list[str] = []
    for a in range(model.nu):
        if model.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT:
            continue
        jid = int(model.actuator_trnid[a, 0])
        if model.jnt_type[jid] in _ONE_DOF_JOINTS and model.joint(jid).name not in names:
            names.append(model.joint(jid).name)
    return names


def _chain_end_body(model: mujoco.MjModel, joint_names: list[str]) -> int:
    """The deepest body carrying an arm joint, followed down while the chain has one child."""

    def depth(body: int) -> int:
        d = 0
        while body != 0:
            body, d = int(model.body_parentid[body]), d + 1
        return d

    bodies = [int(model.jnt_bodyid[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, n)]) for n in joint_names]
    body = max(bodies, key=depth)
    while True:
        children = [b for b in range(model.nbody) if b != body and model.body_parentid[b] == body]
        if len(children) != 1:
            return body
        body = children[0]


def _resolve_ee(model: mujoco.MjModel, ee_site: str | None, ee_body: str | None, default_body: int) -> tuple[str, str, int]:
    if ee_site is not None and ee_body is not None:
        raise ValueError("pass ee_site or ee_body, not both")
    for kind, name, obj, count, accessor in (
        ("site", ee_site, mujoco.mjtObj.mjOBJ_SITE, model.nsite, model.site),
        ("body", ee_body, mujoco.mjtObj.mjOBJ_BODY, model.nbody, model.body),
    ):
        if name is not None:
            ident = mujoco.mj_name2id(model, obj, name)
            if ident < 0:
                known = [accessor(i).name for i in range(count)]
                raise RobotNotFoundError(f"ee_{kind} {name!r} does not exist: expected one of {known}")
            return kind, name, ident
    return "body", model.body(default_body).name, default_body


def read_robot(
    env: gym.Env,
    joint_names: list[str] | tuple[str, ...] | None = None,
    ee_site: str | None = None,
    ee_body: str | None = None,
) -> RobotReadout:
    """Locate the arm of ``env`` (any wrapper depth). Re-run after a reset that rebuilds the model."""
    base = env.unwrapped
    rs = getattr(base, "robosuite_env", None)
    if rs is not None:
        return _read_robosuite(rs, joint_names, ee_site, ee_body)
    found = _find_simulation(base)
    if found is None:
        raise RobotNotFoundError(
            f"cannot find a MuJoCo model in {env}: expected a vla_envs robosuite task or an env holding a "
            "mujoco.MjModel and mujoco.MjData (as .model/.data, or on one of its attributes)"
        )
    owner, model, data = found
    n_substeps = _substeps(base, owner, model)
    names = list(joint_names) if joint_names is not None else _actuated_joints(model)
    if joint_names is None:
        env_name = base.spec.id if base.spec is not None else type(base).__name__
        _refuse_wrong_default(model, names, env_name)
    if not names:
        raise RobotNotFoundError(
            f"{type(base).__name__} has no actuated joints: expected joint_names= with the arm's hinge joints, "
            f"e.g. joint_names={_hinges(model, [])}"
        )
    dt = float(model.opt.timestep)
    # a gymnasium MujocoEnv steps through _step_mujoco_simulation (hooked with one compiled call);
    # anything else that calls mujoco.mj_step itself is caught at that function
    source = "mujoco_env" if isinstance(owner, MujocoEnv) else "mujoco"
    return _readout(source, model, names, _joint_indices(model, names), (ee_site, ee_body, _chain_end_body(model, names)),
                    control_freq_hz=1.0 / (dt * n_substeps), physics_dt_s=dt, n_substeps=n_substeps,
                    get_model_data=lambda: (owner.model, owner.data), sim_owner=owner)


def _readout(source: str, model: mujoco.MjModel, names: list[str], indices: tuple[np.ndarray, np.ndarray],
             ee: tuple[str | None, str | None, int], **rates_and_access) -> RobotReadout:
    """The readout of joints ``names`` at (qpos, dof) ``indices``, the end effector ``ee`` =
    (site, body, default body) resolved in ``model``; the rest (rates, model access, owners) as given."""
    kind, ee_name, ee_id = _resolve_ee(model, *ee)
    return RobotReadout(source=source, joint_names=tuple(names), qpos_index=indices[0], dof_index=indices[1],
                        ee_kind=kind, ee_name=ee_name, ee_id=ee_id, **rates_and_access)


def _find_simulation(base) -> tuple[object, mujoco.MjModel, mujoco.MjData] | None:
    """(the object holding them, model, data): ``base.model``/``base.data``, else the first of
    ``base``'s attributes that holds both (FrankaKitchen keeps its MujocoEnv in ``robot_env``).
    When ``base`` re-exports another object's model and data, that object is the owner."""
    candidates = [base] + [value for value in vars(base).values() if hasattr(value, "__dict__")]
    for holder in candidates:
        model, data = getattr(holder, "model", None), getattr(holder, "data", None)
        if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
            for other in candidates:  # prefer the MujocoEnv that steps this data
                if other is not holder and isinstance(other, MujocoEnv) and getattr(other, "data", None) is data:
                    return other, model, data
            return holder, model, data
    return None


def _substeps(base, owner, model: mujoco.MjModel) -> int:
    """Physics steps per env.step: ``frame_skip`` (gymnasium, metaworld), ``n_substeps``
    (gymnasium-robotics), or ``dt / timestep``; on the env or on the simulation's owner."""
    for holder in (owner, base):
        for name in ("frame_skip", "n_substeps"):
            value = getattr(holder, name, None)
            if isinstance(value, (int, np.integer)) and value >= 1:
                return int(value)
    dt = getattr(base, "dt", None)
    if isinstance(dt, float) and dt > 0:
        ratio = dt / float(model.opt.timestep)
        if abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1:
            return int(round(ratio))
    raise RobotNotFoundError(
        f"{type(base).__name__}: cannot tell how many physics steps one env.step runs: expected a positive "
        "integer frame_skip or n_substeps, or a dt that is a whole multiple of model.opt.timestep"
    )


def _read_robosuite(rs, joint_names, ee_site, ee_body) -> RobotReadout:
    if len(rs.robots) != 1:
        raise RobotNotFoundError(f"expected a single-robot robosuite env, found {len(rs.robots)} robots")
    robot = rs.robots[0]
    model = rs.sim.model._model

    def model_data():  # robosuite's hard reset replaces the sim: always read the current one
        return rs.sim.model._model, rs.sim.data._data

    if joint_names is None:
        names = list(robot.robot_joints)
        indices = (np.asarray(robot._ref_joint_pos_indexes, dtype=np.intp),
                   np.asarray(robot._ref_joint_vel_indexes, dtype=np.intp))
    else:
        names = list(joint_names)
        indices = _joint_indices(model, names)
    if ee_site is None and ee_body is None:
        arm = robot.arms[0]
        ee_site = robot.gripper[arm].important_sites["grip_site"]
    return _readout("robosuite", model, names, indices, (ee_site, ee_body, 0),
                    control_freq_hz=float(rs.control_freq), physics_dt_s=float(rs.model_timestep),
                    n_substeps=int(round(rs.control_timestep / rs.model_timestep)), get_model_data=model_data,
                    # the arm's own velocity limits apply to its own joints, not to a joint_names= choice
                    robot_name=arm_name(robot.name) if joint_names is None else None)
