"""``PolicyCache``: the base policy and its variants for one task, built once per worker (or
reached as clients of the run's policy servers, ``evaluation.backends.serving``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from evaluation.run.config import EvalConfig
from policies.base import Policy
from policies.specs import build_policy, seed_everything, stable_seed

if TYPE_CHECKING:
    from evaluation.run.plan import Endpoints


class PolicyCache:
    """The base policy and its variants for one task, built once per worker and env.

    ``endpoints`` (``evaluation.backends.serving``): the variants served by the run's policy servers,
    which this cache reaches as clients instead of building them; ``env`` is ``None`` in a
    server, which builds its variant without a simulator."""

    def __init__(self, config: EvalConfig, task: str, env, endpoints: Endpoints | None = None):
        self.config = config
        self.task = task
        self.env = env
        self.endpoints = endpoints
        self._policies: dict[str, Policy] = {}
        self._local: dict[str, Policy] = {}

    def get(self, variant: str) -> Policy:
        if variant not in self._policies:
            url = self.endpoints.url_for(self.task, variant) if self.endpoints is not None else None
            if url is None:
                self._policies[variant] = self.build_local(variant)
            else:
                from policies.serving.http_client import RemotePolicy

                timeout_s = self.endpoints.timeout_s
                self._policies[variant] = RemotePolicy(url, timeout_s=timeout_s)
        return self._policies[variant]

    def build_local(self, variant: str) -> Policy:
        """The variant's policy built in this process (what a policy server for it serves)."""
        if variant not in self._local:
            self._local[variant] = self._build(variant)
        return self._local[variant]

    def _build(self, name: str) -> Policy:
        config = self.config
        variant = config.variant(name)
        seed = stable_seed(config.policy_seed, self.task, name)
        if variant is None:  # the base
            return build_policy(config.base.policy, self.env, self.task, stable_seed(config.policy_seed, self.task))
        if variant.policy is not None:
            return build_policy(variant.policy, self.env, self.task, seed)
        # a compressed variant compresses the base built here, also when the base itself is served
        base = self.build_local(config.base.name)
        if config.policy_owner(name) != name:  # the base under other execution/latency settings
            return base
        from policies.compression import compress

        seed_everything(seed)
        return compress(base, variant.compression, base_name=config.base.name)
