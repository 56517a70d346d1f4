"""Conventional inference metrics of every variant (``policies.profiling.profile``), measured in
the driver (after the episodes for the report; before them for ``latency: profiled`` and
``{device: NAME}``), so
parallel workers do not disturb the timings."""

from __future__ import annotations

from collections.abc import Iterator

from evaluation.run.config import EvalConfig
from evaluation.run.episode import EpisodeRunner


def _profile_each(config: EvalConfig, variants: list[str]) -> Iterator[tuple[str, str, object]]:
    """(task, variant, InferenceProfile) on the first seed's initial observation."""
    from policies.profiling import profile
    from policies.specs import set_threads

    settings = config.profile
    set_threads(config.torch_threads)  # the episodes' setting, so the latencies are comparable
    runner = EpisodeRunner(config)
    try:
        for task in config.tasks:
            env = runner.env(task)
            for variant in variants:
                policy = runner.policy(task, variant)
                # reset before each variant: experts read the live simulator state, and a
                # variant may share the base's policy object
                obs, info = env.reset(seed=config.seed_list[0])
                policy.reset(info.get("instruction", ""))
                yield task, variant, profile(policy, obs, repeats=settings.repeats, warmup=settings.warmup)
    finally:
        runner.close()


def profile_variants(config: EvalConfig) -> dict[tuple[str, str], dict]:
    """(task, variant) -> ``InferenceProfile.to_dict()`` (empty when ``profile.enabled`` is off)."""
    if not config.profile.enabled:
        return {}
    return {(task, variant): result.to_dict() for task, variant, result in _profile_each(config, config.variant_names)}


def resolve_latency_ms(config: EvalConfig, variants: list[str]) -> dict[str, float]:
    """'<task>/<variant>' -> the latency per call (ms) that ``variants`` apply, from one
    ``profile()`` each (whatever ``profile.enabled`` says): the median for ``profiled``, the
    device model of the FLOPs per call for ``{device: NAME}``."""
    from evaluation.run.config import DeviceLatency
    from evaluation.run.devices import device_latency_ms
    from vla_envs.config import ConfigError

    devices = config.device_table()
    resolved = {}
    for task, variant, result in _profile_each(config, variants):
        latency = config.latency_for(variant)
        if isinstance(latency, DeviceLatency):
            if result.flops_per_call is None:
                raise ConfigError(
                    f"variant {variant!r}: latency {{device: {latency.device}}} needs FLOPs per call, and its "
                    "policy offers no torch module to count them (Policy.torch_module() is None); expected a "
                    "torch-backed policy, or latency 'profiled' or {fixed_ms: X}"
                )
            resolved[f"{task}/{variant}"] = device_latency_ms(result.flops_per_call, devices[latency.device])
        else:
            resolved[f"{task}/{variant}"] = result.latency_median_ms
    return resolved
