"""``vla-envs export RUN --format lerobot|minari``: one dataset per task of a finished run."""

from __future__ import annotations

import re
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

from evaluation.export.lerobot_format import ExportError, write_lerobot
from evaluation.export.minari_format import write_minari
from evaluation.export.replay import recording_files, replay_recordings, replay_run
from evaluation.run.record import read_run
from vla_envs.progress import episode_progress

Format = Literal["lerobot", "minari"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _minari_id(name: str, slug: str) -> str:
    """A Minari dataset id; Minari keeps the dataset in ``<root>/<id>``."""
    return f"vla_envs/{name}-{slug}-v0"


def _run_name(config_name: str | None, run_dir: Path) -> str:
    """``<config>-<run folder>`` (slugs; one of them when they are the same): two runs of one
    config export to two dataset ids."""
    config_slug, run_slug = _slug(config_name or run_dir.name), _slug(run_dir.name)
    return config_slug if config_slug == run_slug else f"{config_slug}-{run_slug}"


def export_run(source: str | Path, fmt: Format, out: str | Path, obs_mode: str | None = None,
               variants: list[str] | None = None, progress: bool = True, console=None,
               lerobot_python: str | None = None) -> list[dict]:
    """Write one dataset per task (a run) or env id (recordings) into ``out``; each row says the
    group, path or dataset id, episodes and frames. ``source`` is a finished run folder or
    ``JointStateRecorder`` Parquet files (a file or a folder)."""
    if fmt not in ("lerobot", "minari"):
        raise ExportError(f"format {fmt!r}: expected 'lerobot' or 'minari'")
    source, out = Path(source), Path(out)
    if (source / "run.json").is_file():
        config, record, episodes, _ = read_run(source)
        chosen = [e for e in episodes if not variants or e["variant"] in variants]
        if not chosen:
            raise ExportError(f"no episodes of variants {variants} in {source}: expected some of {config.variant_names}")
        name = _slug(config.name or source.name)
        minari_name = _run_name(config.name, source.resolve())
        groups = [task for task in config.tasks if any(e["task"] == task for e in chosen)]
        total = len(chosen)
        commit = record.git.commit if record.git is not None else None

        def stream(group):
            return replay_run(source, obs_mode, variants, tasks=[group])

        def make_env(group):
            return config.env.env_for(group, obs_mode)

        def describe(group, env):
            variants_here = sorted({e["variant"] for e in chosen if e["task"] == group})
            return (f"vla-envs eval run {source.name} ({config.name}), task {group} ('{env.unwrapped.instruction}'), "
                    f"variants {variants_here}")

        def episode_metadata(episode) -> dict:
            return {"run": source.resolve().name, "run_started": record.started, "task": episode.record["task"],
                    "variant": episode.record["variant"]}
    else:
        if variants:
            raise ExportError("--variant selects a run's variants: JointStateRecorder files have none")
        files = recording_files(source)
        from wrappers.parquet_io import read_metadata

        metas = [read_metadata(f) for f in files]
        name, commit, total = _slug(source.stem), None, len(files)
        minari_name = name
        groups = list(dict.fromkeys(m.get("env_id") for m in metas))

        def stream(group):
            return replay_recordings(source, obs_mode, env_id=group)

        def make_env(group):
            meta = next(m for m in metas if m.get("env_id") == group)
            kwargs = {**(meta.get("env_kwargs") or {}), **({"obs_mode": obs_mode} if obs_mode else {})}
            return group, kwargs

        def describe(group, env):
            return f"JointStateRecorder episodes from {source} ({group}, '{env.unwrapped.instruction}')"

        def episode_metadata(episode) -> dict:
            return {"file": episode.record["file"], "env_id": episode.record["env_id"]}

    # every dataset's place checked before the first replay: a second export into the same --out
    # stops here, not after minutes of re-rendering, and never replaces what is there
    for group in groups:
        slug = _slug(group.split("/")[-1])
        target = out / slug if fmt == "lerobot" else out / _minari_id(minari_name, slug)
        if target.exists() and (target.is_file() or any(target.iterdir())):
            raise ExportError(f"{target} already exists: expected a new --out (or one without this "
                              f"{'dataset' if fmt == 'lerobot' else 'Minari dataset'}); nothing was written")
    bar = episode_progress(progress, console)
    results = []
    with bar if bar is not None else nullcontext():
        task_id = bar.add_task("export", total=total, last="") if bar is not None else None

        def advance(episode) -> None:
            if bar is not None:
                bar.update(task_id, advance=1, last=episode.label)

        for group in groups:
            slug = _slug(group.split("/")[-1])
            if fmt == "lerobot":
                path = out / slug
                n, frames = write_lerobot(stream(group), path, repo_id=f"vla_envs/{name}_{slug}", progress=advance,
                                          lerobot_python=lerobot_python)
                results.append({"group": group, "path": str(path), "episodes": n, "frames": frames})
            else:
                import gymnasium as gym

                import vla_envs  # noqa: F401

                env_id, kwargs = make_env(group)
                env = gym.make(env_id, **kwargs)
                dataset_id = _minari_id(minari_name, slug)
                try:
                    n, frames = write_minari(stream(group), out, dataset_id, env, describe(group, env), commit,
                                             progress=advance, episode_metadata=episode_metadata)
                finally:
                    env.close()
                results.append({"group": group, "path": str(out), "dataset_id": dataset_id, "episodes": n,
                                "frames": frames})
    return results
