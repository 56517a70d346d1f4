"""The action check every layer shares: nothing malformed reaches a simulator."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def non_finite_error(array: np.ndarray) -> ValueError:
    bad = np.flatnonzero(~np.isfinite(array)).tolist()
    return ValueError(f"action has non-finite values at indices {bad}: {array.tolist()}")


def check_action(action, space: gym.Space, context: str = "") -> np.ndarray:
    """Reject a wrong-shape, non-numeric, NaN or inf action with a ValueError naming the problem.

    ``context`` is appended to the shape message (e.g. which controller expects that shape).
    A Box action must hold real numbers (bool, int or float): an object array (``[None] * 7``),
    strings or complex numbers would skip the finiteness check or be cast silently.
    """
    array = action if type(action) is np.ndarray else np.asarray(action)
    if isinstance(space, gym.spaces.Box):
        if array.shape != space.shape:
            raise ValueError(f"action has shape {array.shape}, expected {space.shape}{context}")
        if array.dtype.kind not in "biuf":
            raise ValueError(
                f"action has dtype {array.dtype} ({array.ravel()[:8].tolist()}), expected real numbers "
                f"(float or int) for a Box of {space.dtype}"
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise non_finite_error(array)
    return array
