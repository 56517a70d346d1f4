"""Episode-so-far embodied metrics, advanced in O(1) per control step by compiled kernels.

The wrappers run on every step of RL loops over cheap simulators (Pusher-v5 steps in ~50 us),
so the per-step work (sampling the arm, integrating the substep torques, updating the running
sums, appending the recording row) is one numba call over preallocated arrays instead of a
few dozen small numpy operations. ``RunningMetrics.values()`` after T steps equals
``metrics.episode_metrics`` on the same samples (tested); the formulas are in ``docs/metrics.md``.

Each kernel takes one ``ints`` table (plus the action or reward at hand) rather than the dozen
arrays it works on: numba's dispatcher types and unboxes every argument on every call (~40 ns
per array), which made the accounting call with 19 arguments cost ~1 us, 2 % of a Pusher step.
``ints`` holds the address and length of each array instead (``bind_arrays``), and the kernels
rebuild their views from those with ``numba.carray``, for free. Whoever binds an array keeps it
alive for as long as the kernels may run.

Array layouts (all float64 unless noted):

- ``state``: ``[sums(8) | has_qd_prev, has_action | step terms(8) | values(9) | penalties(8) |
  penalty total | dt | f | q(n) | qd(n) | qd_prev(n) | p(3) | a(m)]``; penalties are the step
  terms times the caller's per-term coefficients (EfficiencyReward's -weight/scale); dt is the
  physics timestep (s) and f the control frequency (Hz).
- ``sub``: (substeps, 2n) capture buffer, columns ``[tau | qd]`` of each physics substep.
- ``rows``: the recording, one row per sample t = 0..T:
  ``[time_s | qpos(n) | qvel(n) | qacc(n) | torque(n) | ee_pos(3) | action(m) | reward |
  substep_torque(S*n) | substep_qvel(S*n)]`` (``RowLayout``; substep columns only when stored).
- ``action`` (m): the step's action; ``coefficients`` (8): the penalty weights per term.
- ``ints`` (int64): ``[n, m, store_substeps, record, substep_count, row, warnings, pending, code,
  extra | addresses and lengths (I_QPOS..I_NU) | qidx(n), didx(n)]``; ``pending`` is set when
  an action was accepted and the step is not accounted yet, ``code`` holds the result of an
  advance done inside a simulator hook, ``extra`` counts simulator calls after that advance in
  the same step. The MuJoCo arrays are bound in place (``qpos``, ``qvel``, ``qacc``,
  ``qfrc_actuator``, the end effector's row of ``site_xpos``/``xpos``, the int32 warning
  counters with their stride), so the kernels read the simulator's state directly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

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

# ints slots: counters and flags
I_N, I_M, I_STORE_SUB, I_RECORD, I_COUNT, I_ROW, I_WARN, I_PENDING, I_CODE, I_EXTRA = range(10)
# ints slots: where the arrays live (bind_arrays, bind_rows, bind_simulator)
(
    I_QPOS, I_NQ, I_QVEL, I_QACC, I_QFRC, I_NV, I_EE, I_WARNINGS, I_NWARN, I_WARN_STRIDE,
    I_STATE, I_NSTATE, I_ROWS, I_NROWS, I_WIDTH, I_SUB, I_NSUB, I_ACTION, I_COEF,
    I_MODEL, I_DATA, I_CTRL, I_NU,
) = range(10, 33)
I_IDX = 33  # then qpos indices (n) and dof indices (n) of the arm joints
# state slots
S_SUMS, S_FLAGS, S_TERMS, S_VALUES, S_PENALTIES, S_PENALTY_TOTAL, S_DT, S_F, S_PREV = 0, 8, 10, 18, 27, 35, 36, 37, 38
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


def new_ints(n: int, m: int) -> np.ndarray:
    """An ``ints`` table for n arm joints and m action dims (indices and arrays still to bind)."""
    ints = np.zeros(I_IDX + 2 * n, dtype=np.int64)
    ints[I_N], ints[I_M] = n, m
    return ints


def _address(name: str, array: np.ndarray, dtype=np.float64, ndim: int = 1) -> int:
    """The address of ``array``'s first element, once it is known to be laid out as the kernels read it."""
    if array.dtype != dtype or array.ndim != ndim or not array.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous {ndim}-D {np.dtype(dtype)} array, "
                         f"got {array.dtype} {array.shape} strides {array.strides}")
    return array.ctypes.data


