"""Fine-tuning checkpoints: written atomically, read without unpickling.

Layout of ``OUT/checkpoints/``::

    step_000020000/
        agent.safetensors      the SB3 policy's state dict (actor and critic) and the algorithm's
                               extra torch variables (SAC's log_ent_coef)
        optimizers.pt          the optimizers' state dicts (torch.load(weights_only=True))
        normalizer.safetensors VecNormalize's running mean/var/count (when used)
        replay_buffer.npz      SAC's replay buffer (plain arrays, np.load(allow_pickle=False))
        residual.safetensors   the deployable residual (``policies.residual``)
        state.json             num_timesteps, the config, wall time so far
    latest                     the name of the newest complete checkpoint

A checkpoint directory is written under a temporary name and renamed when complete, then
``latest`` is replaced, so an interruption at any moment leaves the previous checkpoint usable.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "state.json"
LATEST = "latest"


def checkpoint_name(num_timesteps: int) -> str:
    return f"step_{num_timesteps:09d}"


def write_checkpoint(root: Path, num_timesteps: int, writers: dict[str, Any], state: dict, keep: int) -> Path:
    """Create ``root/step_N`` with each ``writers[file](path)`` plus ``state.json``, atomically;
    then point ``latest`` at it and delete all but the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(num_timesteps)
    tmp = root / (final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for file_name, write in writers.items():
        write(tmp / file_name)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    pointer = root / (LATEST + ".tmp")
    pointer.write_text(final.name)
    os.replace(pointer, root / LATEST)
    complete = sorted(p for p in root.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under ``root`` (``None`` when there is none)."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    if not (path / STATE_FILE).is_file():
        raise ValueError(f"{pointer} names {path.name}, which is missing or incomplete; delete {pointer} to start over")
    return path


def read_state(path: Path) -> dict:
    return json.loads((path / STATE_FILE).read_text())


def save_torch_states(path: Path, states: dict[str, dict]) -> None:
    torch.save(states, path)


def load_torch_states(path: Path) -> dict[str, dict]:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
        np.savez(handle, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}
