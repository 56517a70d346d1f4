"""What a run will do: its work units (``WorkUnit``, ``plan_units``), and the ``RunPlan`` the
driver resolves once and hands, with the config, to every worker: each (task, variant)'s latency
model (``ResolvedLatency``) and where the run's policy servers answer (``Endpoints``, which
``evaluation.backends.serving`` fills in as it starts them).

The path of a variant's latency, in full: the config's ``latency`` (or the variant's) ->
``runner.resolve_latencies`` (``profiled`` and ``{device: NAME}`` measured or computed once, or
taken from the run being resumed or from the config's pins; recorded in run.json as
``config.resolved_latency_ms``) -> ``RunPlan.for_config`` (one ``ResolvedLatency`` per task and
variant) -> the workers -> ``EpisodeRunner.executor``, which hands it to the executor as it is.

Work units: one episode = (task, variant, seed). Units are independent of each other, so they
run in any order and any process with identical results (``evaluation.run.episode``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from evaluation.run.config import EvalConfig
from evaluation.run.latency import ResolvedLatency


@dataclass(frozen=True, order=True)
class WorkUnit:
    task: str
    variant: str
    seed: int
    episode: int  # index of the seed in the config's seed list (the same for every variant)

    @property
    def key(self) -> str:
        """A file-name-safe identifier, unique within a run."""
        return f"{self.task}__{self.variant}__seed{self.seed:06d}"


def plan_units(config: EvalConfig) -> list[WorkUnit]:
    """Every (task, variant, seed) of the config, grouped by task then seed then variant, so a
    worker that takes them in order reuses its environment and meets paired episodes together."""
    return [
        WorkUnit(task, variant, seed, index)
        for task in config.tasks
        for index, seed in enumerate(config.seed_list)
        for variant in config.variant_names
    ]


@dataclass(frozen=True)
class ServedPolicy:
    """One server: the policy of ``variant`` (its owner, the variant it is built for), answering
    for the variants in ``variants`` on the tasks in ``tasks``, built with ``tasks[0]``'s seed."""

    variant: str
    variants: tuple[str, ...]
    tasks: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"variant {self.variant!r} on {', '.join(self.tasks)}"


@dataclass(frozen=True)
class Endpoint:
    served: ServedPolicy
    url: str


@dataclass(frozen=True)
class Endpoints:
    """Where each served (task, variant) is answered; what the workers receive with the config."""

    endpoints: tuple[Endpoint, ...]
    timeout_s: float = 60.0

    def url_for(self, task: str, variant: str) -> str | None:
        for endpoint in self.endpoints:
            if variant in endpoint.served.variants and task in endpoint.served.tasks:
                return endpoint.url
        return None

    def to_dict(self) -> dict:
        return {"timeout_s": self.timeout_s, "endpoints": [asdict(e) for e in self.endpoints]}

    @classmethod
    def from_dict(cls, data: dict) -> Endpoints:
        endpoints = tuple(
            Endpoint(ServedPolicy(e["served"]["variant"], tuple(e["served"]["variants"]), tuple(e["served"]["tasks"])),
                     e["url"])
            for e in data["endpoints"]
        )
        return cls(endpoints, data["timeout_s"])


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

    def latency(self, task: str, variant: str) -> ResolvedLatency:
        try:
            return self.latencies[(task, variant)]
        except KeyError:
            raise KeyError(f"the run plan has no latency for variant {variant!r} on {task}: expected one of "
                           f"{sorted(self.latencies)}") from None

    def to_json(self) -> str:
        return json.dumps({
            "latencies": [[task, variant, latency.to_dict()] for (task, variant), latency in self.latencies.items()],
            "endpoints": self.endpoints.to_dict() if self.endpoints is not None else None,
        })

    @classmethod
    def from_json(cls, text: str) -> RunPlan:
        data = json.loads(text)
        latencies = {(task, variant): ResolvedLatency(**latency) for task, variant, latency in data["latencies"]}
        endpoints = Endpoints.from_dict(data["endpoints"]) if data["endpoints"] is not None else None
        return cls(latencies, endpoints)
