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

A resumed run takes the newest intact checkpoint (``resume_candidates``, then the ``read_*``
functions, which check every file and raise ``CheckpointError`` naming it and what is wrong):
a damaged one (a truncated or unreadable file, non-finite numbers, a broken ``state.json``) is
skipped with a warning, and ``latest`` is followed only to a ``step_*`` folder beside it.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies.checkpoint_checks import CheckpointError, check_finite

STATE_FILE = "state.json"
LATEST = "latest"
_NAME = re.compile(r"step_\d+")


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
    """The checkpoint ``latest`` names (``None`` when there is none); ``CheckpointError`` when it
    names no complete checkpoint folder beside it."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = _pointed(root)
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"{pointer} names {path.name}, which is missing or incomplete")
    return path


def _pointed(root: Path) -> Path:
    """The folder ``root/latest`` names: only the name of a ``step_*`` folder beside it is
    followed, never a path (``../x``, ``/abs``) that would resume from outside the run."""
    pointer = root / LATEST
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{pointer} cannot be read ({describe_error(exc)})") from None
    if not _NAME.fullmatch(name):
        raise CheckpointError(f"{pointer} holds {name[:100]!r}: expected the name of a step_* folder beside it "
                              "(a path leading out of the run folder is never followed)")
    return root / name


def resume_candidates(root: Path) -> tuple[list[Path], list[str]]:
    """The checkpoint folders to resume from, best first (the one ``latest`` names, then the rest
    newest first), and what is wrong with ``latest`` (it names nothing usable, or is missing
    although checkpoints are there)."""
    complete = sorted((p for p in root.glob("step_*") if _NAME.fullmatch(p.name) and p.is_dir() and not p.is_symlink()),
                      key=lambda p: int(p.name[len("step_"):]), reverse=True)
    problems = []
    first = None
    if (root / LATEST).exists() or (root / LATEST).is_symlink():
        try:
            first = _pointed(root)
        except CheckpointError as exc:
            problems.append(str(exc))
        else:
            if first not in complete:
                problems.append(f"{root / LATEST} names {first.name}, which is missing")
                first = None
    elif complete:
        problems.append(f"{root / LATEST} is missing")
    return ([first] if first else []) + [p for p in complete if p != first], problems


def describe_error(exc: Exception) -> str:
    """An exception as one short line (torch's can run to a page)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _checked_file(path: Path) -> Path:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    return path


def _refuse_non_finite(path: Path, values, name: str = "") -> None:
    """``check_finite`` on every float leaf of ``values`` (nested dicts and lists of tensors,
    arrays and numbers), each named by its dotted path in ``path``."""
    if isinstance(values, dict):
        items = values.items()
    elif isinstance(values, (list, tuple)):
        items = enumerate(values)
    else:
        if isinstance(values, torch.Tensor) and values.is_floating_point() \
                or isinstance(values, np.ndarray) and values.dtype.kind == "f" or isinstance(values, float):
            check_finite(f"{path}: {name or 'the value'}", values)
        return
    for key, item in items:
        _refuse_non_finite(path, item, f"{name}.{key}" if name else str(key))


def read_state(path: Path) -> dict:
    """``path/state.json``, checked: a JSON object with the step count, updates, wall time and
    config a checkpoint records."""
    file = _checked_file(path / STATE_FILE)
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file} cannot be read as JSON ({describe_error(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{file} holds {type(state).__name__}: expected a JSON object")
    for key, kind in (("num_timesteps", int), ("n_updates", int), ("wall_time_s", (int, float)), ("config", dict)):
        value = state.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{file}: '{key}' is {json.dumps(value)[:80]}: expected "
                                  f"{'an object' if kind is dict else 'a number'}")
    if state["num_timesteps"] < 0 or not math.isfinite(state["wall_time_s"]):
        raise CheckpointError(f"{file}: num_timesteps {state['num_timesteps']}, wall_time_s {state['wall_time_s']}: "
                              "expected a step count >= 0 and a finite time")
    return state


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, checked to be readable and finite."""
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(_checked_file(path)))
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is damaged
        raise CheckpointError(f"{path} cannot be read ({describe_error(exc)})") from None
    _refuse_non_finite(path, tensors)
    return tensors


def save_torch_states(path: Path, states: dict[str, dict]) -> None:
    torch.save(states, path)


def load_torch_states(path: Path) -> dict[str, dict]:
    """The optimizers' state dicts, read without unpickling code, checked to be readable and finite."""
    try:
        states = torch.load(_checked_file(path), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a damaged file
        raise CheckpointError(f"{path} cannot be read ({describe_error(exc)})") from None
    if not isinstance(states, dict) or not all(isinstance(v, dict) for v in states.values()):
        raise CheckpointError(f"{path} holds {type(states).__name__}: expected a dict of state dicts")
    _refuse_non_finite(path, states)
    return states


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
        np.savez(handle, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (no pickles), checked to be readable and finite."""
    try:
        with np.load(_checked_file(path), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy each raise their own
        raise CheckpointError(f"{path} cannot be read ({describe_error(exc)})") from None
    _refuse_non_finite(path, arrays)
    return arrays
