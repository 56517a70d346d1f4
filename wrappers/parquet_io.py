"""Episodes as Parquet files: one row per sample, list columns for vectors, atomic writes.

Row t = 0 is the state after reset (``action``, ``reward`` and the substep columns are null
there); rows 1..T follow each control step. Every row carries the episode keys ``env_id``,
``seed`` and ``episode``; the file's schema metadata ``vla_envs.episode`` holds the episode
metadata as JSON (instruction, wrapper settings, end reason, metrics). pandas, polars and
DuckDB read the files as they are (``SELECT * FROM 'runs/*.parquet'``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vla_envs.files import atomic_path, create_new

from wrappers.episode_buffer import EpisodeArrays

METADATA_KEY = b"vla_envs.episode"
_SAMPLE_COLUMNS = ("qpos", "qvel", "qacc", "torque", "ee_pos")


def _list_column(rows: np.ndarray, leading_null: bool = False) -> pa.Array:
    """(N, k) -> list<double> with N rows; with ``leading_null`` a null row is put first."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    n, width = rows.shape[0], int(np.prod(rows.shape[1:]))
    values = pa.array(rows.reshape(-1))
    if rows.ndim == 3:  # (N, substeps, joints) -> list<list<double>>
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, rows.shape[2], dtype=np.int32)), values)
        values, width = inner, rows.shape[1]
    offsets = np.arange(0, n * width + 1, width, dtype=np.int32)
    if leading_null:
        offsets = np.concatenate([[0], offsets]).astype(np.int32)
        mask = pa.array(np.r_[True, np.zeros(n, dtype=bool)])
        return pa.ListArray.from_arrays(pa.array(offsets), values, mask=mask)
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def episode_table(episode: EpisodeArrays) -> pa.Table:
    """The Arrow table of one episode (see the module docstring for the layout)."""
    meta = episode.metadata
    n_rows = len(episode.time_s)
    columns: dict[str, pa.Array] = {
        "env_id": pa.array([meta.get("env_id")] * n_rows, pa.string()).dictionary_encode(),
        "seed": pa.array([meta.get("seed")] * n_rows, pa.int64()),
        "episode": pa.array(np.full(n_rows, meta.get("episode", 0), dtype=np.int64)),
        "step": pa.array(np.arange(n_rows, dtype=np.int32)),
        "time_s": pa.array(episode.time_s.astype(np.float64)),
    }
    for key in _SAMPLE_COLUMNS:
        columns[key] = _list_column(getattr(episode, key))
    columns["action"] = _list_column(episode.action, leading_null=True)
    reward = np.r_[np.nan, episode.reward]
    columns["reward"] = pa.array(reward, mask=np.r_[True, np.zeros(len(episode.reward), dtype=bool)])
    if episode.substep_torque is not None:
        columns["substep_torque"] = _list_column(episode.substep_torque, leading_null=True)
        columns["substep_qvel"] = _list_column(episode.substep_qvel, leading_null=True)
    table = pa.table(columns)
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, default=_json_default).encode()})


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"episode metadata value {value!r} of type {type(value).__name__} is not JSON-serialisable")


def write_episode(episode: EpisodeArrays, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then ``os.replace``.

    A crash or kill mid-write leaves no file at ``path`` (a stray ``.tmp`` at most, which no
    ``*.parquet`` glob matches).
    """
    table = episode_table(episode)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return Path(path)


def write_new_episode(episode: EpisodeArrays, candidates: Iterable[str | Path]) -> Path:
    """Write like ``write_episode`` under the first of ``candidates`` that does not exist yet
    (``vla_envs.files.create_new``: never replacing a file); returns the path taken."""
    table = episode_table(episode)
    return create_new(lambda tmp: pq.write_table(table, tmp, compression="zstd"), candidates)


def _stack_list_column(column: pa.ChunkedArray, skip_first: bool) -> np.ndarray:
    array = column.combine_chunks()
    if skip_first:
        array = array.slice(1)
    rows = len(array)
    values = array.flatten()
    if pa.types.is_list(values.type):  # nested: (rows, substeps, joints)
        inner = values.flatten().to_numpy()
        substeps = len(values) // max(rows, 1)
        return inner.reshape(rows, substeps, -1) if rows else inner.reshape(0, 0, 0)
    flat = values.to_numpy()
    return flat.reshape(rows, -1) if rows else flat.reshape(0, 0)


def read_metadata(path: str | Path) -> dict:
    """The episode metadata of a file written by ``write_episode``, without reading its rows."""
    raw = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_episode(path: str | Path) -> EpisodeArrays:
    """Read a file written by ``write_episode`` back into arrays (and its metadata)."""
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    metadata = json.loads(raw) if raw else {}
    get = lambda name, skip=False: _stack_list_column(table.column(name), skip)  # noqa: E731
    has_substeps = "substep_torque" in table.column_names
    return EpisodeArrays(
        time_s=table.column("time_s").to_numpy(),
        qpos=get("qpos"),
        qvel=get("qvel"),
        qacc=get("qacc"),
        torque=get("torque"),
        ee_pos=get("ee_pos"),
        action=get("action", True),
        reward=table.column("reward").to_numpy()[1:],
        substep_torque=get("substep_torque", True) if has_substeps else None,
        substep_qvel=get("substep_qvel", True) if has_substeps else None,
        metadata=metadata,
    )