def bind_arrays(
    ints: np.ndarray,
    qpos: np.ndarray,
    qvel: np.ndarray,
    qacc: np.ndarray,
    qfrc: np.ndarray,
    ee_pos: np.ndarray,
    warnings: np.ndarray,
    state: np.ndarray,
    sub: np.ndarray,
    action: np.ndarray,
    coefficients: np.ndarray,
) -> None:
    """Write the addresses and lengths of the arrays the kernels use into ``ints``.

    ``ee_pos`` is the end effector's (3,) row; ``warnings`` the int32 counters (any stride).
    The caller keeps every array alive while the kernels may run; ``rows`` is bound apart
    (``bind_rows``) because it grows.
    """
    n, m = int(ints[I_N]), int(ints[I_M])
    nv = len(qvel)
    if len(qacc) != nv or len(qfrc) != nv or ee_pos.shape != (3,) or action.shape != (m,):
        raise ValueError("qvel, qacc and qfrc must share a length, ee_pos be (3,), action (m,)")
    if state.shape != (state_size(n, m),) or sub.shape[1:] != (2 * n,) or coefficients.shape != (len(STEP_TERM_KEYS),):
        raise ValueError("state, sub or coefficients do not match the joint and action counts")
    if warnings.dtype != np.int32 or warnings.ndim != 1 or warnings.strides[0] % 4 != 0:
        raise ValueError(f"warnings: expected 1-D int32 counters, got {warnings.dtype} strides {warnings.strides}")
    ints[I_QPOS], ints[I_NQ] = _address("qpos", qpos), len(qpos)
    ints[I_QVEL], ints[I_QACC], ints[I_QFRC], ints[I_NV] = (
        _address("qvel", qvel), _address("qacc", qacc), _address("qfrc", qfrc), nv
    )
    ints[I_EE] = _address("ee_pos", ee_pos)
    ints[I_WARNINGS], ints[I_NWARN], ints[I_WARN_STRIDE] = warnings.ctypes.data, len(warnings), warnings.strides[0] // 4
    ints[I_STATE], ints[I_NSTATE] = _address("state", state), len(state)
    ints[I_SUB], ints[I_NSUB] = _address("sub", sub, ndim=2), len(sub)
    ints[I_ACTION] = _address("action", action)
    ints[I_COEF] = _address("coefficients", coefficients)


def bind_rows(ints: np.ndarray, rows: np.ndarray) -> None:
    """Point ``ints`` at the recording buffer (after every reallocation)."""
    ints[I_ROWS], ints[I_NROWS], ints[I_WIDTH] = _address("rows", rows, ndim=2), rows.shape[0], rows.shape[1]


def bind_simulator(ints: np.ndarray, model_address: int, data_address: int, ctrl: np.ndarray) -> None:
    """The ``mjModel*``, ``mjData*`` and ``data.ctrl`` a simulator hook steps (gymnasium MujocoEnv)."""
    ints[I_MODEL], ints[I_DATA] = model_address, data_address
    ints[I_CTRL], ints[I_NU] = _address("ctrl", ctrl), len(ctrl)


@intrinsic
def _float64_pointer(typingctx, address):
    """The int64 ``address`` as a ``double*`` (for ``numba.carray``)."""
    signature = types.CPointer(types.float64)(types.int64)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


@intrinsic
def _int32_pointer(typingctx, address):
    """The int64 ``address`` as an ``int*`` (MuJoCo's warning counters)."""
    signature = types.CPointer(types.int32)(types.int64)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


@numba.njit(cache=True)
def bound_vector(ints, slot, length):  # pragma: no cover - compiled
    """The float64 vector whose address is ``ints[slot]``."""
    return numba.carray(_float64_pointer(ints[slot]), length)


