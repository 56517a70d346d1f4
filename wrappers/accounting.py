"""How a control step is accounted: one function, after every ``env.step``, over named arrays.

After a step the arm is sampled (joint positions and velocities, end effector), the substeps
the capture hook collected during the step (``[tau | qd]`` rows) are integrated, and the
episode's running sums, this step's cost terms and the metrics so far are updated. The
formulas are those of ``wrappers.metrics`` (``docs/metrics.md``); ``account_step`` after T steps
equals ``metrics.episode_metrics`` and ``metrics.actuator_ledger`` on the same samples (tested).

The episode's state is declared once, ``EPISODE_FIELDS``: ``EpisodeState`` lays it out in one
buffer with a named view per field, and ``account_step`` opens the same views by name
(``_field``). ``account_step`` is plain Python over numpy arrays, compiled by numba because the
wrappers run on every step of cheap simulators (Pusher-v5 steps in ~50 us; the interpreted
function costs about as much again); ``account_step.py_func`` runs the same body in the
interpreter, and the tests check the two give the same bits on Pusher-v5, Reacher-v5 and Lift.

Adding a metric: write its formula in ``wrappers.metrics``, add its key to ``METRIC_KEYS``
there, and set its running value below where the other ``values`` are set (a running sum or
count it needs gets a field in ``EPISODE_FIELDS``; a per-step reward term a key in
``STEP_TERM_KEYS``). ``docs/metrics.md`` walks through it.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from wrappers.episode_buffer import ROW_FIELDS
from wrappers.metrics import LEDGER_KEYS, METRIC_KEYS, SATURATION_THRESHOLD, STEP_TERM_KEYS

K = len(STEP_TERM_KEYS)

# Positions in ``values`` and ``terms``, derived from the key declarations (numba reads module
# globals as constants).
_V = {key: i for i, key in enumerate(METRIC_KEYS)}
V_TIME, V_EE, V_JOINT, V_ROTATION, V_JERK, V_ACTION_RATE, V_ENERGY, V_EFFORT, V_STEPS = (
    _V["completion_time_s"], _V["ee_path_m"], _V["joint_path_rad"], _V["joint_rotation_rad"], _V["jerk_ms"],
    _V["action_rate"], _V["energy_j"], _V["effort_nm2s"], _V["n_steps"],
)
V_POSITIVE, V_NEGATIVE, V_PEAK_TORQUE, V_SATURATION, V_PEAK_SPEED = (_V[key] for key in LEDGER_KEYS)
_T = {key: i for i, key in enumerate(STEP_TERM_KEYS)}
T_TIME, T_EE, T_JOINT, T_ROTATION, T_JERK, T_ACTION, T_ENERGY, T_EFFORT = (_T[key] for key in STEP_TERM_KEYS)

# The episode's counts (the "counts" field below), by name: substep torque samples at or above
# SATURATION_THRESHOLD of their limit, torque samples of joints with a limit, speed samples of
# joints with a limit, control steps, and MuJoCo's warning total at the last sample.
COUNT_FIELDS: tuple[str, ...] = ("saturated_samples", "torque_samples", "speed_samples", "steps", "warnings")
C_SATURATED, C_TORQUE_SAMPLES, C_SPEED_SAMPLES, C_STEPS, C_WARNINGS = range(len(COUNT_FIELDS))

# The columns of a recording row (episode_buffer.ROW_FIELDS): record_row's ``starts[R_...]`` is
# where each begins.
_R = {name: i for i, (name, _) in enumerate(ROW_FIELDS)}
R_TIME, R_QPOS, R_QVEL, R_QACC, R_TORQUE, R_EE, R_ACTION, R_REWARD, R_SUB_TAU, R_SUB_QD = (
    _R["time_s"], _R["qpos"], _R["qvel"], _R["qacc"], _R["torque"], _R["ee_pos"], _R["action"], _R["reward"],
    _R["substep_torque"], _R["substep_qvel"],
)

# The running state of one episode: (name, size) with n arm joints and m action dimensions.
# EpisodeState lays them out in one float64 buffer, in this order, and names a view of each; the
# compiled functions take the buffer and the offsets (one argument each, not one per array,
# because numba checks every argument's type on every call) and rebuild the same views by name.
EPISODE_FIELDS: tuple[tuple[str, int | str], ...] = (
    ("sums", K),  # running sums of the step terms (STEP_TERM_KEYS order)
    ("terms", K),  # this step's terms
    ("penalties", K + 1),  # terms times the coefficients, then their total
    ("values", len(METRIC_KEYS)),  # the episode-so-far metrics (METRIC_KEYS order)
    ("counts", len(COUNT_FIELDS)),  # the episode's counts, COUNT_FIELDS
    ("q_prev", "n"),  # the previous sample of the arm
    ("qd_prev", "n"),
    ("qd_prev2", "n"),
    ("p_prev", 3),
    ("a_prev", "m"),  # the previous step's action
    ("action", "m"),  # this step's action, clipped to the action space
    ("coefficients", K),  # EfficiencyReward's -weight / scale per term (0: no reward shaping)
    ("torque_limit", "n"),  # per joint, NaN where none
    ("velocity_limit", "n"),
    ("rates", 3),  # physics dt (s), control frequency f (Hz), f**4
)
_F = {name: i for i, (name, _) in enumerate(EPISODE_FIELDS)}
(F_SUMS, F_TERMS, F_PENALTIES, F_VALUES, F_COUNTS, F_Q_PREV, F_QD_PREV, F_QD_PREV2, F_P_PREV, F_A_PREV,
 F_ACTION, F_COEFFICIENTS, F_TORQUE_LIMIT, F_VELOCITY_LIMIT, F_RATES) = (_F[name] for name, _ in EPISODE_FIELDS)


def dict_builder(keys: tuple[str, ...]):
    """``values -> {keys[0]: values[0], ...}`` as a generated dict display: it builds in half
    the time of ``dict(zip(keys, values))``, and the info dicts are built on every step."""
    return eval("lambda v: {" + ", ".join(f"{key!r}: v[{i}]" for i, key in enumerate(keys)) + "}")


# account_step's results
STABLE, UNSTABLE, TOO_MANY_SUBSTEPS = 0, 1, 2


class EpisodeState:
    """``EPISODE_FIELDS`` for n joints and m action dims: one zeroed buffer, a named view per
    field (``state.sums``, ``state.values``, ...) and the fields' offsets into the buffer."""

    def __init__(self, n_joints: int, action_dim: int):
        sizes = {"n": n_joints, "m": action_dim}
        self.n_joints, self.action_dim = n_joints, action_dim
        widths = [sizes[size] if isinstance(size, str) else size for _, size in EPISODE_FIELDS]
        self.offsets = np.cumsum([0, *widths]).astype(np.int64)  # field i: offsets[i]:offsets[i + 1]
        self.buffer = np.zeros(int(self.offsets[-1]))
        for (name, _), start, end in zip(EPISODE_FIELDS, self.offsets[:-1], self.offsets[1:]):
            setattr(self, name, self.buffer[start:end])


