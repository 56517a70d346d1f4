"""Action normalisation: the one place where policy-space actions meet env-space actions.

Policies work in a normalised space (each dimension in [-1, 1], or zero mean / unit variance);
the environment expects its own units. ``ActionNormalizer`` maps both ways and is saved with a
policy's config so training and deployment agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ActionNormalizer:
    """Affine map ``normalized = (action - offset) / scale`` per action dimension."""

    offset: np.ndarray
    scale: np.ndarray

    def __post_init__(self):
        offset = np.asarray(self.offset, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if offset.shape != scale.shape or offset.ndim != 1:
            raise ValueError(f"offset {offset.shape} and scale {scale.shape} must be 1-D of the same length")
        if not (np.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"scale must be finite and positive, got {scale.tolist()}")
        object.__setattr__(self, "offset", offset)
        object.__setattr__(self, "scale", scale)

    @classmethod
    def from_bounds(cls, low, high) -> "ActionNormalizer":
        """Map [low, high] to [-1, 1] (e.g. from a Box action space)."""
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        return cls((high + low) / 2.0, np.maximum((high - low) / 2.0, 1e-12))

    @classmethod
    def from_data(cls, actions: np.ndarray, min_std: float = 1e-3) -> "ActionNormalizer":
        """Zero mean, unit variance over a dataset of actions (rows)."""
        actions = np.asarray(actions, np.float64).reshape(-1, np.shape(actions)[-1])
        return cls(actions.mean(axis=0), np.maximum(actions.std(axis=0), min_std))

    def normalize(self, action: np.ndarray) -> np.ndarray:
        return ((np.asarray(action, np.float64) - self.offset) / self.scale).astype(np.float32)

    def unnormalize(self, action: np.ndarray) -> np.ndarray:
        return (np.asarray(action, np.float64) * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict:
        return {"offset": self.offset.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "ActionNormalizer":
        return cls(np.asarray(data["offset"]), np.asarray(data["scale"]))