@numba.njit(cache=True)
def _state(ints):  # pragma: no cover - compiled
    return numba.carray(_float64_pointer(ints[I_STATE]), ints[I_NSTATE])


@numba.njit(cache=True)
def _rows(ints):  # pragma: no cover - compiled
    return numba.carray(_float64_pointer(ints[I_ROWS]), (ints[I_NROWS], ints[I_WIDTH]))


@numba.njit(cache=True)
def _sub(ints):  # pragma: no cover - compiled
    return numba.carray(_float64_pointer(ints[I_SUB]), (ints[I_NSUB], 2 * ints[I_N]))


@numba.njit(cache=True)
def _warning_total(ints):  # pragma: no cover - compiled
    stride = ints[I_WARN_STRIDE]
    counters = numba.carray(_int32_pointer(ints[I_WARNINGS]), ints[I_NWARN] * stride)
    total = 0
    for i in range(ints[I_NWARN]):
        total += counters[i * stride]
    return total


@numba.njit(cache=True)
def capture_substep(ints):  # pragma: no cover - compiled
    """After one physics substep: append (tau, qd) of the arm dofs to ``sub``."""
    n = ints[I_N]
    i = ints[I_COUNT]
    if i < ints[I_NSUB]:
        qfrc = bound_vector(ints, I_QFRC, ints[I_NV])
        qvel = bound_vector(ints, I_QVEL, ints[I_NV])
        sub = _sub(ints)
        for k in range(n):
            d = ints[I_IDX + n + k]
            sub[i, k] = qfrc[d]
            sub[i, n + k] = qvel[d]
    ints[I_COUNT] = i + 1


@numba.njit(cache=True)
def _sample_into(ints, row):  # pragma: no cover - compiled
    n = ints[I_N]
    nv = ints[I_NV]
    qpos = bound_vector(ints, I_QPOS, ints[I_NQ])
    qvel = bound_vector(ints, I_QVEL, nv)
    qacc = bound_vector(ints, I_QACC, nv)
    qfrc = bound_vector(ints, I_QFRC, nv)
    ee_pos = bound_vector(ints, I_EE, 3)
    for k in range(n):
        row[1 + k] = qpos[ints[I_IDX + k]]
        d = ints[I_IDX + n + k]
        row[1 + n + k] = qvel[d]
        row[1 + 2 * n + k] = qacc[d]
        row[1 + 3 * n + k] = qfrc[d]
    for k in range(3):
        row[1 + 4 * n + k] = ee_pos[k]


@numba.njit(cache=True)
def reset_episode(ints):  # pragma: no cover - compiled
    """Start an episode from the state after reset: sample t = 0, zero the sums."""
    n = ints[I_N]
    state = _state(ints)
    rows = _rows(ints)
    for i in range(S_DT):
        state[i] = 0.0
    row = rows[0]
    row[0] = 0.0
    _sample_into(ints, row)
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
    ints[I_WARN] = _warning_total(ints)


@numba.njit(cache=True)
def accept_action(ints, source, low, high):  # pragma: no cover - compiled
    """Copy a flat action, clipped to [low, high] (the action the simulator applies), into the
    bound ``action`` and mark the step pending; False (nothing changed) if it holds NaN or inf."""
    for k in range(source.shape[0]):
        if not math.isfinite(source[k]):
            return False
    action = bound_vector(ints, I_ACTION, ints[I_M])
    for k in range(min(source.shape[0], action.shape[0])):
        action[k] = min(max(source[k], low[k]), high[k])
    ints[I_PENDING] = 1
    ints[I_EXTRA] = 0
    return True


@numba.njit(cache=True)
def finish_hooked_step(ints, reward):  # pragma: no cover - compiled
    """After env.step: if a simulator hook already advanced this step, record the reward and
    return its result code; -1 if the step still has to be advanced, -2 if the simulator ran
    again after the advance (unsupported)."""
    if ints[I_PENDING] != 0:
        return -1
    if ints[I_EXTRA] != 0:
        return -2
    if ints[I_RECORD] != 0:
        _rows(ints)[ints[I_ROW], 4 * ints[I_N] + 4 + ints[I_M]] = reward
    return ints[I_CODE]


