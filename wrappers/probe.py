"""The measurement engine the embodied wrappers share.

One ``EmbodiedProbe`` per environment instance: the innermost of the suite's wrappers creates it
and drives it (action check, substep hook, sampling after reset and each step); wrappers above
find it with ``env.get_wrapper_attr("embodied_probe")`` and read its results, so stacking
``EmbodiedCost``, ``JointStateRecorder`` and ``EfficiencyReward`` measures everything once.
The per-step arithmetic runs in the compiled kernels of ``wrappers.running_metrics``.
"""

from __future__ import annotations


import gymnasium as gym
import numpy as np

from vla_envs.actions import check_action, non_finite_error
from wrappers.episode_buffer import EpisodeArrays
from wrappers.robot_readout import RobotReadout, read_robot
from wrappers.running_metrics import (
    I_IDX,
    I_M,
    I_N,
    I_RECORD,
    I_STORE_SUB,
    S_VALUES,
    STEP_TERM_KEYS,
    RowLayout,
    I_ROW,
    ROWS_FULL,
    S_PENALTIES,
    S_PENALTY_TOTAL,
    UNSTABLE,
    accept_action,
    advance_step,
    finish_hooked_step,
    reset_episode,
    state_size,
)
from wrappers.metrics import METRIC_KEYS
from wrappers.substep_capture import SubstepCapture

_INITIAL_ROWS = 256


