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
    I_RECORD,
    I_ROW,
    I_STORE_SUB,
    ROWS_FULL,
    S_DT,
    S_F,
    S_PENALTIES,
    S_PENALTY_TOTAL,
    S_VALUES,
    STEP_TERM_KEYS,
    UNSTABLE,
    RowLayout,
    accept_action,
    advance_step,
    bind_arrays,
    bind_rows,
    finish_hooked_step,
    new_ints,
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
        self.episode_over = False
        self._data = None  # the MjData bound at reset, and its simulated time after the last step
        self._sim_time = 0.0
        self.layout: RowLayout | None = None
        self._ints = new_ints(0, 0)
        self._state = np.zeros(state_size(0, 0))
        self._rows = np.zeros((1, 1))
        self._sub = np.zeros((0, 0))  # (substeps, 2n) = [tau | qd] of each physics substep
        self._action = np.zeros(0)
        self._action_shape = None
        self._action_space: gym.Space | None = None
        self._action_low: np.ndarray | None = None
        self._action_high: np.ndarray | None = None
        # per-term coefficients for EfficiencyReward's penalties (STEP_TERM_KEYS order)
        self.penalty_coefficients = np.zeros(len(STEP_TERM_KEYS))
        self._values = self._state[S_VALUES : S_VALUES + len(METRIC_KEYS)]
        self._penalties = self._state[S_PENALTIES : S_PENALTY_TOTAL + 1]

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
        n = readout.n_joints
        m = int(np.prod(env.action_space.shape)) if env.action_space.shape else 1
        ints = new_ints(n, m)
        ints[I_STORE_SUB] = readout.n_substeps if self.record_substeps else 0
        ints[I_RECORD] = int(self.record_steps)
        ints[I_IDX : I_IDX + n] = readout.qpos_index
        ints[I_IDX + n :] = readout.dof_index
        layout = RowLayout(n, m, int(ints[I_STORE_SUB]))
        if self._state.shape != (state_size(n, m),):
            self._state = np.zeros(state_size(n, m))
        self._state[S_DT] = readout.physics_dt_s
        self._state[S_F] = readout.control_freq_hz
        rows = _INITIAL_ROWS if self.record_steps else 1
        if self._rows.shape[1] != layout.width or len(self._rows) < rows:
            self._rows = np.zeros((rows, layout.width))
        # room for twice the announced substeps: a step that runs more is still captured
        if self._sub.shape != (2 * readout.n_substeps, 2 * n):
            self._sub = np.zeros((2 * readout.n_substeps, 2 * n))
        self._action = np.zeros(m)

        model, data = readout.get_model_data()
        ee_pos = (data.site_xpos if readout.ee_kind == "site" else data.xpos)[readout.ee_id]
        # views stay valid for the life of this MjData (robosuite builds a new one per reset)
        arrays = (data.qpos, data.qvel, data.qacc, data.qfrc_actuator, ee_pos, data.warning.number,
                  self._state, self._sub, self._action, self.penalty_coefficients)
        bind_arrays(ints, *arrays)
        bind_rows(ints, self._rows)
        # only a complete table reaches the hooks and the kernels: an unbound one would make
        # them dereference null addresses
        self.capture.attach(env, readout, ints, arrays, self._rows)
        self._ints = ints
        self.readout = readout
        self.layout = layout
        self._action_space = env.action_space
        box = isinstance(env.action_space, gym.spaces.Box)
        self._action_shape = env.action_space.shape if box else None
        # the metrics see the action the simulator applies: clipped to the Box (robosuite's
        # controllers and MuJoCo's ctrlrange clip), so a +-1e9 command counts as +-1;
        # accept_action clips while it copies
        self._action_low = np.asarray(env.action_space.low, np.float64).reshape(-1) if box else None
        self._action_high = np.asarray(env.action_space.high, np.float64).reshape(-1) if box else None
        self._values = self._state[S_VALUES : S_VALUES + len(METRIC_KEYS)]
        self._penalties = self._state[S_PENALTIES : S_PENALTY_TOTAL + 1]
        self.seed = seed
        self.episode_index += 1
        self.sim_unstable = False
        self.episode_over = False
        self._data, self._sim_time = data, data.time
        reset_episode(ints)

    def before_step(self, action) -> np.ndarray:
        """Check the action (shape, dtype, finiteness) and keep a float64 copy, clipped to the
        action space, for the metrics."""
        array = action if type(action) is np.ndarray else np.asarray(action)
        if array.shape != self._action_shape or array.dtype.kind != "f":
            return self._before_step_general(array, self._action_space)
        flat = array if array.ndim == 1 else array.reshape(-1)
        if not accept_action(self._ints, flat, self._action_low, self._action_high):
            raise non_finite_error(array)
        return array

    def _before_step_general(self, array: np.ndarray, space: gym.Space) -> np.ndarray:
        if self.layout is None:  # nothing is bound for the kernels yet
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        array = check_action(array, space)
        flat = np.asarray(array, dtype=np.float64).reshape(-1)
        if self._action_low is not None:
            accept_action(self._ints, flat, self._action_low, self._action_high)
        else:  # not a Box: nothing to clip to
            accept_action(self._ints, flat, np.full(flat.shape, -np.inf), np.full(flat.shape, np.inf))
        return array

    def after_step(self, reward) -> bool:
        """Account the control step just taken; returns True when the simulation went unstable."""
        code = finish_hooked_step(self._ints, reward)
        if code == -1:  # no simulator hook did the accounting (robosuite's Python substep loop)
            code = advance_step(self._ints, reward)
        if code == 0:
            self._check_simulation_continued()
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
            bind_rows(self._ints, grown)
            self.capture.bound_rows = grown
        if code & UNSTABLE:
            self.sim_unstable = True
            return True
        self._check_simulation_continued()
        return False

    def _check_simulation_continued(self) -> None:
        """The step ran on the simulation bound at reset, and its clock moved on: a reset below
        the wrappers (``env.unwrapped.reset()``) would otherwise leave the hooks on a dead
        simulator (robosuite builds a new one) or add a teleport to the paths."""
        # the MjData bound at reset: a reset below resets its clock (gymnasium) or leaves it
        # standing while robosuite steps the new simulator it built
        time_s = self._data.time
        if time_s <= self._sim_time:
            raise RuntimeError(
                "the simulation was reset or replaced below the embodied wrappers (e.g. env.unwrapped.reset()): "
                f"sim time went from {self._sim_time:g} s to {time_s:g} s in one step; this episode's metrics "
                "are invalid. Call reset() on the outermost wrapper."
            )
        self._sim_time = time_s

    # -- results ----------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """The episode-so-far metrics, keyed by ``METRIC_KEYS`` (a new dict on every call)."""
        v = self._values.tolist()
        # a dict display builds in half the time of dict(zip(METRIC_KEYS, v)): it runs every step
        return {
            "completion_time_s": v[0],
            "ee_path_m": v[1],
            "joint_path_rad": v[2],
            "joint_rotation_rad": v[3],
            "jerk_ms": v[4],
            "action_rate": v[5],
            "energy_j": v[6],
            "effort_nm2s": v[7],
            "n_steps": v[8],
        }

    @property
    def rows_capacity(self) -> int:
        """Allocated recording rows (doubles when full)."""
        return len(self._rows)

    def penalties(self) -> list[float]:
        """The last step's weighted cost terms (``STEP_TERM_KEYS`` order, see
        ``penalty_coefficients``) followed by their sum."""
        return self._penalties.tolist()

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

    def __reduce_ex__(self, protocol):
        # a copy would share the raw addresses in its kernel table with this probe (and write
        # into its arrays, or into freed memory): refuse, as for any live simulator handle
        raise TypeError(
            "an EmbodiedProbe holds raw addresses of live simulator memory and cannot be copied or "
            "pickled; wrap a new env instead (gym.make(env.spec) rebuilds the wrappers)"
        )


def find_probe(env: gym.Env) -> EmbodiedProbe | None:
    """The probe of an embodied wrapper somewhere below ``env``, if any."""
    try:
        probe = env.get_wrapper_attr("embodied_probe")
    except AttributeError:
        return None
    return probe if isinstance(probe, EmbodiedProbe) else None


