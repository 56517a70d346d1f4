"""Local backends: run work units in this process or in N spawned processes.

Both yield ``(unit, EpisodeResult)`` as episodes finish; the caller writes them. Each worker
process builds its own ``EpisodeRunner`` (its own envs, policies and GL context) from the
config, so nothing unpicklable crosses process boundaries. ``spawn`` (not ``fork``) because
MuJoCo's GL contexts and torch's thread pools do not survive a fork.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from collections.abc import Iterator

from evaluation.config import EvalConfig
from evaluation.episode import EpisodeResult, EpisodeRunner
from evaluation.units import WorkUnit

_RUNNER: EpisodeRunner | None = None


def run_sequential(config: EvalConfig, units: list[WorkUnit]) -> Iterator[tuple[WorkUnit, EpisodeResult]]:
    set_threads(config.torch_threads)
    runner = EpisodeRunner(config)
    try:
        for unit in units:
            yield unit, runner.run(unit)
    finally:
        runner.close()


def set_threads(threads: int) -> None:
    """torch's intra-op thread count (``EvalConfig.torch_threads``)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


def _init_worker(config_json: str) -> None:
    global _RUNNER
    # Ctrl-C goes to the whole process group; the parent decides (it terminates the pool), so a
    # worker must not die half-way through returning a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = EvalConfig.model_validate_json(config_json)
    set_threads(config.torch_threads)
    _RUNNER = EpisodeRunner(config)


def _run_unit(unit: WorkUnit) -> tuple[WorkUnit, EpisodeResult]:
    assert _RUNNER is not None, "worker not initialised"
    return unit, _RUNNER.run(unit)


def run_processes(
    config: EvalConfig, units: list[WorkUnit], workers: int
) -> Iterator[tuple[WorkUnit, EpisodeResult]]:
    """Units in ``workers`` spawned processes, yielded in completion order."""
    if workers < 1:
        raise ValueError(f"workers={workers}: expected >= 1")
    if not units:
        return
    context = mp.get_context("spawn")
    pool = context.Pool(
        processes=min(workers, len(units)),
        initializer=_init_worker,
        initargs=(config.model_dump_json(),),
    )
    try:
        # chunksize 1: an episode lasts seconds, so dispatch overhead is negligible and the
        # load stays balanced when episode lengths differ
        yield from pool.imap_unordered(_run_unit, units, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()  # Ctrl-C or a failed episode: stop the others now
        raise
    finally:
        pool.join()
