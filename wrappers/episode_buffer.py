"""One recorded episode as arrays."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeArrays:
    """One recorded episode. Samples t = 0..T have T + 1 rows; actions and rewards have T.

    Units: time_s s; qpos rad (hinge joints only: robot_readout); qvel rad/s; qacc rad/s^2; torque N m
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


# One recording row per sample t = 0..T: (name, width) with n joints, m action dims and S stored
# substeps (0 when substeps are not stored). The recording kernel and episode_arrays read the
# columns from RowLayout; nothing else knows an offset.
ROW_FIELDS: tuple[tuple[str, str], ...] = (
    ("time_s", "1"),
    ("qpos", "n"),
    ("qvel", "n"),
    ("qacc", "n"),
    ("torque", "n"),
    ("ee_pos", "3"),
    ("action", "m"),
    ("reward", "1"),
    ("substep_torque", "S*n"),
    ("substep_qvel", "S*n"),
)


@dataclass(frozen=True)
class RowLayout:
    """Column ranges of the recording rows for n joints, m action dims, S stored substeps."""

    n: int
    m: int
    substeps: int

    def _widths(self) -> list[int]:
        sizes = {"1": 1, "3": 3, "n": self.n, "m": self.m, "S*n": self.substeps * self.n}
        return [sizes[size] for _, size in ROW_FIELDS]

    @property
    def columns(self) -> dict[str, slice]:
        starts = np.cumsum([0, *self._widths()])
        return {name: slice(int(a), int(b)) for (name, _), a, b in zip(ROW_FIELDS, starts[:-1], starts[1:])}

    @property
    def starts(self) -> np.ndarray:
        """The first column of each field, in ``ROW_FIELDS`` order (for the recording kernel)."""
        return np.cumsum([0, *self._widths()])[:-1].astype(np.int64)

    @property
    def width(self) -> int:
        return int(sum(self._widths()))
