"""Local backends: run work units in this process or in N spawned processes.

Both yield ``(unit, EpisodeResult)`` as episodes finish; the caller writes them. Each worker
process builds its own ``EpisodeRunner`` (its own envs, policies and GL context) from the
config, so nothing unpicklable crosses process boundaries. ``spawn`` (not ``fork``) because
MuJoCo's GL contexts and torch's thread pools do not survive a fork.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
from collections.abc import Iterator

from evaluation.run.config import EvalConfig
from evaluation.run.episode import EpisodeResult, EpisodeRunner
from evaluation.run.plan import RunPlan, WorkUnit
from policies.specs import set_threads

_RUNNER: EpisodeRunner | None = None


def run_sequential(config: EvalConfig, units: list[WorkUnit],
                   plan: RunPlan | None = None) -> Iterator[tuple[WorkUnit, EpisodeResult]]:
    """Units in this process. Ctrl-C during an episode, or while the caller writes it, lets it
    finish and be written, and then stops; a second Ctrl-C stops at once. The simulator is so never interrupted
    inside a step or a reset, where robosuite cannot be closed cleanly any more."""
    set_threads(config.torch_threads)
    runner = EpisodeRunner(config, plan)
    try:
        for unit in units:
            with _deferred_interrupt() as interrupt:
                result = runner.run(unit)
                # the caller writes the episode before the generator resumes: a Ctrl-C during
                # that write is deferred too, or it would delete the half-written part
                yield unit, result
            if interrupt["requested"]:
                raise KeyboardInterrupt
    except BaseException:
        # after a second Ctrl-C the simulator may be half-way through a reset and fail to close:
        # that must not replace the interruption (or the error) that brought us here
        with contextlib.suppress(Exception):
            runner.close()
        raise
    runner.close()


@contextlib.contextmanager
def _deferred_interrupt():
    """Within the block, the first SIGINT only sets ``["requested"]``; a second raises."""
    state = {"requested": False}
    if threading.current_thread() is not threading.main_thread():  # only the main thread has handlers
        yield state
        return

    def handler(signum, frame):
        if state["requested"]:
            raise KeyboardInterrupt
        state["requested"] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield state
    finally:
        signal.signal(signal.SIGINT, previous)


def _init_worker(config_json: str, plan_json: str | None) -> None:
    global _RUNNER
    # Ctrl-C goes to the whole process group; the parent decides (it terminates the pool), so a
    # worker must not die half-way through returning a result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = EvalConfig.model_validate_json(config_json)
    set_threads(config.torch_threads)
    _RUNNER = EpisodeRunner(config, RunPlan.from_json(plan_json) if plan_json else None)


def _run_unit(unit: WorkUnit) -> tuple[WorkUnit, EpisodeResult]:
    assert _RUNNER is not None, "worker not initialised"
    return unit, _RUNNER.run(unit)


def run_processes(
    config: EvalConfig, units: list[WorkUnit], workers: int, plan: RunPlan | None = None
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
        initargs=(config.model_dump_json(), plan.to_json() if plan is not None else None),
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
