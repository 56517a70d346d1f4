"""The checks every checkpoint loader applies to the numbers it reads (normalisers, statistics,
tensors, optimizer states): a wrong-length vector would broadcast and a NaN would spread through
every action, both silently. Checkpoints are data (docs/security.md): what they hold is checked,
never trusted.
"""

from __future__ import annotations

import numpy as np

from policies.error_base import VlaEnvsError


class CheckpointError(VlaEnvsError, ValueError):
    """Stored numbers a policy cannot use: the message names the file, the field or tensor, what
    is wrong with it and what was expected."""


def check_finite(name: str, array) -> None:
    """Raise ``CheckpointError`` when ``array`` (numpy, torch or a nested list) holds NaN or an
    infinity. The message names ``name``, the shape, the kinds found, how many and the first
    index; never the values, which can be millions."""
    if hasattr(array, "detach"):  # torch: its bfloat16 has no numpy dtype, so test it in torch
        values = array.detach()
        nan, finite, shape = values.isnan().cpu().numpy(), values.isfinite().cpu().numpy(), tuple(values.shape)
    else:
        values = np.asarray(array)
        if values.dtype.kind not in "biuf":
            raise CheckpointError(f"{name} holds {values.dtype} values: expected numbers")
        nan, finite, shape = np.isnan(values), np.isfinite(values), values.shape
    if finite.all():
        return
    kinds = " and ".join(kind for kind, found in (("NaN", nan.any()), ("infinity", (~finite & ~nan).any())) if found)
    bad = ~finite
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    raise CheckpointError(f"{name} (shape {shape}) contains {kinds} in {int(bad.sum())} of {bad.size} values "
                          f"(first at index {first}): expected finite numbers")


def check_vector(name: str, values, length: int | None, length_of: str = "", minimum: str = "") -> np.ndarray:
    """``values`` as a float64 vector of ``length`` finite numbers (any length >= 1 when
    ``None``); ``minimum`` is ``"> 0"`` for a divisor, ``">= 0"`` for a bound, or ``""``.
    ``length_of`` says where the expected length comes from (e.g. ``"action_dim"``)."""
    expected = "a vector" if length is None else f"({length},)" + (f" ({length_of})" if length_of else "")
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckpointError(f"{name} is {repr(values)[:60]}: expected numbers of shape {expected}") from None
    if array.ndim != 1 or array.size == 0 or (length is not None and array.shape != (length,)):
        raise CheckpointError(f"{name} has shape {array.shape}: expected shape {expected}")
    check_finite(name, array)
    below = {"> 0": array <= 0, ">= 0": array < 0, "": np.zeros(array.shape, bool)}[minimum]
    if below.any():
        index = int(np.flatnonzero(below)[0])
        raise CheckpointError(f"{name} has {int(below.sum())} of {array.size} values not {minimum} "
                              f"(first: {array[index]:.6g} at index {index}): expected numbers {minimum}")
    return array
