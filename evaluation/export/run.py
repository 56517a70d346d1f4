"""``vla-envs export RUN --format lerobot|minari``: one dataset per task of a finished run."""

from __future__ import annotations

import re
from contextlib import nullcontext
from pathlib import Path
from typing import Literal

from evaluation.compare import read_run
from evaluation.export.lerobot_format import ExportError, write_lerobot
from evaluation.export.minari_format import write_minari
from evaluation.export.replay import env_kwargs, replay_run

Format = Literal["lerobot", "minari"]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def export_run(run_dir: str | Path, fmt: Format, out: str | Path, obs_mode: str | None = None,
               variants: list[str] | None = None, progress: bool = True, console=None,
               lerobot_python: str | None = None) -> list[dict]:
    """Write one dataset per task of the run into ``out`` (``out/<task>``); each row says
    task, path or dataset id, episodes and frames."""
    if fmt not in ("lerobot", "minari"):
        raise ExportError(f"format {fmt!r}: expected 'lerobot' or 'minari'")
    run_dir, out = Path(run_dir), Path(out)
    config, info, episodes, _ = read_run(run_dir)
    chosen = [e for e in episodes if not variants or e["variant"] in variants]
    if not chosen:
        raise ExportError(f"no episodes of variants {variants} in {run_dir}: expected some of {config.variant_names}")
    bar = _progress(progress, console)
    results = []
    with bar if bar is not None else nullcontext():
        total = bar.add_task("export", total=len(chosen), last="") if bar is not None else None

        def advance(episode) -> None:
            if bar is not None:
                bar.update(total, advance=1, last=f"{episode.task} {episode.variant} seed {episode.seed}")

        for task in config.tasks:
            if not any(e["task"] == task for e in chosen):
                continue
            stream = replay_run(run_dir, obs_mode, variants, tasks=[task])
            if fmt == "lerobot":
                path = out / task
                n, frames = write_lerobot(stream, path, repo_id=f"vla_envs/{_slug(config.name or run_dir.name)}_{_slug(task)}",
                                          progress=advance, lerobot_python=lerobot_python)
                results.append({"task": task, "path": str(path), "episodes": n, "frames": frames})
            else:
                import gymnasium as gym

                import vla_envs  # noqa: F401
                from vla_envs.config import get_task_config

                env = gym.make(get_task_config(task).env_id, **env_kwargs(config, obs_mode))
                dataset_id = f"vla_envs/{_slug(config.name or run_dir.name)}-{_slug(task)}-v0"
                description = (f"vla-envs eval run {run_dir.name} ({config.name}), task {task} "
                               f"('{env.unwrapped.instruction}'), variants "
                               f"{sorted({e['variant'] for e in chosen if e['task'] == task})}")
                commit = (info.get("git") or {}).get("commit")
                try:
                    n, frames = write_minari(stream, out, dataset_id, env, description, commit, progress=advance)
                finally:
                    env.close()
                results.append({"task": task, "path": str(out), "dataset_id": dataset_id, "episodes": n, "frames": frames})
    return results


def _progress(enabled: bool, console=None):
    if not enabled:
        return None
    from rich.progress import Progress, TextColumn

    from vla_envs.progress import progress_columns

    return Progress(*progress_columns("episodes", TextColumn("{task.fields[last]}")), console=console)
