"""Action normalisation: the one place where policy-space actions meet env-space actions.

Policies work in a normalised space (each dimension in [-1, 1], or zero mean / unit variance);
the environment expects its own units. ``ActionNormalizer`` maps both ways and is saved with a
policy's config so training and deployment agree.

``from_dict`` checks what a checkpoint stored (``policies.checkpoint_checks``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from policies.checkpoint_checks import CheckpointError, check_finite, check_vector


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
        check_finite("action normalizer offset", offset)  # a NaN offset would make every action NaN
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
    def from_dict(cls, data: dict, action_dim: int | None = None, source: str = "action_normalizer") -> "ActionNormalizer":
        """The normaliser ``to_dict`` wrote, checked: ``offset`` and ``scale`` of ``action_dim``
        finite numbers each (a shorter vector would broadcast silently), ``scale > 0``; errors
        name ``source`` (the file and field) and the entry."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source} is {type(data).__name__}: expected an object with 'offset' and 'scale'")
        if not {"offset", "scale"} <= data.keys():
            raise CheckpointError(f"{source} has keys {sorted(data)}: expected 'offset' and 'scale'")
        offset = check_vector(f"{source}.offset", data["offset"], action_dim, "action_dim")
        scale = check_vector(f"{source}.scale", data["scale"], len(offset), "action_dim" if action_dim else "the offset's",
                             minimum="> 0")
        return cls(offset, scale)
