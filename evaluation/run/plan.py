"""``RunPlan``: what the driver resolves once for a run and hands, with the config, to every
worker: each (task, variant)'s latency model (``ResolvedLatency``) and where the run's policy
servers answer (``Endpoints``).

The path of a variant's latency, in full: the config's ``latency`` (or the variant's) ->
``runner.resolve_latencies`` (``profiled`` and ``{device: NAME}`` measured or computed once, or
taken from the run being resumed or from the config's pins; recorded in run.json as
``config.resolved_latency_ms``) -> ``RunPlan.for_config`` (one ``ResolvedLatency`` per task and
variant) -> the workers -> ``EpisodeRunner.executor``, which hands it to the executor as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

from evaluation.run.config import EvalConfig
from evaluation.run.latency import ResolvedLatency
from evaluation.run.serving import Endpoints


def resolved_latency(config: EvalConfig, task: str, variant: str) -> ResolvedLatency:
    """The variant's latency model on ``task`` from the config (its ``resolved_latency_ms`` holds
    the values of ``profiled`` and ``{device: NAME}``, as run.json records them)."""
    recorded = (config.resolved_latency_ms or {}).get(f"{task}/{variant}")
    try:
        return ResolvedLatency.of(config.latency_for(variant), recorded)
    except ValueError as exc:
        raise ValueError(f"variant {variant!r} on {task}: {exc}") from None


@dataclass(frozen=True)
class RunPlan:
    latencies: dict[tuple[str, str], ResolvedLatency] = field(default_factory=dict)
    endpoints: Endpoints | None = None

    @classmethod
    def for_config(cls, config: EvalConfig, endpoints: Endpoints | None = None) -> RunPlan:
        """Every (task, variant)'s latency, from a config whose latencies are resolved."""
        latencies = {(task, variant): resolved_latency(config, task, variant)
                     for task in config.tasks for variant in config.variant_names}
        return cls(latencies, endpoints)

    def with_endpoints(self, endpoints: Endpoints | None) -> RunPlan:
        return replace(self, endpoints=endpoints)

    def latency(self, task: str, variant: str) -> ResolvedLatency:
        try:
            return self.latencies[(task, variant)]
        except KeyError:
            raise KeyError(f"the run plan has no latency for variant {variant!r} on {task}: expected one of "
                           f"{sorted(self.latencies)}") from None

    def to_json(self) -> str:
        return json.dumps({
            "latencies": [[task, variant, latency.to_dict()] for (task, variant), latency in self.latencies.items()],
            "endpoints": json.loads(self.endpoints.to_json()) if self.endpoints is not None else None,
        })

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        data = json.loads(text)
        latencies = {(task, variant): ResolvedLatency(**latency) for task, variant, latency in data["latencies"]}
        endpoints = Endpoints.from_json(json.dumps(data["endpoints"])) if data["endpoints"] is not None else None
        return cls(latencies, endpoints)