@numba.njit(cache=True, inline="always")
def _field(buffer, offsets, field):  # pragma: no cover - compiled
    return buffer[offsets[field]:offsets[field + 1]]


@numba.njit(cache=True)
def accept_action(source, low, high, action):  # pragma: no cover - compiled
    """Copy a flat action into ``action``, clipped to [low, high] (the action the simulator
    applies); False (``action`` unchanged) if it holds NaN or inf."""
    for k in range(source.shape[0]):
        if not math.isfinite(source[k]):
            return False
    for k in range(action.shape[0]):
        action[k] = min(max(source[k], low[k]), high[k])
    return True


@numba.njit(cache=True)
def start_episode(qpos, qvel, ee_pos, qidx, didx, warnings, buffer, offsets):  # pragma: no cover - compiled
    """Zero the running state (not the settings: action bounds, coefficients, limits, rates) and
    take the sample at t = 0."""
    for field in (F_SUMS, F_TERMS, F_PENALTIES, F_VALUES, F_COUNTS, F_QD_PREV2, F_A_PREV, F_ACTION):
        array = _field(buffer, offsets, field)
        for k in range(array.shape[0]):
            array[k] = 0.0
    q_prev, qd_prev, p_prev = _field(buffer, offsets, F_Q_PREV), _field(buffer, offsets, F_QD_PREV), _field(buffer, offsets, F_P_PREV)
    for k in range(qidx.shape[0]):
        q_prev[k] = qpos[qidx[k]]
        qd_prev[k] = qvel[didx[k]]
    for k in range(3):
        p_prev[k] = ee_pos[k]
    counts = _field(buffer, offsets, F_COUNTS)
    counts[C_WARNINGS] = _warning_total(warnings)
    # fractions of a limit start at 0.0 like every metric, and stay NaN where no joint has one
    torque_limit, velocity_limit = _field(buffer, offsets, F_TORQUE_LIMIT), _field(buffer, offsets, F_VELOCITY_LIMIT)
    torque_limited = False
    speed_limited = False
    for k in range(qidx.shape[0]):
        torque_limited = torque_limited or math.isfinite(torque_limit[k])
        speed_limited = speed_limited or math.isfinite(velocity_limit[k])
    values = _field(buffer, offsets, F_VALUES)
    values[V_PEAK_TORQUE] = 0.0 if torque_limited else math.nan
    values[V_SATURATION] = 0.0 if torque_limited else math.nan
    values[V_PEAK_SPEED] = 0.0 if speed_limited else math.nan


