"""Embodied-efficiency metrics: pure functions, arrays in, floats out.

Shared by the ``EmbodiedCost`` wrapper (running values) and offline analysis of recorded
episodes. Formulas, units and sampling are documented in ``docs/metrics.md``.

Sampling convention, for an episode of T control steps at control frequency f (Hz):

- ``q``, ``qd`` (arm joint positions, rad; velocities, rad/s) and ``p`` (end-effector position, m)
  are sampled at t = 0 (after reset) and after each control step: arrays of T + 1 rows.
- ``actions`` a_1..a_T: T rows.
- ``torque`` and ``substep_qvel``: one row per physics substep (S = T * substeps rows), the
  applied joint torque during the substep and the joint velocity after it; ``dt`` is the
  physics timestep in seconds.
"""

from __future__ import annotations

import numpy as np

# The episode metrics, in the order every table, info dict and file uses (the actuator ledger,
# LEDGER_KEYS below, follows the kinematic and energy metrics).
KINEMATIC_AND_ENERGY_KEYS: tuple[str, ...] = (
    "completion_time_s",
    "ee_path_m",
    "joint_path_rad",
    "joint_rotation_rad",
    "jerk_ms",
    "action_rate",
    "energy_j",
    "effort_nm2s",
    "n_steps",
)
LEDGER_KEYS: tuple[str, ...] = (
    "positive_work_j",
    "negative_work_j",
    "peak_torque_frac",
    "torque_saturation_frac",
    "peak_joint_speed_frac",
)
METRIC_KEYS: tuple[str, ...] = KINEMATIC_AND_ENERGY_KEYS + LEDGER_KEYS
# The metrics that add up every measured joint in radians (N m for torque): one slide joint
# (metres, N) among them would add metres to radians, so the robot readout measures hinge joints
# only (``robot_readout``, docs/metrics.md "Arm joints").
HINGE_ONLY_KEYS: tuple[str, ...] = ("joint_path_rad", "joint_rotation_rad", "jerk_ms", "effort_nm2s")
# What plots and tables call each metric: words and unit (docs/metrics.md has the formulas).
METRIC_LABELS: dict[str, str] = {
    "completion_time_s": "completion time (s)",
    "ee_path_m": "end-effector path length (m)",
    "joint_path_rad": "joint-space path length (rad)",
    "joint_rotation_rad": "cumulative joint rotation (rad)",
    "jerk_ms": "mean squared joint jerk (rad²/s⁶)",
    "action_rate": "mean action change (action units)",
    "energy_j": "motor energy (J)",
    "effort_nm2s": "torque effort (N²m²s)",
    "n_steps": "control steps",
    "positive_work_j": "positive work (J)",
    "negative_work_j": "negative work (J)",
    "peak_torque_frac": "peak torque (fraction of limit)",
    "torque_saturation_frac": "time at torque limit (fraction)",
    "peak_joint_speed_frac": "peak joint speed (fraction of limit)",
}
assert set(METRIC_LABELS) == set(METRIC_KEYS)

# Per-step summands of the additive cost terms (what EfficiencyReward penalises), in order.
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


def _rows(name: str, array: np.ndarray, ndim: int = 2) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array (rows are samples), got shape {array.shape}")
    return array


def completion_time_s(n_steps: int, control_freq_hz: float) -> float:
    """tau = T / f, seconds."""
    if control_freq_hz <= 0:
        raise ValueError(f"control_freq_hz must be positive, got {control_freq_hz}")
    return float(n_steps) / float(control_freq_hz)


def path_length(points: np.ndarray) -> float:
    """sum_t ||x_{t+1} - x_t||_2 over consecutive rows."""
    points = _rows("points", points)
    if len(points) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())


def ee_path_m(ee_pos: np.ndarray) -> float:
    """End-effector path length L_ee = sum_t ||p_{t+1} - p_t||, metres."""
    return path_length(ee_pos)


def joint_path_rad(qpos: np.ndarray) -> float:
    """Joint-space path length L_joint = sum_t ||q_{t+1} - q_t||_2, radians (the paper's)."""
    return path_length(qpos)


def joint_rotation_rad(qpos: np.ndarray) -> float:
    """Total joint rotation sum_t sum_j |q_{t+1,j} - q_{t,j}|, radians."""
    qpos = _rows("qpos", qpos)
    if len(qpos) < 2:
        return 0.0
    return float(np.abs(np.diff(qpos, axis=0)).sum())


