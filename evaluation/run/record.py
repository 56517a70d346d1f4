"""A run folder's records: ``run.json`` (``evaluation.schema.RunRecord``: config, seeds, versions,
commit, renderer, machine, how far the run got) made, written and read back, and a finished run
read whole (``read_run``: its config, record, episode rows and profiles)."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import NamedTuple

import pyarrow.parquet as pq

from evaluation.run.config import EvalConfig
from evaluation.schema import GitRecord, MachineRecord, RendererRecord, RunRecord
from vla_envs.config import format_validation_error
from vla_envs.errors import VlaEnvsError
from vla_envs.files import atomic_path

_PACKAGES = ("vla-envs", "mujoco", "robosuite", "torch", "gymnasium", "numpy", "pyarrow", "ray")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path | None = None) -> GitRecord:
    """The checkout's commit and whether it has uncommitted changes (read-only git calls)."""
    repo = repo or Path(__file__).resolve().parents[2]  # the checkout holding evaluation/
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return GitRecord(commit=None, dirty=None)
    return GitRecord(commit=commit, dirty=bool(dirty))


def machine() -> MachineRecord:
    return MachineRecord(hostname=socket.gethostname(), platform=platform.platform(),
                         processor=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                         python=sys.version.split()[0])


def renderer(config: EvalConfig) -> RendererRecord:
    images = config.env.obs_mode != "state" or config.recording.videos is not None
    return RendererRecord(MUJOCO_GL=os.environ.get("MUJOCO_GL"), PYOPENGL_PLATFORM=os.environ.get("PYOPENGL_PLATFORM"),
                          used=images, render_quality=config.env.render_quality, image_size=config.env.image_size)


def run_record(config: EvalConfig, config_path: str | None, backend: str, workers: int) -> RunRecord:
    """A call's record before its episodes: what ran, where, with what."""
    return RunRecord(
        config_path=config_path,
        config=config.model_dump(mode="json"),
        seeds={task: config.seed_list for task in config.tasks},
        variants=config.variant_names,
        backend=backend,
        workers=workers,
        packages=package_versions(),
        git=git_commit(),
        renderer=renderer(config),
        machine=machine(),
    )


def write_run_record(record: RunRecord, path: Path) -> None:
    with atomic_path(path) as tmp:  # never a half-written run.json
        tmp.write_text(record.to_json(), encoding="utf-8")


class RunFolderError(VlaEnvsError, ValueError):
    """A folder that is not a finished evaluation run (the message says what is missing)."""


class FinishedRun(NamedTuple):
    config: EvalConfig
    record: RunRecord
    episodes: list[dict]  # episodes.parquet's rows (evaluation.schema.EPISODE_SCHEMA)
    profiles: dict[tuple[str, str], dict]  # (task, variant) -> inference profile


def read_run(run_dir: str | Path) -> FinishedRun:
    """(config, run.json's record, episode rows, profiles keyed by (task, variant)) of a finished run;
    ``RunFolderError`` naming the file and what is wrong with it otherwise (unreadable JSON or
    Parquet, a config that does not validate, missing key columns, an episode held twice)."""
    run_dir = Path(run_dir)
    for name in ("run.json", "episodes.parquet"):
        if not (run_dir / name).is_file():
            raise RunFolderError(f"{run_dir} has no {name}: expected the folder of a finished `vla-envs eval` run")
    record = read_run_record(run_dir / "run.json")
    config = _config_of(record, run_dir / "run.json")
    episodes = _read_episode_rows(run_dir / "episodes.parquet")
    return FinishedRun(config, record, episodes, record.profiles_by_key())


def read_run_record(path: str | Path) -> RunRecord:
    """run.json, typed; ``RunFolderError`` naming the file and the field that is wrong (not JSON,
    no config mapping, a value of another type). Files from earlier versions lack fields; those
    stay unset."""
    from pydantic import ValidationError

    path = Path(path)
    try:
        data = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"{path} is not JSON ({type(exc).__name__} at byte {getattr(exc, 'pos', getattr(exc, 'start', '?'))}): "
                             "expected the run.json a `vla-envs eval` run writes") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise RunFolderError(f"{path} holds no 'config' mapping: expected the run.json a `vla-envs eval` run writes")
    try:
        return RunRecord.model_validate(data)
    except ValidationError as exc:
        raise RunFolderError(format_validation_error(path, exc, what="run record")) from None


def _config_of(record: RunRecord, path: Path) -> EvalConfig:
    from pydantic import ValidationError

    try:
        return EvalConfig.model_validate(record.config)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "config"
        raise RunFolderError(f"{path}: its config is not valid (field 'config.{where}': {first['msg']}; "
                             f"{exc.error_count()} error(s)): expected the config of a `vla-envs eval` run") from None


def _read_episode_rows(path: Path) -> list[dict]:
    """The rows of ``episodes.parquet``, with its key columns of the declared types and each
    (task, variant, seed) once: a row held twice would be counted twice in every success rate."""
    import pyarrow as pa

    from evaluation.schema import EPISODE_SCHEMA, KEY_FIELDS

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise RunFolderError(f"{path} is not a readable Parquet file ({type(exc).__name__}): expected the "
                             "episodes.parquet a `vla-envs eval` run writes") from None
    for name in [field.name for field in KEY_FIELDS] + ["success"]:
        expected = EPISODE_SCHEMA.field(name).type
        if name not in table.column_names:
            raise RunFolderError(f"{path} has no column {name!r}: expected the columns of evaluation.schema.EPISODE_SCHEMA")
        if table.schema.field(name).type != expected:
            raise RunFolderError(f"{path}: column {name!r} is {table.schema.field(name).type}, expected {expected}")
        if table.column(name).null_count:
            raise RunFolderError(f"{path}: column {name!r} has {table.column(name).null_count} empty values, "
                                 "expected one in every row")
    rows = table.to_pylist()
    seen: set[tuple] = set()
    repeated: list[tuple] = []
    for row in rows:
        key = (row["task"], row["variant"], row["seed"])
        if key in seen:
            repeated.append(key)
        seen.add(key)
    if repeated:
        task, variant, seed = repeated[0]
        raise RunFolderError(f"{path} holds {len(repeated)} episode(s) more than once (e.g. {task}/{variant} seed {seed}): "
                             "expected one row per (task, variant, seed)")
    return rows


