"""``run.json``: what is needed to reproduce or audit a run (config, seeds, versions, commit,
renderer, machine)."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from evaluation.run.config import EvalConfig

_PACKAGES = ("vla-envs", "mujoco", "robosuite", "torch", "gymnasium", "numpy", "pyarrow", "ray")


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo: Path | None = None) -> dict:
    """The checkout's commit and whether it has uncommitted changes (read-only git calls)."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo, capture_output=True, text=True,
            timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def machine() -> dict:
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
    }


def renderer(config: EvalConfig) -> dict:
    images = config.env.obs_mode != "state" or config.recording.videos is not None
    return {
        "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
        "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM"),
        "used": images,
        "render_quality": config.env.render_quality,
        "image_size": config.env.image_size,
    }


def run_info(config: EvalConfig, config_path: str | None, backend: str, workers: int) -> dict:
    return {
        "config_path": config_path,
        "config": config.model_dump(mode="json"),
        "seeds": {task: config.seed_list for task in config.tasks},
        "variants": config.variant_names,
        "backend": backend,
        "workers": workers,
        "packages": package_versions(),
        "git": git_commit(),
        "renderer": renderer(config),
        "machine": machine(),
    }
