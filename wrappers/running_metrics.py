"""Episode-so-far embodied metrics, advanced in O(1) per control step by compiled kernels.

The wrappers run on every step of RL loops over cheap simulators (Pusher-v5 steps in ~50 us),
so the per-step work (sampling the arm, integrating the substep torques, updating the running
sums, appending the recording row) is one numba call over preallocated arrays instead of a
few dozen small numpy operations. ``RunningMetrics.values()`` after T steps equals
``metrics.episode_metrics`` on the same samples (tested); the formulas are in ``docs/metrics.md``.

Array layouts (all float64 unless noted):

- ``state``: ``[sums(8) | has_qd_prev, has_action | step terms(8) | values(9) | penalties(8) |
  penalty total | q(n) | qd(n) | qd_prev(n) | p(3) | a(m)]``; penalties are the step terms times
  the caller's per-term coefficients (EfficiencyReward's -weight/scale).
- ``sub``: (substeps, 2n) capture buffer, columns ``[tau | qd]`` of each physics substep.
- ``rows``: the recording, one row per sample t = 0..T:
  ``[time_s | qpos(n) | qvel(n) | qacc(n) | torque(n) | ee_pos(3) | action(m) | reward |
  substep_torque(S*n) | substep_qvel(S*n)]`` (``RowLayout``; substep columns only when stored).
- ``ints`` (int64): ``[n, m, store_substeps, record, substep_count, row, ee_id, warnings,
  pending, code, extra, qidx(n), didx(n)]``; ``pending`` is set when an action was accepted and
  the step is not accounted yet, ``code`` holds the result of an advance done inside a
  simulator hook, ``extra`` counts simulator calls after that advance in the same step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from wrappers.metrics import METRIC_KEYS

# Per-step summands of the additive cost terms (what EfficiencyReward penalises).
STEP_TERM_KEYS: tuple[str, ...] = (
    "time_s",  # 1 / f
    "ee_path_m",  # ||p_t - p_{t-1}||
    "joint_path_rad",  # ||q_t - q_{t-1}||
    "joint_rotation_rad",  # sum_j |q_tj - q_{t-1,j}|
    "jerk_sq",  # f^4 ||qd_t - 2 qd_{t-1} + qd_{t-2}||^2 (0 until 3 samples exist), rad^2/s^6
    "action_change",  # ||a_t - a_{t-1}|| (0 on the first step)
    "energy_j",  # this step's substeps: sum |tau qd| dt
    "effort_nm2s",  # this step's substeps: sum tau^2 dt
)

# ints slots
I_N, I_M, I_STORE_SUB, I_RECORD, I_COUNT, I_ROW, I_EE, I_WARN, I_PENDING, I_CODE, I_EXTRA, I_IDX = range(12)
# state slots
S_SUMS, S_FLAGS, S_TERMS, S_VALUES, S_PENALTIES, S_PENALTY_TOTAL, S_PREV = 0, 8, 10, 18, 27, 35, 36
# advance_step return bits
UNSTABLE, ROWS_FULL = 1, 2


@dataclass(frozen=True)
class RowLayout:
    """Column offsets of the recording rows for n joints, m action dims, S stored substeps."""

    n: int
    m: int
    substeps: int  # 0 when substeps are not stored

    @property
    def columns(self) -> dict[str, slice]:
        n, m, s = self.n, self.m, self.substeps
        starts = {}
        offset = 0
        for name, width in (
            ("time_s", 1), ("qpos", n), ("qvel", n), ("qacc", n), ("torque", n), ("ee_pos", 3),
            ("action", m), ("reward", 1), ("substep_torque", s * n), ("substep_qvel", s * n),
        ):
            starts[name] = slice(offset, offset + width)
            offset += width
        return starts

    @property
    def width(self) -> int:
        return 4 * self.n + self.m + 5 + 2 * self.substeps * self.n


def state_size(n: int, m: int) -> int:
    return S_PREV + 3 * n + 3 + m


@numba.njit(cache=True)
def capture_substep(qfrc, qvel, ints, sub):  # pragma: no cover - compiled
    """After one physics substep: append (tau, qd) of the arm dofs to ``sub``."""
    n = ints[I_N]
    i = ints[I_COUNT]
    if i < sub.shape[0]:
        for k in range(n):
            d = ints[I_IDX + n + k]
            sub[i, k] = qfrc[d]
            sub[i, n + k] = qvel[d]
    ints[I_COUNT] = i + 1


@numba.njit(cache=True)
def _sample_into(qpos, qvel, qacc, qfrc, ee_xyz, ints, row):  # pragma: no cover - compiled
    n = ints[I_N]
    ee = ints[I_EE]
    for k in range(n):
        row[1 + k] = qpos[ints[I_IDX + k]]
        d = ints[I_IDX + n + k]
        row[1 + n + k] = qvel[d]
        row[1 + 2 * n + k] = qacc[d]
        row[1 + 3 * n + k] = qfrc[d]
    for k in range(3):
        row[1 + 4 * n + k] = ee_xyz[ee, k]


@numba.njit(cache=True)
def reset_episode(qpos, qvel, qacc, qfrc, ee_xyz, ints, state, rows, warnings):  # pragma: no cover
    """Start an episode from the state after reset: sample t = 0, zero the sums."""
    n = ints[I_N]
    for i in range(S_PREV):
        state[i] = 0.0
    row = rows[0]
    row[0] = 0.0
    _sample_into(qpos, qvel, qacc, qfrc, ee_xyz, ints, row)
    for k in range(4 * n + 4, rows.shape[1]):
        row[k] = np.nan  # no action, reward or substeps at t = 0
    p = S_PREV
    for k in range(n):
        state[p + k] = row[1 + k]
        state[p + n + k] = row[1 + n + k]
    for k in range(3):
        state[p + 3 * n + k] = row[1 + 4 * n + k]
    ints[I_ROW] = 0
    ints[I_COUNT] = 0
    ints[I_PENDING] = 0
    ints[I_EXTRA] = 0
    total = 0
    for w in warnings:
        total += w
    ints[I_WARN] = total


@numba.njit(cache=True)
def accept_action(source, target, ints):  # pragma: no cover - compiled
    """Copy a flat action into ``target`` and mark the step pending; False (nothing changed)
    if the action holds NaN or inf."""
    for k in range(source.shape[0]):
        if not math.isfinite(source[k]):
            return False
    for k in range(source.shape[0]):
        target[k] = source[k]
    ints[I_PENDING] = 1
    ints[I_EXTRA] = 0
    return True


@numba.njit(cache=True)
def finish_hooked_step(ints, rows, reward, reward_col):  # pragma: no cover - compiled
    """After env.step: if a simulator hook already advanced this step, record the reward and
    return its result code; -1 if the step still has to be advanced, -2 if the simulator ran
    again after the advance (unsupported)."""
    if ints[I_PENDING] != 0:
        return -1
    if ints[I_EXTRA] != 0:
        return -2
    if ints[I_RECORD] != 0:
        rows[ints[I_ROW], reward_col] = reward
    return ints[I_CODE]


@numba.njit(cache=True)
def advance_step(
    qpos, qvel, qacc, qfrc, ee_xyz, ints, state, rows, sub, action, reward, coefficients, dt, f, warnings
):  # pragma: no cover - compiled
    """Account one control step. Returns a bit set: ``UNSTABLE`` if the simulation went
    unstable, ``ROWS_FULL`` if ``rows`` has no room for the next step (the caller grows it).

    ``rows`` must have room for row ``ints[I_ROW] + 1`` when recording.
    """
    n, m = ints[I_N], ints[I_M]
    t = ints[I_ROW] + 1
    record = ints[I_RECORD] != 0
    row = rows[t] if record else rows[0]  # rows[0] is scratch space when not recording
    row[0] = (state[S_SUMS] + 1.0) / f
    _sample_into(qpos, qvel, qacc, qfrc, ee_xyz, ints, row)

    # energy and effort over the substeps of this step
    count = min(ints[I_COUNT], sub.shape[0])
    energy = 0.0
    effort = 0.0
    for i in range(count):
        for k in range(n):
            tau = sub[i, k]
            energy += abs(tau * sub[i, n + k])
            effort += tau * tau
    energy *= dt
    effort *= dt

    p = S_PREV
    ee_sq = 0.0
    for k in range(3):
        d = row[1 + 4 * n + k] - state[p + 3 * n + k]
        ee_sq += d * d
    joint_sq = 0.0
    rotation = 0.0
    jerk_sq = 0.0
    has_prev2 = state[S_FLAGS] != 0.0
    finite = True
    for k in range(n):
        q = row[1 + k]
        qd = row[1 + n + k]
        if not (math.isfinite(q) and math.isfinite(qd)):
            finite = False
        d = q - state[p + k]
        joint_sq += d * d
        rotation += abs(d)
        if has_prev2:
            d2 = qd - 2.0 * state[p + n + k] + state[p + 2 * n + k]
            jerk_sq += d2 * d2
    jerk_sq *= f**4 if has_prev2 else 0.0
    action_sq = 0.0
    has_action = state[S_FLAGS + 1] != 0.0
    for k in range(m):
        if has_action:
            d = action[k] - state[p + 3 * n + 3 + k]
            action_sq += d * d
    ee_step = math.sqrt(ee_sq)
    joint_step = math.sqrt(joint_sq)
    action_change = math.sqrt(action_sq)

    # running sums, this step's terms, previous samples
    state[S_SUMS + 0] += 1.0
    state[S_SUMS + 1] += ee_step
    state[S_SUMS + 2] += joint_step
    state[S_SUMS + 3] += rotation
    state[S_SUMS + 4] += jerk_sq
    state[S_SUMS + 5] += action_change
    state[S_SUMS + 6] += energy
    state[S_SUMS + 7] += effort
    terms = S_TERMS
    state[terms + 0] = 1.0 / f
    state[terms + 1] = ee_step
    state[terms + 2] = joint_step
    state[terms + 3] = rotation
    state[terms + 4] = jerk_sq
    state[terms + 5] = action_change
    state[terms + 6] = energy
    state[terms + 7] = effort
    for k in range(n):
        state[p + 2 * n + k] = state[p + n + k]
        state[p + k] = row[1 + k]
        state[p + n + k] = row[1 + n + k]
    for k in range(3):
        state[p + 3 * n + k] = row[1 + 4 * n + k]
    for k in range(m):
        state[p + 3 * n + 3 + k] = action[k]
    state[S_FLAGS] = 1.0  # from now on qd_prev holds a real sample
    state[S_FLAGS + 1] = 1.0

    # values: the episode-so-far metrics (METRIC_KEYS order)
    steps = state[S_SUMS]
    v = S_VALUES
    state[v + 0] = steps / f
    state[v + 1] = state[S_SUMS + 1]
    state[v + 2] = state[S_SUMS + 2]
    state[v + 3] = state[S_SUMS + 3]
    state[v + 4] = state[S_SUMS + 4] / (steps - 1.0) if steps >= 2.0 else 0.0
    state[v + 5] = state[S_SUMS + 5] / (steps - 1.0) if steps >= 2.0 else 0.0
    state[v + 6] = state[S_SUMS + 6]
    state[v + 7] = state[S_SUMS + 7]
    state[v + 8] = steps

    if record:
        base = 4 * n + 4
        for k in range(m):
            row[base + k] = action[k]
        row[base + m] = reward
        stored = ints[I_STORE_SUB]
        if stored > 0:
            col = base + m + 1
            for i in range(stored):
                for k in range(n):
                    inside = i < count
                    row[col + i * n + k] = sub[i, k] if inside else np.nan
                    row[col + stored * n + i * n + k] = sub[i, n + k] if inside else np.nan
        ints[I_ROW] = t
    ints[I_COUNT] = 0

    penalty_total = 0.0
    for k in range(8):
        penalty = coefficients[k] * state[terms + k]
        state[S_PENALTIES + k] = penalty
        penalty_total += penalty
    state[S_PENALTY_TOTAL] = penalty_total

    total = 0
    for w in warnings:
        total += w
    code = UNSTABLE if (total > ints[I_WARN] or not finite) else 0
    ints[I_WARN] = total
    if record and ints[I_ROW] + 2 > rows.shape[0]:
        code |= ROWS_FULL
    ints[I_PENDING] = 0
    ints[I_CODE] = code
    return code


class RunningMetrics:
    """The kernels over plain arrays: feed samples, read the episode-so-far metrics.

    For offline use and tests; the wrappers call the kernels on the simulator's arrays directly.
    """

    def __init__(self, control_freq_hz: float, n_joints: int, action_dim: int):
        if control_freq_hz <= 0:
            raise ValueError(f"control_freq_hz must be positive, got {control_freq_hz}")
        self.control_freq_hz = float(control_freq_hz)
        n, m = n_joints, action_dim
        self._ints = np.zeros(I_IDX + 2 * n, dtype=np.int64)
        self._ints[[I_N, I_M]] = n, m
        self._ints[I_IDX : I_IDX + n] = np.arange(n)
        self._ints[I_IDX + n :] = np.arange(n)
        self._state = np.zeros(state_size(n, m))
        self._rows = np.zeros((1, RowLayout(n, m, 0).width))
        self._sub = np.zeros((1, 2 * n))
        self._no_warnings = np.zeros(1, dtype=np.int64)

    def reset(self, qpos, qvel, ee_pos) -> None:
        zeros = np.zeros(len(qpos))
        reset_episode(np.asarray(qpos, float), np.asarray(qvel, float), zeros, zeros,
                      np.asarray(ee_pos, float).reshape(1, 3), self._ints, self._state, self._rows, self._no_warnings)

    def update(self, qpos, qvel, ee_pos, action, torque, substep_qvel, dt: float) -> dict[str, float]:
        """Add one control step with its substeps' torques and velocities; returns its terms."""
        torque = np.atleast_2d(np.asarray(torque, float))
        self._sub = np.ascontiguousarray(np.hstack([torque, np.atleast_2d(np.asarray(substep_qvel, float))]))
        self._ints[I_COUNT] = len(self._sub)
        zeros = np.zeros(len(qpos))
        advance_step(np.asarray(qpos, float), np.asarray(qvel, float), zeros, zeros,
                     np.asarray(ee_pos, float).reshape(1, 3), self._ints, self._state, self._rows, self._sub,
                     np.asarray(action, float).reshape(-1), 0.0, np.zeros(8), dt, self.control_freq_hz,
                     self._no_warnings)
        return step_terms(self._state)

    def values(self) -> dict[str, float]:
        return metric_values(self._state)


def metric_values(state: np.ndarray) -> dict[str, float]:
    """The episode-so-far metrics from a state array, keyed by ``METRIC_KEYS``."""
    return dict(zip(METRIC_KEYS, state[S_VALUES : S_VALUES + len(METRIC_KEYS)].tolist()))


def step_terms(state: np.ndarray) -> dict[str, float]:
    """The last step's cost terms from a state array, keyed by ``STEP_TERM_KEYS``."""
    return dict(zip(STEP_TERM_KEYS, state[S_TERMS : S_TERMS + len(STEP_TERM_KEYS)].tolist()))
