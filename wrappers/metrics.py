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

METRIC_KEYS: tuple[str, ...] = (
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
    """Every metric of ``METRIC_KEYS`` for one episode (see the module docstring for shapes)."""
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
