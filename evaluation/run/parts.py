"""Per-episode part files: what makes interruption and ``--resume`` safe.

Each finished episode is written atomically (a temporary file, then ``os.replace``) as::

    out/parts/steps/<key>.parquet      its per-step rows (when steps are recorded)
    out/videos/<key>.mp4               its video (when filmed)
    out/parts/episodes/<key>.parquet   its one-row episode record, written last

The episode record is written last, so its presence means the episode is complete; a crash
between the files leaves an orphan steps file that the rerun overwrites. ``completed`` still
checks every record before it counts (readable, one row, its task/variant/seed those of its
name, its steps file complete when steps are recorded): a damaged part is moved to
``parts/corrupt/`` (kept, not deleted) and its episode runs again. ``consolidate``
concatenates the parts, in the plan's order, into ``episodes.parquet`` and ``steps.parquet``:
one row per episode (or step), never duplicated, whatever order the parts were written in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.run.episode import EpisodeResult
from evaluation.run.plan import WorkUnit
from evaluation.schema import episode_record
from vla_envs.files import atomic_path


def atomic_write_bytes(data: bytes, path: Path) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def atomic_write_table(table: pa.Table, path: Path) -> Path:
    """Parquet (zstd) via a temporary file and ``os.replace``: never a half-written file."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


class PartStore:
    """The part files of one output folder."""

    def __init__(self, out_dir: str | Path):
        self.out_dir = Path(out_dir)
        self.episodes_dir = self.out_dir / "parts" / "episodes"
        self.steps_dir = self.out_dir / "parts" / "steps"
        self.videos_dir = self.out_dir / "videos"

    def episode_path(self, unit: WorkUnit) -> Path:
        return self.episodes_dir / f"{unit.key}.parquet"

    def steps_path(self, unit: WorkUnit) -> Path:
        return self.steps_dir / f"{unit.key}.parquet"

    def video_path(self, unit: WorkUnit) -> Path:
        return self.videos_dir / f"{unit.key}.mp4"

    def done_keys(self) -> set[str]:
        """Keys of the episodes whose record exists (not checked: see ``completed``)."""
        if not self.episodes_dir.is_dir():
            return set()
        return {path.stem for path in self.episodes_dir.glob("*.parquet")}

    def problem(self, key: str, expect_steps: bool) -> str | None:
        """Why the parts of episode ``key`` cannot count as done, or ``None`` when they can."""
        path = self.episodes_dir / f"{key}.parquet"
        try:
            table = pq.read_table(path)
        except Exception as exc:  # truncated, empty or not Parquet at all
            return f"unreadable ({type(exc).__name__}: {exc})"
        if table.num_rows != 1:
            return f"holds {table.num_rows} rows, expected 1"
        row = table.to_pylist()[0]
        try:
            named = WorkUnit(row["task"], row["variant"], int(row["seed"]), int(row["episode"])).key
        except (KeyError, TypeError, ValueError) as exc:
            return f"lacks the episode keys ({exc!r})"
        if named != key:
            return f"is the record of {named}, not of {key}"
        if expect_steps:
            steps = self.steps_dir / f"{key}.parquet"
            try:
                rows = pq.read_metadata(steps).num_rows
            except Exception as exc:
                return f"its steps file is missing or unreadable ({type(exc).__name__})"
            expected = int(row["n_steps"]) + 1  # the reset row, then one per control step
            if rows != expected:
                return f"its steps file holds {rows} rows, expected {expected}"
        return None

    def completed(self, expect_steps: bool) -> tuple[set[str], list[str]]:
        """The keys of complete episodes, after moving damaged parts to ``parts/corrupt/``;
        also one message per damaged part."""
        done, messages = set(), []
        for key in sorted(self.done_keys()):
            reason = self.problem(key, expect_steps)
            if reason is None:
                done.add(key)
                continue
            corrupt = self.out_dir / "parts" / "corrupt"
            corrupt.mkdir(parents=True, exist_ok=True)
            for path in (self.episodes_dir / f"{key}.parquet", self.steps_dir / f"{key}.parquet"):
                if path.exists():
                    os.replace(path, corrupt / f"{path.parent.name}__{path.name}")
            messages.append(f"part {key} {reason}: moved to {corrupt}, the episode runs again")
        return done, messages

    def write(self, unit: WorkUnit, result: EpisodeResult) -> None:
        if result.steps is not None:
            atomic_write_table(result.steps, self.steps_path(unit))
        if result.video is not None:
            atomic_write_bytes(result.video, self.video_path(unit))
        atomic_write_table(episode_record(result.row.to_record()), self.episode_path(unit))

    def consolidate(self, units: list[WorkUnit]) -> tuple[pa.Table, int]:
        """Write ``episodes.parquet`` and ``steps.parquet`` from the parts of ``units`` (in that
        order); returns the episodes table and the number of step rows."""
        episodes = pa.concat_tables(
            [pq.read_table(self.episode_path(u)) for u in units], promote_options="default"
        )
        atomic_write_table(episodes, self.out_dir / "episodes.parquet")
        step_paths = [self.steps_path(u) for u in units if self.steps_path(u).exists()]
        n_step_rows = 0
        if step_paths:
            n_step_rows = _concat_parquet(step_paths, self.out_dir / "steps.parquet")
        return episodes, n_step_rows


def _concat_parquet(paths: list[Path], out: Path) -> int:
    """Stream ``paths`` into one Parquet file (atomically), one part in memory at a time. Parts
    written by an older vla-envs (a resumed run) may lack columns added since (the per-step
    hashes): those are null in their rows."""
    schemas = [pq.read_schema(path) for path in paths]
    schema = max(schemas, key=len)  # the newest layout: a superset of the older ones
    rows = 0
    with atomic_path(out) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
        for path in paths:
            table = pq.read_table(path)
            for field in schema:
                if field.name not in table.column_names:
                    table = table.append_column(field, pa.nulls(table.num_rows, field.type))
            table = table.select(schema.names).cast(schema)
            rows += table.num_rows
            writer.write_table(table)
    return rows