def jerk_ms(qvel: np.ndarray, control_freq_hz: float) -> float:
    """Mean squared joint jerk J = f^4 * mean_t ||qd_{t+1} - 2 qd_t + qd_{t-1}||^2, rad^2/s^6.

    The mean runs over the N - 2 interior samples of N velocity samples (the paper's
    f^4 / (T - 2) * sum with its T counting samples); 0 with fewer than 3 samples.
    """
    qvel = _rows("qvel", qvel)
    if len(qvel) < 3:
        return 0.0
    second_diff = qvel[2:] - 2.0 * qvel[1:-1] + qvel[:-2]
    return float(control_freq_hz**4 * np.mean(np.einsum("ij,ij->i", second_diff, second_diff)))


def action_rate(actions: np.ndarray) -> float:
    """Mean action change R = mean_t ||a_{t+1} - a_t||_2 over T - 1 pairs; 0 with T < 2. Action units."""
    actions = _rows("actions", actions)
    if len(actions) < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(actions, axis=0), axis=1).mean())


def jerk_ms_parts(qvel: np.ndarray, control_freq_hz: float, seam: np.ndarray) -> tuple[float, float]:
    """``jerk_ms`` split in two parts that sum to it: (at chunk seams, within chunks).

    Summand k of J uses velocity samples k, k+1, k+2 and belongs to the step of its last sample:
    a seam summand when ``seam[k + 2]`` (that step executed the first action of a new chunk, so
    the second difference holds the switch from the old plan to the new one). ``seam`` has one
    flag per velocity sample.
    """
    qvel = _rows("qvel", qvel)
    if len(qvel) < 3:
        return _split(np.zeros(0), _seam_flags(seam, len(qvel), "velocity sample")[2:])
    second_diff = qvel[2:] - 2.0 * qvel[1:-1] + qvel[:-2]
    summands = control_freq_hz**4 * np.einsum("ij,ij->i", second_diff, second_diff) / len(second_diff)
    return _split(summands, _seam_flags(seam, len(qvel), "velocity sample")[2:])


def action_rate_parts(actions: np.ndarray, seam: np.ndarray) -> tuple[float, float]:
    """``action_rate`` split in two parts that sum to it: (at chunk seams, within chunks). The
    change a_{t+1} - a_t is a seam change when ``seam[t + 1]`` (a_{t+1} opens a new chunk)."""
    actions = _rows("actions", actions)
    flags = _seam_flags(seam, len(actions), "action")[1:]
    if len(actions) < 2:
        return _split(np.zeros(0), flags)
    return _split(np.linalg.norm(np.diff(actions, axis=0), axis=1) / (len(actions) - 1), flags)


def _seam_flags(seam, n: int, per: str) -> np.ndarray:
    seam = np.asarray(seam, dtype=bool)
    if seam.shape != (n,):
        raise ValueError(f"seam has shape {seam.shape}, expected ({n},): one flag per {per}")
    return seam


def _split(summands: np.ndarray, at_seam: np.ndarray) -> tuple[float, float]:
    """(sum where ``at_seam``, sum elsewhere)."""
    return float(summands[at_seam].sum()), float(summands[~at_seam].sum())


def energy_j(torque: np.ndarray, substep_qvel: np.ndarray, dt: float) -> float:
    """Mechanical energy E = sum_substeps sum_j |tau_j * qd_j| * dt, joules (N m rad = J)."""
    torque = _rows("torque", torque)
    substep_qvel = _rows("substep_qvel", substep_qvel)
    if torque.shape != substep_qvel.shape:
        raise ValueError(f"torque {torque.shape} and substep_qvel {substep_qvel.shape} must have the same shape")
    return float(np.abs(torque * substep_qvel).sum() * dt)


def effort_nm2s(torque: np.ndarray, dt: float) -> float:
    """Control effort sum_substeps sum_j tau_j^2 * dt, N^2 m^2 s."""
    torque = _rows("torque", torque)
    return float(np.square(torque).sum() * dt)


def episode_metrics(
    qpos: np.ndarray,
    qvel: np.ndarray,
    ee_pos: np.ndarray,
    actions: np.ndarray,
    torque: np.ndarray,
    substep_qvel: np.ndarray,
    control_freq_hz: float,
    dt: float,
) -> dict[str, float]:
    """Every metric of ``KINEMATIC_AND_ENERGY_KEYS`` for one episode (see the module docstring
    for shapes); ``actuator_ledger`` gives the rest of ``METRIC_KEYS``."""
    n_steps = len(_rows("actions", actions))
    return {
        "completion_time_s": completion_time_s(n_steps, control_freq_hz),
        "ee_path_m": ee_path_m(ee_pos),
        "joint_path_rad": joint_path_rad(qpos),
        "joint_rotation_rad": joint_rotation_rad(qpos),
        "jerk_ms": jerk_ms(qvel, control_freq_hz),
        "action_rate": action_rate(actions),
        "energy_j": energy_j(torque, substep_qvel, dt),
        "effort_nm2s": effort_nm2s(torque, dt),
        "n_steps": float(n_steps),
    }


