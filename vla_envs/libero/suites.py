"""LIBERO's suites and tasks as every LIBERO paper numbers them, and their standard initial states.

Task ``k`` of a suite is LIBERO's task ``k`` in its benchmark's default order
(``task_order_index=0``, the identity order, the one openpi's and LeRobot's LIBERO evaluations
use); its standard initial states are LIBERO's ``<task>.pruned_init`` file: 50 flattened MuJoCo
states, state ``i`` being "init state i" of every LIBERO result.

Time limits are the control steps openpi's LIBERO example gives each suite
(``examples/libero/main.py``: 220 / 280 / 300 / 520, and 400 for LIBERO-90).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vla_envs.libero.installation import prepare


@dataclass(frozen=True)
class Suite:
    name: str  # LIBERO's folder name: libero_spatial
    title: str  # as papers write it: LIBERO-Spatial
    max_episode_steps: int
    n_tasks: int  # what LIBERO's benchmark lists (tested), known without importing LIBERO


SUITES: dict[str, Suite] = {suite.name: suite for suite in (
    Suite("libero_spatial", "LIBERO-Spatial", 220, 10),
    Suite("libero_object", "LIBERO-Object", 280, 10),
    Suite("libero_goal", "LIBERO-Goal", 300, 10),
    Suite("libero_10", "LIBERO-10", 520, 10),
    Suite("libero_90", "LIBERO-90", 400, 90),
)}
STANDARD_SUITES: tuple[str, ...] = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
# openpi's and LeRobot's LIBERO evaluations: no-op control steps after each reset, so that objects
# dropped into the scene come to rest (LiberoEnv's settle_steps)
SETTLE_STEPS = 10


@dataclass(frozen=True)
class LiberoTask:
    suite: str
    index: int  # position in the suite (task k)
    name: str  # the BDDL file's stem
    instruction: str
    bddl_file: Path
    init_states_file: Path


def check_suite(name: object) -> Suite:
    if not isinstance(name, str) or name not in SUITES:
        raise ValueError(f"LIBERO suite {name!r}: expected one of {sorted(SUITES)}")
    return SUITES[name]


def task_name(suite: str, index: int) -> str:
    """The name of task ``index`` of ``suite`` in evaluation configs and results:
    ``LIBERO-Spatial-3`` (file-name safe)."""
    return f"{check_suite(suite).title}-{int(index)}"


def parse_task_name(name: str) -> tuple[str, int] | None:
    """``(suite, index)`` of a LIBERO task name (``task_name``), ``None`` for a name that is not
    one; ``ValueError`` for a LIBERO suite's task that does not exist."""
    title, _, index = name.rpartition("-")
    suite = next((s for s in SUITES.values() if s.title == title), None)
    if suite is None or not index.isdigit() or (len(index) > 1 and index.startswith("0")):
        return None
    if int(index) >= suite.n_tasks:
        raise ValueError(f"task {name!r}: {suite.title} has tasks 0 to {suite.n_tasks - 1}")
    return suite.name, int(index)


def suite_by_title(title: str) -> Suite | None:
    """The suite titled ``title`` (``LIBERO-Spatial``), or ``None``."""
    return next((s for s in SUITES.values() if s.title == title), None)


def suite_tasks(suite: str) -> list[LiberoTask]:
    """The tasks of ``suite`` in LIBERO's order (``LiberoUnavailable`` when LIBERO is not installed)."""
    check_suite(suite)
    paths = prepare()
    from libero.libero.benchmark import task_maps

    return [LiberoTask(suite, index, task.name, task.language, paths.bddl_files / suite / task.bddl_file,
                       paths.init_files / suite / task.init_states_file)
            for index, task in enumerate(task_maps[suite].values())]


def task(suite: str, index: int) -> LiberoTask:
    tasks = suite_tasks(suite)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(tasks):
        raise ValueError(f"task index {index!r} of {SUITES[suite].title}: expected an integer from 0 to {len(tasks) - 1}")
    return tasks[int(index)]


def load_init_states(path: str | Path) -> np.ndarray:
    """A task's standard initial states, (N, state size) float64, read without running pickled
    code: LIBERO stores them with ``torch.save`` (a pickle of a numpy array), and LIBERO's own
    loader unpickles them with ``weights_only=False``; here torch's weights-only unpickler is
    allowed numpy's array reconstruction and nothing else."""
    import torch

    allowed = [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.float64))]
    try:
        with torch.serialization.safe_globals(allowed):
            states = torch.load(str(path), weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises several kinds for a file it refuses
        raise ValueError(f"{path}: not LIBERO initial states ({type(exc).__name__}: {str(exc)[:200]})") from None
    states = np.asarray(states)
    if states.ndim != 2 or states.dtype.kind != "f" or not np.isfinite(states).all():
        raise ValueError(f"{path}: initial states of shape {states.shape} and dtype {states.dtype}: expected a "
                         "(N, state size) array of finite floats")
    return states.astype(np.float64, copy=False)
