"""Per-step episode arrays in preallocated buffers that grow geometrically."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class GrowableArray:
    """Rows of a fixed shape appended into a buffer that doubles when full (amortised O(1))."""

    def __init__(self, row_shape: tuple[int, ...], capacity: int = 256, dtype=np.float64):
        self.row_shape = tuple(row_shape)
        self._buffer = np.empty((max(1, capacity), *self.row_shape), dtype=dtype)
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, row) -> None:
        if self._len == len(self._buffer):
            grown = np.empty((2 * len(self._buffer), *self.row_shape), dtype=self._buffer.dtype)
            grown[: self._len] = self._buffer[: self._len]
            self._buffer = grown
        self._buffer[self._len] = row
        self._len += 1

    def clear(self) -> None:
        self._len = 0

    def view(self) -> np.ndarray:
        """The rows so far (a view: copy it to keep it past the next ``clear``)."""
        return self._buffer[: self._len]

    @property
    def capacity(self) -> int:
        return len(self._buffer)


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