# -- the actuator ledger ------------------------------------------------------------------------
# Per-substep accounting of what the actuators did, against what they can do. Inputs as for
# energy_j: ``torque`` and ``substep_qvel`` with one row per physics substep and one column per
# arm joint; ``torque_limit`` / ``velocity_limit`` one value per joint (N m, rad/s), NaN or inf
# where the model or robot defines none (those joints are left out of the fractions).
SATURATION_THRESHOLD = 0.98  # a sample at >= 98 % of its joint's torque limit counts as saturated


def _power(torque: np.ndarray, substep_qvel: np.ndarray) -> np.ndarray:
    torque = _rows("torque", torque)
    substep_qvel = _rows("substep_qvel", substep_qvel)
    if torque.shape != substep_qvel.shape:
        raise ValueError(f"torque {torque.shape} and substep_qvel {substep_qvel.shape} must have the same shape")
    return torque * substep_qvel


def positive_work_j(torque: np.ndarray, substep_qvel: np.ndarray, dt: float) -> float:
    """Work the actuators put into the arm, sum_s sum_j max(tau qd, 0) * dt, joules."""
    return float(np.maximum(_power(torque, substep_qvel), 0.0).sum() * dt)


def negative_work_j(torque: np.ndarray, substep_qvel: np.ndarray, dt: float) -> float:
    """Work the actuators took out of the arm (braking), sum_s sum_j min(tau qd, 0) * dt <= 0, J.

    ``positive_work_j - negative_work_j == energy_j`` (|x| = max(x, 0) - min(x, 0))."""
    return float(np.minimum(_power(torque, substep_qvel), 0.0).sum() * dt)


def _limits(name: str, limit, n_joints: int) -> np.ndarray:
    limit = np.asarray(limit, dtype=np.float64)
    if limit.shape != (n_joints,):
        raise ValueError(f"{name} must have one value per joint, shape ({n_joints},), got {limit.shape}")
    if np.any(limit <= 0):
        raise ValueError(f"{name} must be positive (NaN or inf where a joint has none), got {limit.tolist()}")
    return limit


def _fractions(name: str, samples: np.ndarray, limit) -> np.ndarray:
    """|samples| / limit over the joints with a finite limit: (substeps, limited joints)."""
    samples = _rows(name, samples)
    limit = _limits(f"{name} limit", limit, samples.shape[1])
    limited = np.isfinite(limit)
    return np.abs(samples[:, limited]) / limit[limited]


def peak_torque_frac(torque: np.ndarray, torque_limit) -> float:
    """max over substeps and limited joints of |tau| / the joint's torque limit (1.0 = at the
    limit); NaN with no substeps or no limited joint."""
    fractions = _fractions("torque", torque, torque_limit)
    return float(fractions.max()) if fractions.size else float("nan")


def torque_saturation_frac(torque: np.ndarray, torque_limit, threshold: float = SATURATION_THRESHOLD) -> float:
    """Fraction of (substep, limited joint) samples with |tau| >= threshold * limit; NaN with none."""
    fractions = _fractions("torque", torque, torque_limit)
    return float(np.mean(fractions >= threshold)) if fractions.size else float("nan")


def peak_joint_speed_frac(substep_qvel: np.ndarray, velocity_limit) -> float:
    """max over substeps and limited joints of |qd| / the joint's velocity limit; NaN with none."""
    fractions = _fractions("substep_qvel", substep_qvel, velocity_limit)
    return float(fractions.max()) if fractions.size else float("nan")


def actuator_ledger(
    torque: np.ndarray, substep_qvel: np.ndarray, dt: float, torque_limit, velocity_limit
) -> dict[str, float]:
    """Every value of ``LEDGER_KEYS`` for one episode's substeps (see the functions above)."""
    return {
        "positive_work_j": positive_work_j(torque, substep_qvel, dt),
        "negative_work_j": negative_work_j(torque, substep_qvel, dt),
        "peak_torque_frac": peak_torque_frac(torque, torque_limit),
        "torque_saturation_frac": torque_saturation_frac(torque, torque_limit),
        "peak_joint_speed_frac": peak_joint_speed_frac(substep_qvel, velocity_limit),
    }
