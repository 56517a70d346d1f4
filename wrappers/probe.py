"""The measurement engine the embodied wrappers share.

One ``EmbodiedProbe`` per environment instance: the innermost of the suite's wrappers creates it
and drives it (action check, substep hook, sampling after reset and each step); wrappers above
find it with ``env.get_wrapper_attr("embodied_probe")`` and read its results, so stacking
``EmbodiedCost``, ``JointStateRecorder`` and ``EfficiencyReward`` measures everything once.
"""

from __future__ import annotations

import math

import gymnasium as gym
import mujoco
import numpy as np

from wrappers.episode_buffer import EpisodeArrays, GrowableArray
from wrappers.robot_readout import RobotReadout, read_robot
from wrappers.running_metrics import RunningMetrics
from wrappers.substep_capture import SubstepCapture, fast_index

_INSTABILITY_WARNINGS = (
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADQPOS,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADCTRL,
)


def check_action(action, space: gym.Space) -> np.ndarray:
    """Reject an action the simulator must not see: wrong shape, NaN or inf (ValueError)."""
    array = np.asarray(action)
    if isinstance(space, gym.spaces.Box):
        if array.shape != space.shape:
            raise ValueError(f"action has shape {array.shape}, expected {space.shape}")
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            bad = np.flatnonzero(~np.isfinite(array)).tolist()
            raise ValueError(f"action has non-finite values at indices {bad}: {array.tolist()}")
    return array


def _warning_count(data: mujoco.MjData) -> int:
    return sum(int(data.warning[w].number) for w in _INSTABILITY_WARNINGS)


