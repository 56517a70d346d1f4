"""Reproducibility you can diff: the first step where two runs part, from the per-step hashes in
``steps.parquet`` (``evaluation.schema.HASH_COLUMNS``, written by ``evaluation.run.step_hashes``:
what each step acted on, the simulator state, and the chunk the policy returned).

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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from evaluation.schema import HASH_COLUMNS
from vla_envs.errors import VlaEnvsError

KINDS = ("identical", "physics", "render", "execution", "policy", "length")
DIVERGENCE_COLUMNS = ("task", "variant", "seed", "first_divergent_step", "kind", "steps_a", "steps_b", "detail")

# hashing moved to evaluation.run.step_hashes (it runs with the episode); the old names import from
# here for one release, with a DeprecationWarning
_MOVED_TO_STEP_HASHES = frozenset({"DIGEST_SIZE", "is_image", "array_hash", "obs_hashes", "sim_hash", "action_hash",
                                   "StepHasher"})


def __getattr__(name: str):
    if name not in _MOVED_TO_STEP_HASHES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    from evaluation.run import step_hashes

    warnings.warn(f"evaluation.analysis.reproducibility.{name} moved to evaluation.run.step_hashes.{name}; the old "
                  "path works until the release after 0.6", DeprecationWarning, stacklevel=2)
    return getattr(step_hashes, name)


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
