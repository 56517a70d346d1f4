"""Episode-so-far embodied metrics, updated in O(1) per control step.

``RunningMetrics.values()`` after T steps equals ``metrics.episode_metrics`` applied to the
same samples (tested); it only avoids re-reading the whole episode on every step.
"""

from __future__ import annotations

import math

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


class RunningMetrics:
    """Running sums of the metric terms over one episode."""

    def __init__(self, control_freq_hz: float):
        if control_freq_hz <= 0:
            raise ValueError(f"control_freq_hz must be positive, got {control_freq_hz}")
        self.control_freq_hz = float(control_freq_hz)
        self._f4 = self.control_freq_hz**4
        self.step_terms: dict[str, float] = dict.fromkeys(STEP_TERM_KEYS, 0.0)
        self.reset(np.zeros(0), np.zeros(0), np.zeros(0))

    def reset(self, qpos: np.ndarray, qvel: np.ndarray, ee_pos: np.ndarray) -> None:
        """Start an episode from the t = 0 sample."""
        self._q = np.array(qpos, dtype=np.float64)
        self._qd = np.array(qvel, dtype=np.float64)
        self._qd_prev: np.ndarray | None = None
        self._p = np.array(ee_pos, dtype=np.float64)
        self._a: np.ndarray | None = None
        self.n_steps = 0
        self._ee_path = self._joint_path = self._joint_rotation = 0.0
        self._jerk_sum = self._action_change_sum = self._energy = self._effort = 0.0
        for key in STEP_TERM_KEYS:
            self.step_terms[key] = 0.0

    def update(
        self,
        qpos: np.ndarray,
        qvel: np.ndarray,
        ee_pos: np.ndarray,
        action: np.ndarray,
        energy_j: float,
        effort_nm2s: float,
    ) -> dict[str, float]:
        """Add control step T + 1; returns this step's terms (``STEP_TERM_KEYS``)."""
        dq = qpos - self._q
        dp = ee_pos - self._p
        ee_step = math.sqrt(float(dp @ dp))
        joint_step = math.sqrt(float(dq @ dq))
        rotation_step = float(np.abs(dq).sum())
        if self._qd_prev is not None:
            d2 = qvel - 2.0 * self._qd + self._qd_prev
            jerk_sq = self._f4 * float(d2 @ d2)
        else:
            jerk_sq = 0.0
        if self._a is not None:
            da = action - self._a
            action_change = math.sqrt(float(da @ da))
        else:
            action_change = 0.0

        self.n_steps += 1
        self._ee_path += ee_step
        self._joint_path += joint_step
        self._joint_rotation += rotation_step
        self._jerk_sum += jerk_sq
        self._action_change_sum += action_change
        self._energy += energy_j
        self._effort += effort_nm2s
        self._qd_prev, self._qd = self._qd, np.array(qvel, dtype=np.float64)
        self._q = np.array(qpos, dtype=np.float64)
        self._p = np.array(ee_pos, dtype=np.float64)
        self._a = np.array(action, dtype=np.float64)

        terms = self.step_terms
        terms["time_s"] = 1.0 / self.control_freq_hz
        terms["ee_path_m"] = ee_step
        terms["joint_path_rad"] = joint_step
        terms["joint_rotation_rad"] = rotation_step
        terms["jerk_sq"] = jerk_sq
        terms["action_change"] = action_change
        terms["energy_j"] = energy_j
        terms["effort_nm2s"] = effort_nm2s
        return terms

    def values(self) -> dict[str, float]:
        """The episode-so-far metrics, keyed by ``metrics.METRIC_KEYS``."""
        t = self.n_steps
        # T steps give T + 1 velocity samples and T - 1 jerk terms; T actions give T - 1 changes.
        return dict(
            zip(
                METRIC_KEYS,
                (
                    t / self.control_freq_hz,
                    self._ee_path,
                    self._joint_path,
                    self._joint_rotation,
                    self._jerk_sum / (t - 1) if t >= 2 else 0.0,
                    self._action_change_sum / (t - 1) if t >= 2 else 0.0,
                    self._energy,
                    self._effort,
                    float(t),
                ),
            )
        )