@numba.njit(cache=True)
def _warning_total(warnings):  # pragma: no cover - compiled
    total = 0.0
    for k in range(warnings.shape[0]):
        total += warnings[k]
    return total


@numba.njit(cache=True)
def account_step(qpos, qvel, qacc, qfrc, ee_pos, warnings, qidx, didx, sub, count, buffer, offsets, row, starts, stored):  # pragma: no cover - compiled
    """Account one control step. Returns ``STABLE``, ``UNSTABLE`` (a non-finite arm sample, or
    MuJoCo raised a warning during the step) or ``TOO_MANY_SUBSTEPS`` (more than ``sub`` holds:
    nothing is accounted).

    ``qpos``, ``qvel``, ``qacc``, ``qfrc``, ``ee_pos``, ``warnings``: the simulator's arrays after
    the step (``qidx``/``didx`` the arm's entries); ``sub[:count[0]]``: the ``[tau | qd]`` rows of
    the step's physics substeps (``count`` is cleared); ``buffer``/``offsets``: the
    ``EpisodeState``. With ``row`` of non-zero length, the step's recording row is written
    (``record_row``) except its reward.
    """
    sums, terms, penalties = _field(buffer, offsets, F_SUMS), _field(buffer, offsets, F_TERMS), _field(buffer, offsets, F_PENALTIES)
    values, counts = _field(buffer, offsets, F_VALUES), _field(buffer, offsets, F_COUNTS)
    q_prev, qd_prev, qd_prev2 = _field(buffer, offsets, F_Q_PREV), _field(buffer, offsets, F_QD_PREV), _field(buffer, offsets, F_QD_PREV2)
    p_prev, a_prev, action = _field(buffer, offsets, F_P_PREV), _field(buffer, offsets, F_A_PREV), _field(buffer, offsets, F_ACTION)
    coefficients = _field(buffer, offsets, F_COEFFICIENTS)
    torque_limit, velocity_limit = _field(buffer, offsets, F_TORQUE_LIMIT), _field(buffer, offsets, F_VELOCITY_LIMIT)
    rates = _field(buffer, offsets, F_RATES)
    dt, f, f4 = rates[0], rates[1], rates[2]
    n_sub = count[0]
    count[0] = 0
    if n_sub > sub.shape[0]:
        return TOO_MANY_SUBSTEPS
    n = qidx.shape[0]
    m = action.shape[0]
    first = counts[C_STEPS] == 0.0
    if row.shape[0] > 0:
        record_row(row, starts, (counts[C_STEPS] + 1.0) / f, qpos, qvel, qacc, qfrc, ee_pos, qidx, didx, action, math.nan, sub, n_sub, stored)

    # the substeps: energy, effort and the actuator ledger
    energy = 0.0
    effort = 0.0
    positive = 0.0
    negative = 0.0
    peak_torque = values[V_PEAK_TORQUE] if counts[C_TORQUE_SAMPLES] > 0.0 else 0.0
    peak_speed = values[V_PEAK_SPEED] if counts[C_SPEED_SAMPLES] > 0.0 else 0.0
    for i in range(n_sub):
        for k in range(n):
            tau = sub[i, k]
            qd = sub[i, n + k]
            power = tau * qd
            energy += abs(power)
            effort += tau * tau
            if power > 0.0:
                positive += power
            else:
                negative += power
            if math.isfinite(torque_limit[k]):
                fraction = abs(tau) / torque_limit[k]
                peak_torque = max(peak_torque, fraction)
                counts[C_SATURATED] += 1.0 if fraction >= SATURATION_THRESHOLD else 0.0
                counts[C_TORQUE_SAMPLES] += 1.0
            if math.isfinite(velocity_limit[k]):
                peak_speed = max(peak_speed, abs(qd) / velocity_limit[k])
                counts[C_SPEED_SAMPLES] += 1.0

    # the sample after the step: paths, jerk, action change
    ee_sq = 0.0
    for k in range(3):
        d = ee_pos[k] - p_prev[k]
        ee_sq += d * d
        p_prev[k] = ee_pos[k]
    joint_sq = 0.0
    rotation = 0.0
    jerk_sq = 0.0
    finite = True
    for k in range(n):
        q = qpos[qidx[k]]
        qd = qvel[didx[k]]
        finite = finite and math.isfinite(q) and math.isfinite(qd)
        d = q - q_prev[k]
        joint_sq += d * d
        rotation += abs(d)
        d2 = qd - 2.0 * qd_prev[k] + qd_prev2[k]
        jerk_sq += d2 * d2
        q_prev[k] = q
        qd_prev2[k] = qd_prev[k]
        qd_prev[k] = qd
    action_sq = 0.0
    for k in range(m):
        d = action[k] - a_prev[k]
        action_sq += d * d
        a_prev[k] = action[k]

    # this step's terms, the running sums, the weighted penalties
    terms[T_TIME] = 1.0 / f
    terms[T_EE] = math.sqrt(ee_sq)
    terms[T_JOINT] = math.sqrt(joint_sq)
    terms[T_ROTATION] = rotation
    terms[T_JERK] = 0.0 if first else f4 * jerk_sq  # from the second step on: three qd samples
    terms[T_ACTION] = 0.0 if first else math.sqrt(action_sq)  # needs the previous action
    terms[T_ENERGY] = energy * dt
    terms[T_EFFORT] = effort * dt
    total = 0.0
    for k in range(terms.shape[0]):
        sums[k] += terms[k]
        penalties[k] = coefficients[k] * terms[k]
        total += penalties[k]
    penalties[terms.shape[0]] = total

    # the metrics so far
    steps = counts[C_STEPS] + 1.0
    counts[C_STEPS] = steps
    values[V_TIME] = steps / f
    values[V_EE] = sums[T_EE]
    values[V_JOINT] = sums[T_JOINT]
    values[V_ROTATION] = sums[T_ROTATION]
    values[V_JERK] = sums[T_JERK] / (steps - 1.0) if steps >= 2.0 else 0.0
    values[V_ACTION_RATE] = sums[T_ACTION] / (steps - 1.0) if steps >= 2.0 else 0.0
    values[V_ENERGY] = sums[T_ENERGY]
    values[V_EFFORT] = sums[T_EFFORT]
    values[V_STEPS] = steps
    values[V_POSITIVE] += positive * dt
    values[V_NEGATIVE] += negative * dt
    if counts[C_TORQUE_SAMPLES] > 0.0:
        values[V_PEAK_TORQUE] = peak_torque
        values[V_SATURATION] = counts[C_SATURATED] / counts[C_TORQUE_SAMPLES]
    if counts[C_SPEED_SAMPLES] > 0.0:
        values[V_PEAK_SPEED] = peak_speed

    warned = _warning_total(warnings)
    unstable = warned > counts[C_WARNINGS] or not finite  # MuJoCo warned (and may have reset its data)
    counts[C_WARNINGS] = warned
    return UNSTABLE if unstable else STABLE


