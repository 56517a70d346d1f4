"""Per-step hashes in ``steps.parquet``: what each control step acted on, hashed as the episode
runs (``StepHasher``); ``evaluation.analysis.reproducibility`` compares two runs' hashes.

Each control step's row of ``steps.parquet`` (row ``k >= 1``; row 0 is the reset) carries short
hashes of what the step's decision was made on and what the policy returned
(``evaluation.schema.HASH_COLUMNS``, ``StepHasher``):

``obs_hash``     the whole observation the step acted on (the one ``queried`` refers to): the hash
                 of its ``image_hash`` and ``state_hash``, so it changes whenever any array does
``image_hash``   its camera arrays only (``is_image``); null when the observation has none
``state_hash``   its other arrays (proprioception, object state, ...); null when it has none
``sim_hash``     the simulator's full ``qpos`` and ``qvel`` when that observation was made (every
                 body, objects included: the proprio in ``state_hash`` does not see a cube slip)
``action_hash``  the action chunk the policy returned, on the rows where it was queried; else null

A hash is blake2b with an 8-byte digest, as 16 hex characters, over each array's key, dtype
(with byte order), shape and bytes, keys sorted (``array_hash``): equal hashes mean equal
bits (but for a 2**-64 chance).
The observation hashes are taken on every step, not only on queries: they cost microseconds
(state) to a fraction of a millisecond (two 224 px images) against the milliseconds of a physics
step and a render, and they place a divergence on the step it happens, not on the next query.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping

import numpy as np
import pyarrow as pa

from evaluation.schema import HASH_COLUMNS

DIGEST_SIZE = 8  # bytes: 16 hex characters; a chance collision needs ~4e9 distinct observations


def _flat_items(obs, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(obs, Mapping):
        for key in sorted(obs, key=str):
            yield from _flat_items(obs[key], f"{prefix}{key}/" if isinstance(obs[key], Mapping) else f"{prefix}{key}")
    else:
        yield prefix, obs


def is_image(key: str, array: np.ndarray) -> bool:
    """A camera array: its key names an image, rgb or depth, or it has 3 or more dimensions."""
    name = key.lower()
    return array.ndim >= 3 or any(word in name for word in ("image", "rgb", "depth"))


def array_hash(items) -> str:
    """blake2b (8 bytes, hex) of ``(key, array)`` pairs in the given order: each key, dtype,
    shape and the array's bytes (C order)."""
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for key, value in items:
        array = np.asarray(value)
        if array.dtype.hasobject:  # a string or other object in the observation: its repr
            array = np.asarray(repr(value).encode())
        array = np.ascontiguousarray(array)
        digest.update(f"{key}\x00{array.dtype.str}\x00{array.shape}\x00".encode())
        digest.update(array.reshape(-1).view(np.uint8) if array.size else b"")
    return digest.hexdigest()


def obs_hashes(obs) -> tuple[str, str | None, str | None]:
    """(obs_hash, image_hash, state_hash) of an observation (a dict of arrays, nested dicts
    flattened to ``a/b`` keys, keys sorted; a bare array is one key ``""``). ``obs_hash`` hashes
    the other two, so it changes whenever any array does and each array is read once."""
    items = [(key, np.asarray(value)) for key, value in _flat_items(obs)]
    images = [(k, v) for k, v in items if is_image(k, v)]
    states = [(k, v) for k, v in items if not is_image(k, v)]
    image, state = array_hash(images) if images else None, array_hash(states) if states else None
    # the whole observation's hash from its two parts' (each array's bytes are read once)
    return array_hash([("image", np.asarray(image or "")), ("state", np.asarray(state or ""))]), image, state


def sim_hash(env) -> str:
    """The simulator's full ``qpos`` and ``qvel`` (float64), hashed."""
    unwrapped = env.unwrapped
    rs = getattr(unwrapped, "robosuite_env", None)
    data = rs.sim.data if rs is not None else unwrapped.data
    return array_hash([("qpos", np.asarray(data.qpos, np.float64)), ("qvel", np.asarray(data.qvel, np.float64))])


def action_hash(chunk) -> str:
    return array_hash([("chunk", chunk)])


class StepHasher:
    """Collects one episode's hash columns: ``observe`` before each control step's action is
    chosen, ``returned`` after it (with the chunk when the step queried the policy)."""

    def __init__(self):
        # row 0 (the reset) acted on nothing
        self.rows: dict[str, list] = {name: [None] for name in HASH_COLUMNS}

    def observe(self, obs, env) -> None:
        for name, value in zip(("obs_hash", "image_hash", "state_hash"), obs_hashes(obs)):
            self.rows[name].append(value)
        self.rows["sim_hash"].append(sim_hash(env))

    def returned(self, chunk) -> None:
        self.rows["action_hash"].append(None if chunk is None else action_hash(chunk))

    def columns(self) -> dict[str, pa.Array]:
        return {name: pa.array(values, pa.string()) for name, values in self.rows.items()}
