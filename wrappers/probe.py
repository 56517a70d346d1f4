"""The measurement the embodied wrappers share, one per environment instance.

The innermost of the suite's wrappers creates the ``EmbodiedProbe`` and drives it: it checks
each action, lets the substep hook (``wrappers.substep_capture``) collect the step's physics
substeps, and after ``env.step`` accounts the step (``wrappers.accounting``) and, when
recording, appends the step's row (``episode_buffer.RowLayout``). Wrappers above find it with
``env.get_wrapper_attr("embodied_probe")`` and read its results, so stacking ``EmbodiedCost``,
``JointStateRecorder`` and ``EfficiencyReward`` measures everything once.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from vla_envs.actions import check_action, non_finite_error
from wrappers.accounting import (
    STABLE,
    UNSTABLE,
    EpisodeState,
    accept_action,
    account_step,
    dict_builder,
    record_row,
    start_episode,
)
from wrappers.episode_buffer import EpisodeArrays, RowLayout
from wrappers.metrics import METRIC_KEYS
from wrappers.robot_readout import RobotReadout, read_robot
from wrappers.substep_capture import SubstepCapture

_INITIAL_ROWS = 256
_metrics_dict = dict_builder(METRIC_KEYS)


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
        self.layout: RowLayout | None = None
        self.state = EpisodeState(0, 0)  # sized at the first reset; EfficiencyReward sets coefficients before
        self.n_recorded_steps = 0
        self._rows = np.zeros((0, 0))
        self._action_space: gym.Space | None = None
        self._action_shape = None
        self._action_low = self._action_high = np.zeros(0)
        self._data = None  # the MjData bound at reset, and its simulated time after the last step
        self._sim_time = 0.0

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
        space = env.action_space
        box = isinstance(space, gym.spaces.Box)
        n = readout.n_joints
        m = int(np.prod(space.shape)) if space.shape else 1
        state = self.state
        if (state.n_joints, state.action_dim) != (n, m):
            coefficients = state.coefficients.copy()
            state = self.state = EpisodeState(n, m)
            state.coefficients[:] = coefficients
        # the metrics see the action the simulator applies: clipped to the Box (robosuite's
        # controllers and MuJoCo's ctrlrange clip), so a +-1e9 command counts as +-1
        self._action_low = np.asarray(space.low, np.float64).reshape(-1) if box else np.full(m, -np.inf)
        self._action_high = np.asarray(space.high, np.float64).reshape(-1) if box else np.full(m, np.inf)
        self._action_space, self._action_shape = space, (space.shape if box else None)
        state.torque_limit[:], state.velocity_limit[:] = readout.limits()
        f = readout.control_freq_hz
        state.rates[:] = readout.physics_dt_s, f, f**4
        self.layout = RowLayout(n, m, readout.n_substeps if self.record_substeps else 0)
        rows = _INITIAL_ROWS if self.record_steps else 1
        if self._rows.shape[1:] != (self.layout.width,) or len(self._rows) < rows:
            self._rows = np.zeros((rows, self.layout.width))
        self.capture.attach(env, readout)

        model, data = readout.get_model_data()
        self._data, self._sim_time = data, data.time
        qidx = np.asarray(readout.qpos_index, dtype=np.int64)
        didx = np.asarray(readout.dof_index, dtype=np.int64)
        ee_pos = readout.ee_position(data)  # views: valid for the life of this MjData
        warnings = data.warning.number
        start_episode(data.qpos, data.qvel, ee_pos, qidx, didx, warnings, state.buffer, state.offsets)
        starts, stored = self.layout.starts, self.layout.substeps
        if self.record_steps:
            record_row(self._rows[0], starts, 0.0, data.qpos, data.qvel, data.qacc, data.qfrc_actuator, ee_pos,
                       qidx, didx, np.full(m, np.nan), np.nan, self.capture.sub, 0, stored)
        # account_step's arguments before and after the row: fixed for this episode
        self._sim_arrays = (data.qpos, data.qvel, data.qacc, data.qfrc_actuator, ee_pos, warnings, qidx, didx,
                            self.capture.sub, self.capture.count, state.buffer, state.offsets)
        self._no_row = np.zeros(0)
        self._starts, self._stored = starts, stored
        self._reward_col = self.layout.columns["reward"].start
        self.n_recorded_steps = 0
        self.readout = readout
        self.seed = seed
        self.episode_index += 1
        self.sim_unstable = False
        self.episode_over = False

    @property
    def penalty_coefficients(self) -> np.ndarray:
        """EfficiencyReward's -weight / scale per cost term (``STEP_TERM_KEYS`` order)."""
        return self.state.coefficients

    def before_step(self, action) -> np.ndarray:
        """Check the action (shape, dtype, finiteness) and keep a float64 copy, clipped to the
        action space, for the metrics."""
        array = action if type(action) is np.ndarray else np.asarray(action)
        if array.shape != self._action_shape or array.dtype.kind != "f":
            return self._before_step_general(array, self._action_space)
        flat = array if array.ndim == 1 else array.reshape(-1)
        if not accept_action(flat, self._action_low, self._action_high, self.state.action):
            raise non_finite_error(array)
        return array

    def _before_step_general(self, array: np.ndarray, space: gym.Space) -> np.ndarray:
        if self.layout is None:  # nothing is bound yet
            raise gym.error.ResetNeeded("Cannot call env.step() before calling env.reset()")
        array = check_action(array, space)
        accept_action(np.asarray(array, dtype=np.float64).reshape(-1), self._action_low, self._action_high,
                      self.state.action)
        return array

    def after_step(self, reward) -> bool:
        """Account the control step just taken; returns True when the simulation went unstable.

        Raises ``RuntimeError`` if the step ran far more substeps than announced, or if the
        simulation was reset or replaced below the wrappers (``env.unwrapped.reset()``): the
        hooks would be on a dead simulator (robosuite builds a new one) or the paths would
        include a teleport. Both show in the MjData bound at reset: its clock was reset
        (gymnasium) or stood still while robosuite stepped the new simulator.
        """
        row = self._no_row
        if self.record_steps:
            t = self.n_recorded_steps + 1
            if t >= len(self._rows):  # double the recording buffer (amortised O(1) per step)
                grown = np.empty((2 * len(self._rows), self._rows.shape[1]))
                grown[: len(self._rows)] = self._rows
                self._rows = grown
            row = self._rows[t]
            self.n_recorded_steps = t
        result = account_step(*self._sim_arrays, row, self._starts, self._stored)
        if self.record_steps:
            row[self._reward_col] = reward  # account_step writes the row but for the reward
        if result == STABLE:
            time_s = self._data.time
            if time_s <= self._sim_time:
                raise RuntimeError(
                    "the simulation was reset or replaced below the embodied wrappers (e.g. env.unwrapped.reset()): "
                    f"sim time went from {self._sim_time:g} s to {time_s:g} s in one step; this episode's metrics "
                    "are invalid. Call reset() on the outermost wrapper."
                )
            self._sim_time = time_s
            return False
        if result == UNSTABLE:
            self.sim_unstable = True
            return True
        self.n_recorded_steps -= self.record_steps
        raise RuntimeError(
            f"the environment ran more than {len(self.capture.sub)} physics substeps in one step, expected "
            f"{self.readout.n_substeps}; the embodied wrappers expect one simulation call per env.step"
        )

    # -- results ----------------------------------------------------------------------------
    def values(self) -> dict[str, float]:
        """The episode-so-far metrics, keyed by ``METRIC_KEYS`` (a new dict on every call)."""
        return _metrics_dict(self.state.values.tolist())

    @property
    def rows_capacity(self) -> int:
        """Allocated recording rows (doubles when full)."""
        return len(self._rows)

    def penalties(self) -> list[float]:
        """The last step's weighted cost terms (``STEP_TERM_KEYS`` order, see
        ``penalty_coefficients``) followed by their sum."""
        return self.state.penalties.tolist()

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
        # a copy would hold hooks into the same live simulator as this probe
        raise TypeError(
            "an EmbodiedProbe is hooked into a live simulator and cannot be copied or pickled; "
            "wrap a new env instead (gym.make(env.spec) rebuilds the wrappers)"
        )


def find_probe(env: gym.Env) -> EmbodiedProbe | None:
    """The probe of an embodied wrapper somewhere below ``env``, if any."""
    try:
        probe = env.get_wrapper_attr("embodied_probe")
    except AttributeError:
        return None
    return probe if isinstance(probe, EmbodiedProbe) else None