@numba.njit(cache=True)
def record_row(row, starts, time_s, qpos, qvel, qacc, qfrc, ee_pos, qidx, didx, action, reward, sub, n_sub, stored):  # pragma: no cover - compiled
    """One recording row, its columns at ``starts`` (``episode_buffer.RowLayout``, in
    ``ROW_FIELDS`` order); NaN where a value does not exist (the reset row's action and reward,
    substeps the step did not run)."""
    time_col, qpos_col, qvel_col, qacc_col, torque_col, ee_col, action_col, reward_col, sub_tau_col, sub_qd_col = (
        starts[R_TIME], starts[R_QPOS], starts[R_QVEL], starts[R_QACC], starts[R_TORQUE], starts[R_EE],
        starts[R_ACTION], starts[R_REWARD], starts[R_SUB_TAU], starts[R_SUB_QD]
    )
    n = qidx.shape[0]
    row[time_col] = time_s
    for k in range(n):
        d = didx[k]
        row[qpos_col + k] = qpos[qidx[k]]
        row[qvel_col + k] = qvel[d]
        row[qacc_col + k] = qacc[d]
        row[torque_col + k] = qfrc[d]
    for k in range(3):
        row[ee_col + k] = ee_pos[k]
    for k in range(action.shape[0]):
        row[action_col + k] = action[k]
    row[reward_col] = reward
    for i in range(stored):
        for k in range(n):
            inside = i < n_sub
            row[sub_tau_col + i * n + k] = sub[i, k] if inside else math.nan
            row[sub_qd_col + i * n + k] = sub[i, n + k] if inside else math.nan