class EmbodiedProbe:
    """Samples the arm after reset and every control step; keeps running metrics and (optionally) arrays."""

    def __init__(
        self,
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
    ):
        self.robot_settings = (tuple(joint_names) if joint_names else None, ee_site, ee_body)
        self.readout: RobotReadout | None = None
        self.capture = SubstepCapture()
        self.running: RunningMetrics | None = None
        self.record_steps = False
        self.record_substeps = False
        self.seed: int | None = None
        self.episode_index = -1
        self.sim_unstable = False
        self._warnings = 0
        self._buffers: dict[str, GrowableArray] = {}

    # -- configuration ----------------------------------------------------------------------
    def check_settings(self, joint_names, ee_site, ee_body) -> None:
        wanted = (tuple(joint_names) if joint_names else None, ee_site, ee_body)
        if wanted != (None, None, None) and wanted != self.robot_settings:
            raise ValueError(
                f"this env is already measured with joint_names/ee_site/ee_body = {self.robot_settings}; "
                f"a second wrapper asked for {wanted}: pass the settings to the innermost embodied wrapper only"
            )

    def enable_recording(self, substeps: bool = False) -> None:
        self.record_steps = True
        self.record_substeps = self.record_substeps or substeps

    # -- driven by the owning wrapper -------------------------------------------------------
    def after_reset(self, env: gym.Env, seed: int | None) -> None:
        readout = read_robot(env, *self.robot_settings)
        self.readout = readout
        self.capture.attach(env, readout)
        self._q_index = fast_index(readout.qpos_index)
        self._dof_index = fast_index(readout.dof_index)
        if self.running is None or self.running.control_freq_hz != readout.control_freq_hz:
            self.running = RunningMetrics(readout.control_freq_hz)
        self._dt = readout.physics_dt_s
        self.seed = seed
        self.episode_index += 1
        self.sim_unstable = False
        data = readout.data
        self._data = data
        self._warnings = _warning_count(data)
        q, qd, p = self._sample(data)
        self.running.reset(q, qd, p)
        if self.record_steps:
            self._reset_buffers(env)
            self._append_sample(0.0, q, qd, data)

    def before_step(self, action, space: gym.Space) -> np.ndarray:
        array = check_action(action, space)
        self.capture.begin_step()
        return array

    def after_step(self, action: np.ndarray, reward: float) -> bool:
        """Sample after a control step; returns True when the simulation went unstable."""
        data = self._data
        q, qd, p = self._sample(data)
        n = self.capture.count
        tau = self.capture.torque[:n]
        qd_sub = self.capture.qvel[:n]
        energy = float(np.abs(tau * qd_sub).sum()) * self._dt
        effort = float(np.einsum("ij,ij->", tau, tau)) * self._dt
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        self.running.update(q, qd, p, action, energy, effort)
        warnings = _warning_count(data)
        unstable = warnings > self._warnings or not (math.isfinite(float(q.sum())) and math.isfinite(float(qd.sum())))
        self._warnings = warnings
        self.sim_unstable = self.sim_unstable or unstable
        if self.record_steps:
            self._append_sample(self.running.n_steps / self.running.control_freq_hz, q, qd, data)
            self._buffers["action"].append(action)
            self._buffers["reward"].append(reward)
            if self.record_substeps:
                self._buffers["substep_torque"].append(self.capture.torque[: self._n_sub])
                self._buffers["substep_qvel"].append(self.capture.qvel[: self._n_sub])
        return unstable

    # -- sampling and recording -------------------------------------------------------------
    def _sample(self, data: mujoco.MjData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return data.qpos[self._q_index], data.qvel[self._dof_index], self.readout.ee_position(data)

    def _reset_buffers(self, env: gym.Env) -> None:
        n = self.readout.n_joints
        action_dim = int(np.prod(env.action_space.shape)) if env.action_space.shape else 1
        shapes = {
            "time_s": (),
            "qpos": (n,),
            "qvel": (n,),
            "qacc": (n,),
            "torque": (n,),
            "ee_pos": (3,),
            "action": (action_dim,),
            "reward": (),
        }
        self._n_sub = self.readout.n_substeps
        if self.record_substeps:
            shapes["substep_torque"] = (self._n_sub, n)
            shapes["substep_qvel"] = (self._n_sub, n)
        for key, shape in shapes.items():
            buffer = self._buffers.get(key)
            if buffer is None or buffer.row_shape != shape:
                self._buffers[key] = GrowableArray(shape)
            else:
                buffer.clear()
        for key in set(self._buffers) - set(shapes):
            del self._buffers[key]

    def _append_sample(self, time_s: float, q: np.ndarray, qd: np.ndarray, data: mujoco.MjData) -> None:
        b = self._buffers
        b["time_s"].append(time_s)
        b["qpos"].append(q)
        b["qvel"].append(qd)
        b["qacc"].append(data.qacc[self._dof_index])
        b["torque"].append(data.qfrc_actuator[self._dof_index])
        b["ee_pos"].append(self.readout.ee_position(data))

    def episode_arrays(self, metadata: dict | None = None) -> EpisodeArrays:
        """A copy of the current episode's recorded arrays."""
        if not self.record_steps or not self._buffers:
            raise RuntimeError("nothing recorded: recording is off or no episode has started")
        b = {key: buffer.view().copy() for key, buffer in self._buffers.items()}
        return EpisodeArrays(
            time_s=b["time_s"],
            qpos=b["qpos"],
            qvel=b["qvel"],
            qacc=b["qacc"],
            torque=b["torque"],
            ee_pos=b["ee_pos"],
            action=b["action"],
            reward=b["reward"],
            substep_torque=b.get("substep_torque"),
            substep_qvel=b.get("substep_qvel"),
            metadata=dict(metadata or {}),
        )

    @property
    def n_recorded_steps(self) -> int:
        return len(self._buffers["action"]) if self._buffers else 0

    def close(self) -> None:
        self.capture.detach()


def find_probe(env: gym.Env) -> EmbodiedProbe | None:
    """The probe of an embodied wrapper somewhere below ``env``, if any."""
    try:
        probe = env.get_wrapper_attr("embodied_probe")
    except AttributeError:
        return None
    return probe if isinstance(probe, EmbodiedProbe) else None
