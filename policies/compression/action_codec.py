"""Action-sequence compression of (H, D) action chunks."""

from __future__ import annotations

import numpy as np
from scipy.fft import dct, idct


def _chunk(chunk) -> np.ndarray:
    array = np.asarray(chunk, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1:
        raise ValueError(f"action chunk must have shape (H, D) with H >= 1, got {array.shape}")
    return array


def dct_compress(chunk, keep: int, quantization_scale: float | None = None) -> np.ndarray:
    """Encode with the orthonormal DCT-II along time, keep the first ``keep`` coefficients per
    action dimension, optionally round coefficients to multiples of 1/``quantization_scale``
    (FAST-style), and decode. ``keep = H`` without quantization is the identity."""
    array = _chunk(chunk)
    horizon = array.shape[0]
    if not 1 <= keep <= horizon:
        raise ValueError(f"keep={keep}: expected 1..{horizon} (the chunk length)")
    coefficients = dct(array, type=2, norm="ortho", axis=0)
    coefficients[keep:] = 0.0
    if quantization_scale is not None:
        if quantization_scale <= 0:
            raise ValueError(f"quantization_scale={quantization_scale}: expected > 0")
        coefficients = np.round(coefficients * quantization_scale) / quantization_scale
    return idct(coefficients, type=2, norm="ortho", axis=0).astype(np.float32)


def temporal_downsample(chunk, factor: int) -> np.ndarray:
    """Keep every ``factor``-th action (and the last), linearly interpolate the rest back."""
    array = _chunk(chunk)
    if factor < 1:
        raise ValueError(f"factor={factor}: expected >= 1")
    horizon = array.shape[0]
    kept = np.unique(np.r_[np.arange(0, horizon, factor), horizon - 1])
    steps = np.arange(horizon)
    out = np.stack([np.interp(steps, kept, array[kept, d]) for d in range(array.shape[1])], axis=1)
    return out.astype(np.float32)
