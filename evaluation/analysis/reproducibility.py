"""Reproducibility you can diff: per-step hashes in ``steps.parquet`` and the first step where two
runs part.

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

``first_divergence`` walks two recordings of one episode (task, variant, seed) step by step and
names the first step that differs and why, in this order of precedence:

``physics``    ``sim_hash`` or ``state_hash`` differs: the simulation itself went elsewhere
``render``     only ``image_hash`` differs: same physics, other pixels (renderer, image size)
``execution``  the observation is equal but one run queried the policy and the other did not,
               or both executed other actions from equal chunks (the schedule or latency)
``policy``     the observation is equal, the policy returned another chunk
``length``     every common step is equal, one episode is longer (another time limit)
``identical``  every step equal, bit for bit
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluation.schema import HASH_COLUMNS
from vla_envs.errors import VlaEnvsError

DIGEST_SIZE = 8  # bytes: 16 hex characters; a chance collision needs ~4e9 distinct observations
KINDS = ("identical", "physics", "render", "execution", "policy", "length")
DIVERGENCE_COLUMNS = ("task", "variant", "seed", "first_divergent_step", "kind", "steps_a", "steps_b", "detail")


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


# -- comparing two runs ---------------------------------------------------------------------------

class NoHashes(VlaEnvsError, Exception):
    """A run whose steps.parquet cannot be compared step by step (the message says why)."""


@dataclass
class Divergence:
    rows: list[dict]  # DIVERGENCE_COLUMNS, one per episode present in both runs
    message: str | None = None  # why there are no rows (a run without hashes)


def _step_columns() -> list[str]:
    return ["task", "variant", "seed", "step", "queried", "action", *HASH_COLUMNS]


def read_step_hashes(run_dir: str | Path) -> dict[tuple, dict[str, list]]:
    """Per episode (task, variant, seed): its rows' hash columns, ``queried`` and ``action`` as
    lists in step order. ``NoHashes`` when the run has no steps.parquet or one without hashes."""
    import pyarrow.parquet as pq

    path = Path(run_dir) / "steps.parquet"
    if not path.is_file():
        raise NoHashes(f"{path} does not exist (a run with recording.record_steps: false)")
    try:
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as exc:
        raise NoHashes(f"{path} is not a readable Parquet file ({type(exc).__name__})") from None
    missing = [name for name in _step_columns() if name not in names]
    if missing:
        if set(HASH_COLUMNS) & set(missing):
            raise NoHashes(f"{path} has no per-step hashes ({', '.join(HASH_COLUMNS)}): it was written by a "
                           "vla-envs before they were recorded; rerun it to compare step by step")
        raise NoHashes(f"{path} has no column(s) {missing}")
    table = pq.read_table(path, columns=_step_columns()).combine_chunks()
    columns = {name: table.column(name).to_pylist() for name in ("task", "variant", "seed", "step", "queried",
                                                                 *HASH_COLUMNS)}
    actions = _action_bytes(table.column("action"))
    episodes: dict[tuple, dict[str, list]] = {}
    for i, key in enumerate(zip(columns["task"], columns["variant"], columns["seed"])):
        episode = episodes.setdefault(key, {name: [] for name in ("step", "queried", "action", *HASH_COLUMNS)})
        for name in ("step", "queried", *HASH_COLUMNS):
            episode[name].append(columns[name][i])
        episode["action"].append(actions[i])
    for episode in episodes.values():  # step order (the writer keeps it; a concatenation might not)
        order = np.argsort(episode["step"], kind="stable")
        if np.any(order != np.arange(len(order))):
            for name in episode:
                episode[name] = [episode[name][j] for j in order]
    return episodes


def _action_bytes(column: pa.ChunkedArray) -> list[bytes | None]:
    """Each row's executed action as float64 bytes (None for the reset row's null)."""
    import pyarrow.compute as pc

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = np.asarray(pc.fill_null(pc.list_value_length(array), 0), dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)]  # into flatten(), which skips null rows' values
    values = np.asarray(array.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
    valid = np.asarray(array.is_valid())
    return [values[offsets[i]:offsets[i + 1]].tobytes() if valid[i] else None for i in range(len(array))]


def first_divergence(a: dict[str, list], b: dict[str, list]) -> tuple[int | None, str, str]:
    """(first step that differs or None, kind, detail) of one episode recorded in two runs
    (``read_step_hashes``'s per-episode lists)."""
    n_a, n_b = len(a["step"]), len(b["step"])
    for i in range(min(n_a, n_b)):
        differ = [name for name in ("sim_hash", "state_hash", "image_hash", "action_hash", "queried", "action")
                  if a[name][i] != b[name][i]]
        if not differ:
            continue
        step = int(a["step"][i])

        def detail(name):
            return f"{name} {a[name][i]} vs {b[name][i]}"

        if "sim_hash" in differ or "state_hash" in differ:
            return step, "physics", "; ".join(detail(n) for n in ("sim_hash", "state_hash") if n in differ)
        if "image_hash" in differ:
            return step, "render", detail("image_hash") + " (simulator state and proprio equal)"
        if "queried" in differ:
            who = "A" if a["queried"][i] else "B"
            return step, "execution", f"only {who} queried the policy here (schedule or latency)"
        if "action_hash" in differ:
            return step, "policy", detail("action_hash") + " on an equal observation"
        return step, "execution", "other executed action from equal chunks (schedule or latency)"
    if n_a != n_b:
        return min(n_a, n_b), "length", f"every common step equal; {n_a - 1} vs {n_b - 1} control steps"
    return None, "identical", ""


def compare_step_hashes(run_a: str | Path, run_b: str | Path) -> Divergence:
    """One row per episode present in both runs (in A's order): its first divergent step and kind;
    no rows and a message when a run has no hashes."""
    try:
        episodes_a = read_step_hashes(run_a)
        episodes_b = read_step_hashes(run_b)
    except NoHashes as exc:
        return Divergence([], f"no step-by-step comparison: {exc}")
    rows = []
    for key, a in episodes_a.items():
        if key not in episodes_b:
            continue
        b = episodes_b[key]
        step, kind, detail = first_divergence(a, b)
        task, variant, seed = key
        rows.append(dict(zip(DIVERGENCE_COLUMNS, (task, variant, seed, step, kind, len(a["step"]) - 1,
                                                  len(b["step"]) - 1, detail))))
    if not rows:
        return Divergence([], "no step-by-step comparison: the runs share no episode (task, variant, seed)")
    return Divergence(rows)


def write_divergence_csv(rows: list[dict], path: str | Path) -> None:
    import csv

    from vla_envs.files import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=DIVERGENCE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def counts(rows: list[dict]) -> dict[str, int]:
    """Episodes per kind, in ``KINDS`` order, kinds with none left out."""
    return {kind: n for kind in KINDS if (n := sum(r["kind"] == kind for r in rows))}