class RunningMetrics:
    """The accounting over plain arrays, for offline use and tests: feed the samples of an
    episode, read the metrics so far. ``compiled=False`` runs ``account_step``'s own body in
    the interpreter (``py_func``), the reference the compiled code is tested against bit for bit."""

    def __init__(self, control_freq_hz: float, n_joints: int, action_dim: int,
                 torque_limit=None, velocity_limit=None, compiled: bool = True):
        if control_freq_hz <= 0:
            raise ValueError(f"control_freq_hz must be positive, got {control_freq_hz}")
        self.state = EpisodeState(n_joints, action_dim)
        self.state.torque_limit[:] = np.nan if torque_limit is None else torque_limit
        self.state.velocity_limit[:] = np.nan if velocity_limit is None else velocity_limit
        self.state.rates[1:] = control_freq_hz, float(control_freq_hz) ** 4
        self.index = np.arange(n_joints, dtype=np.int64)
        self._account = account_step if compiled else account_step.py_func
        self._no_warnings = np.zeros(1, dtype=np.int32)
        self._count = np.zeros(1, dtype=np.int64)

    def reset(self, qpos, qvel, ee_pos) -> None:
        start_episode(np.asarray(qpos, np.float64), np.asarray(qvel, np.float64), np.asarray(ee_pos, np.float64),
                      self.index, self.index, self._no_warnings, self.state.buffer, self.state.offsets)

    def update(self, qpos, qvel, ee_pos, action, torque, substep_qvel, dt: float) -> dict[str, float]:
        """Add one control step with its substeps' torques and velocities; returns its terms."""
        sub = np.ascontiguousarray(np.hstack([np.atleast_2d(np.asarray(torque, np.float64)),
                                              np.atleast_2d(np.asarray(substep_qvel, np.float64))]))
        self.state.rates[0] = dt
        self.state.action[:] = np.asarray(action, np.float64).reshape(-1)
        self._count[0] = len(sub)
        qvel = np.asarray(qvel, np.float64)
        self._account(np.asarray(qpos, np.float64), qvel, qvel, qvel, np.asarray(ee_pos, np.float64),
                      self._no_warnings, self.index, self.index, sub, self._count, self.state.buffer,
                      self.state.offsets, np.zeros(0), np.zeros(len(ROW_FIELDS), dtype=np.int64), 0)
        return dict(zip(STEP_TERM_KEYS, self.state.terms.tolist()))

    def values(self) -> dict[str, float]:
        return dict(zip(METRIC_KEYS, self.state.values.tolist()))