@numba.njit(cache=True)
def advance_step(ints, reward):  # pragma: no cover - compiled
    """Account one control step. Returns a bit set: ``UNSTABLE`` if the simulation went
    unstable, ``ROWS_FULL`` if ``rows`` has no room for the next step (the caller grows it).

    ``rows`` must have room for row ``ints[I_ROW] + 1`` when recording.
    """
    n, m = ints[I_N], ints[I_M]
    state = _state(ints)
    rows = _rows(ints)
    sub = _sub(ints)
    action = bound_vector(ints, I_ACTION, m)
    coefficients = bound_vector(ints, I_COEF, len(STEP_TERM_KEYS))
    dt = state[S_DT]
    f = state[S_F]
    t = ints[I_ROW] + 1
    record = ints[I_RECORD] != 0
    row = rows[t] if record else rows[0]  # rows[0] is scratch space when not recording
    row[0] = (state[S_SUMS] + 1.0) / f
    _sample_into(ints, row)

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

    total = _warning_total(ints)
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
        self._ints = new_ints(n, m)
        self._ints[I_IDX : I_IDX + n] = np.arange(n)
        self._ints[I_IDX + n :] = np.arange(n)
        self._state = np.zeros(state_size(n, m))
        self._state[S_F] = self.control_freq_hz
        self._rows = np.zeros((1, RowLayout(n, m, 0).width))
        self._action = np.zeros(m)
        self._coefficients = np.zeros(len(STEP_TERM_KEYS))
        self._no_warnings = np.zeros(1, dtype=np.int32)
        bind_rows(self._ints, self._rows)
        self._arrays: tuple = ()

    def _bind(self, qpos, qvel, ee_pos, sub: np.ndarray) -> None:
        # the kernels see raw addresses: self._arrays keeps what they point to alive
        zeros = np.zeros(len(qvel))
        self._arrays = (np.array(qpos, dtype=float), np.array(qvel, dtype=float), zeros,
                        np.array(ee_pos, dtype=float).reshape(3), sub)
        qpos, qvel, zeros, ee_pos, sub = self._arrays
        bind_arrays(self._ints, qpos, qvel, zeros, zeros, ee_pos, self._no_warnings, self._state, sub,
                    self._action, self._coefficients)

    def reset(self, qpos, qvel, ee_pos) -> None:
        self._bind(qpos, qvel, ee_pos, np.zeros((1, 2 * len(qvel))))
        reset_episode(self._ints)

    def update(self, qpos, qvel, ee_pos, action, torque, substep_qvel, dt: float) -> dict[str, float]:
        """Add one control step with its substeps' torques and velocities; returns its terms."""
        torque = np.atleast_2d(np.asarray(torque, float))
        sub = np.ascontiguousarray(np.hstack([torque, np.atleast_2d(np.asarray(substep_qvel, float))]))
        self._bind(qpos, qvel, ee_pos, sub)
        self._ints[I_COUNT] = len(sub)
        self._state[S_DT] = dt
        self._action[:] = np.asarray(action, float).reshape(-1)
        advance_step(self._ints, 0.0)
        return step_terms(self._state)

    def values(self) -> dict[str, float]:
        return metric_values(self._state)


def metric_values(state: np.ndarray) -> dict[str, float]:
    """The episode-so-far metrics from a state array, keyed by ``METRIC_KEYS``."""
    return dict(zip(METRIC_KEYS, state[S_VALUES : S_VALUES + len(METRIC_KEYS)].tolist()))


def step_terms(state: np.ndarray) -> dict[str, float]:
    """The last step's cost terms from a state array, keyed by ``STEP_TERM_KEYS``."""
    return dict(zip(STEP_TERM_KEYS, state[S_TERMS : S_TERMS + len(STEP_TERM_KEYS)].tolist()))
