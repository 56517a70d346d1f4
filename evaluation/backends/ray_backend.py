"""Ray backend: the same work units on a Ray cluster (or a local Ray instance).

Each actor is one worker with its own ``EpisodeRunner`` (envs, policies, renderer). Results,
including the per-step table and video bytes, come back to the driver, which alone writes the
output folder, so workers need no shared file system. The actors import this project, so every
node needs it installed (or ``ray.runtime_env: {working_dir: ., ...}`` in the config).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from evaluation.run.config import EvalConfig
from evaluation.run.episode import EpisodeResult, EpisodeRunner
from evaluation.run.plan import WorkUnit

if TYPE_CHECKING:
    from evaluation.run.plan import RunPlan


class _EpisodeActor:
    def __init__(self, config_json: str, plan_json: str | None = None):
        from evaluation.run.plan import RunPlan
        from policies.specs import set_threads

        config = EvalConfig.model_validate_json(config_json)
        set_threads(config.torch_threads)
        self.runner = EpisodeRunner(config, RunPlan.from_json(plan_json) if plan_json else None)

    def run(self, unit: WorkUnit) -> tuple[WorkUnit, EpisodeResult]:
        return unit, self.runner.run(unit)


def import_ray():
    try:
        import ray
    except ImportError:
        raise RuntimeError(
            "--backend ray needs the ray package, which is not installed: expected `pip install \"vla-envs[ray]\"`"
        ) from None
    return ray


def init_ray(config: EvalConfig, workers: int, address: str | None = None, extra_cpus: float = 0.0) -> bool:
    """Connect to Ray (``address``, else ``ray.address``; ``None`` starts a local instance sized
    for the workers and ``extra_cpus``, e.g. the policy servers'); whether this call started it
    (and so should shut it down). A Ray already initialised by the caller is used as it is."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address if address is not None else config.ray.address
    kwargs = {"include_dashboard": False, "log_to_driver": False}
    if address is None:  # a local instance sized for the workers
        kwargs["num_cpus"] = max(workers * config.ray.num_cpus_per_worker + extra_cpus, 1)
    if config.ray.runtime_env:
        kwargs["runtime_env"] = config.ray.runtime_env
    ray.init(address=address, **kwargs)
    return True


def run_ray(
    config: EvalConfig, units: list[WorkUnit], workers: int, address: str | None = None,
    plan: RunPlan | None = None,
) -> Iterator[tuple[WorkUnit, EpisodeResult]]:
    """Units on ``workers`` Ray actors, yielded in completion order. ``address``: ``ray.init``'s
    (``"auto"`` or ``"ray://head:10001"`` for a cluster; ``None`` starts a local instance);
    ``plan``: the run's resolved latencies and policy servers (``evaluation.run.plan``)."""
    if workers < 1:
        raise ValueError(f"workers={workers}: expected >= 1")
    if not units:
        return
    ray = import_ray()
    from ray.util import ActorPool

    started_here = init_ray(config, workers, address)
    actor_class = ray.remote(num_cpus=config.ray.num_cpus_per_worker)(_EpisodeActor)
    config_json = config.model_dump_json()
    plan_json = plan.to_json() if plan is not None else None
    actors = [actor_class.remote(config_json, plan_json) for _ in range(min(workers, len(units)))]
    try:
        pool = ActorPool(actors)
        yield from pool.map_unordered(lambda actor, unit: actor.run.remote(unit), units)
    finally:
        for actor in actors:
            ray.kill(actor)
        if started_here:
            ray.shutdown()
