"""Work units: one episode = (task, variant, seed). Units are independent of each other, so they
run in any order and any process with identical results (``evaluation.run.episode``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from evaluation.run.config import EvalConfig


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

    def to_dict(self) -> dict:
        return asdict(self)


def plan_units(config: EvalConfig) -> list[WorkUnit]:
    """Every (task, variant, seed) of the config, grouped by task then seed then variant, so a
    worker that takes them in order reuses its environment and meets paired episodes together."""
    return [
        WorkUnit(task, variant, seed, index)
        for task in config.tasks
        for index, seed in enumerate(config.seed_list)
        for variant in config.variant_names
    ]