class EmbodiedProbe:
    """Samples the arm after reset and every control step; keeps running metrics and (optionally) rows."""

    def __init__(
        self,
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
    ):
        self.robot_settings = (tuple(joint_names) if joint_names else None, ee_site, ee_body)
        self.readout: RobotReadout | None = None
        self.capture = SubstepCapture()
        self.record_steps = False
        self.record_substeps = False
        self.seed: int | None = None
        self.episode_index = -1
        self.sim_unstable = False
        self.layout: RowLayout | None = None
        self._ints = np.zeros(I_IDX, dtype=np.int64)
        self._state = np.zeros(state_size(0, 0))
        self._rows = np.zeros((1, 1))
        self._action = np.zeros(0)
        self._action_shape = None
        self._action_space: gym.Space | None = None
        # per-term coefficients for EfficiencyReward's penalties (STEP_TERM_KEYS order)
        self.penalty_coefficients = np.zeros(len(STEP_TERM_KEYS))
        self._values = self._state[S_VALUES : S_VALUES + len(METRIC_KEYS)]

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
        n = readout.n_joints
        m = int(np.prod(env.action_space.shape)) if env.action_space.shape else 1
        ints = np.zeros(I_IDX + 2 * n, dtype=np.int64)
        ints[I_N], ints[I_M] = n, m
        ints[I_STORE_SUB] = readout.n_substeps if self.record_substeps else 0
        ints[I_RECORD] = int(self.record_steps)
        ints[I_IDX : I_IDX + n] = readout.qpos_index
        ints[I_IDX + n :] = readout.dof_index
        self._ints = ints
        self.layout = RowLayout(n, m, int(ints[I_STORE_SUB]))
        if self._state.shape != (state_size(n, m),):
            self._state = np.zeros(state_size(n, m))
        rows = _INITIAL_ROWS if self.record_steps else 1
        if self._rows.shape[1] != self.layout.width or len(self._rows) < rows:
            self._rows = np.zeros((rows, self.layout.width))
        self._action = np.zeros(m)
        self._action_space = env.action_space
        self._action_shape = env.action_space.shape if isinstance(env.action_space, gym.spaces.Box) else None
        self.capture.attach(env, readout, ints)

        model, data = readout.get_model_data()
        ee_xyz = data.site_xpos if readout.ee_kind == "site" else data.xpos
        # views stay valid for the life of this MjData (robosuite builds a new one per reset)
        self._arrays = (data.qpos, data.qvel, data.qacc, data.qfrc_actuator, ee_xyz, ints)
        self._warnings = data.warning.number
        self._values = self._state[S_VALUES : S_VALUES + len(METRIC_KEYS)]
        self._dt = readout.physics_dt_s
        self._f = readout.control_freq_hz
        self.seed = seed
        self.episode_index += 1
        self.sim_unstable = False
        self._reward_col = self.layout.columns["reward"].start
        self._share_accounting_args()
        reset_episode(*self._arrays, self._state, self._rows, self._warnings)

    def before_step(self, action) -> np.ndarray:
        """Check the action (shape, finiteness) and keep a float64 copy for the metrics."""
        array = action if type(action) is np.ndarray else np.asarray(action)
        if array.shape != self._action_shape or array.dtype.kind != "f":
            return self._before_step_general(array, self._action_space)
        flat = array if array.ndim == 1 else array.reshape(-1)
        if not accept_action(flat, self._action, self._ints):
            raise non_finite_error(array)
        return array

    def _before_step_general(self, array: np.ndarray, space: gym.Space) -> np.ndarray:
        array = check_action(array, space)
        accept_action(np.asarray(array, dtype=np.float64).reshape(-1), self._action, self._ints)
        return array

    def after_step(self, reward) -> bool:
        """Account the control step just taken; returns True when the simulation went unstable."""
        code = finish_hooked_step(self._ints, self._rows, reward, self._reward_col)
        if code == -1:  # no simulator hook did the accounting (robosuite's Python substep loop)
            code = advance_step(
                *self._arrays, self._state, self._rows, self.capture.sub, self._action, reward,
                self.penalty_coefficients, self._dt, self._f, self._warnings,
            )
        if code == 0:
            return False
        if code == -2:
            raise RuntimeError(
                "the environment simulated more than once in one step; the embodied wrappers expect "
                "one _step_mujoco_simulation call per env.step"
            )
        if code & ROWS_FULL:  # double the recording buffer (amortised O(1) per step)
            rows = self._rows
            grown = np.empty((2 * len(rows), rows.shape[1]))
            grown[: len(rows)] = rows
            self._rows = grown
            self._share_accounting_args()
        if code & UNSTABLE:
            self.sim_unstable = True
            return True
        return False

    def _share_accounting_args(self) -> None:
        self.capture.accounting_args = (
            *self._arrays, self._state, self._rows, self.capture.sub, self._action,
            self.penalty_coefficients, self._dt, self._f, self._warnings,
        )

    # -- results ----------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """The episode-so-far metrics, keyed by ``METRIC_KEYS``."""
        return dict(zip(METRIC_KEYS, self._values.tolist()))

    @property
    def rows_capacity(self) -> int:
        """Allocated recording rows (doubles when full)."""
        return len(self._rows)

    def penalties(self) -> tuple[list[float], float]:
        """The last step's weighted cost terms and their sum (see ``penalty_coefficients``)."""
        state = self._state
        return state[S_PENALTIES : S_PENALTIES + len(STEP_TERM_KEYS)].tolist(), float(state[S_PENALTY_TOTAL])

    @property
    def n_recorded_steps(self) -> int:
        return int(self._ints[I_ROW]) if self.record_steps else 0

    def episode_arrays(self, metadata: dict | None = None) -> EpisodeArrays:
        """A copy of the current episode's recorded arrays."""
        if not self.record_steps or self.layout is None:
            raise RuntimeError("nothing recorded: recording is off or no episode has started")
        rows = self._rows[: self.n_recorded_steps + 1]
        cols = self.layout.columns
        n, s = self.layout.n, self.layout.substeps

        def take(name: str, skip_first: bool = False) -> np.ndarray:
            return rows[1 if skip_first else 0 :, cols[name]].copy()

        return EpisodeArrays(
            time_s=take("time_s")[:, 0],
            qpos=take("qpos"),
            qvel=take("qvel"),
            qacc=take("qacc"),
            torque=take("torque"),
            ee_pos=take("ee_pos"),
            action=take("action", True),
            reward=take("reward", True)[:, 0],
            substep_torque=take("substep_torque", True).reshape(-1, s, n) if s else None,
            substep_qvel=take("substep_qvel", True).reshape(-1, s, n) if s else None,
            metadata=dict(metadata or {}),
        )

    def close(self) -> None:
        self.capture.detach()


def find_probe(env: gym.Env) -> EmbodiedProbe | None:
    """The probe of an embodied wrapper somewhere below ``env``, if any."""
    try:
        probe = env.get_wrapper_attr("embodied_probe")
    except AttributeError:
        return None
    return probe if isinstance(probe, EmbodiedProbe) else None


