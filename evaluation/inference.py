"""Conventional inference metrics of every variant (``policies.profiling.profile``), measured in
the driver after the episodes, so parallel workers do not disturb the timings."""

from __future__ import annotations

from evaluation.config import EvalConfig
from evaluation.episode import EpisodeRunner


def profile_variants(config: EvalConfig) -> dict[tuple[str, str], dict]:
    """(task, variant) -> ``InferenceProfile.to_dict()`` on the first seed's initial observation."""
    from policies.profiling import profile

    from evaluation.workers import set_threads

    settings = config.profile
    if not settings.enabled:
        return {}
    set_threads(config.torch_threads)  # the episodes' setting, so the latencies are comparable
    runner = EpisodeRunner(config)
    profiles: dict[tuple[str, str], dict] = {}
    try:
        for task in config.tasks:
            env = runner.env(task)
            for variant in config.variant_names:
                policy = runner.policy(task, variant)
                # reset before each variant: experts read the live simulator state, and a
                # variant may share the base's policy object
                obs, info = env.reset(seed=config.seed_list[0])
                policy.reset(info.get("instruction", ""))
                result = profile(policy, obs, repeats=settings.repeats, warmup=settings.warmup)
                profiles[(task, variant)] = result.to_dict()
    finally:
        runner.close()
    return profiles
