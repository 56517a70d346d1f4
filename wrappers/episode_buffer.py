"""One recorded episode as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeArrays:
    """One recorded episode. Samples t = 0..T have T + 1 rows; actions and rewards have T.

    Units: time_s s; qpos rad (or m for slide joints); qvel rad/s; qacc rad/s^2; torque N m
    (the actuator torque of the last physics substep of each control step); ee_pos m.
    ``substep_torque`` / ``substep_qvel``: (T, substeps, joints), present when recorded.
    """

    time_s: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    qacc: np.ndarray
    torque: np.ndarray
    ee_pos: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    substep_torque: np.ndarray | None = None
    substep_qvel: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.action)
