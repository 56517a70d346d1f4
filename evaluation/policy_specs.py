"""Build policies from config specs: the scripted expert, a ``module:callable`` factory, or a
compressed variant of the base policy.

Torch is seeded before every factory call and every compression, so policies with random
initialisation or random token dropping are the same in every worker process.
"""

from __future__ import annotations

import inspect
import zlib

from typing import TYPE_CHECKING

from evaluation.config import (
    EvalConfig,
    ExpertPolicySpec,
    FactoryPolicySpec,
    HttpPolicySpec,
    OpenPIPolicySpec,
    PolicySpec,
    ResidualPolicySpec,
)
from policies.base import Policy
from policies.factories import resolve_factory

if TYPE_CHECKING:
    from evaluation.serving import Endpoints

def stable_seed(*parts: object) -> int:
    """A 31-bit seed from any values, the same in every process (``hash`` is salted per process)."""
    return zlib.crc32("|".join(map(str, parts)).encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed torch's and numpy's global RNGs, for stochastic policies and random initialisation.

    torch is imported here even when no policy has imported it yet: a factory that imports torch
    itself must still draw from the seeded generator, whatever the process imported before.
    """
    import numpy as np
    import torch

    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_policy(spec: PolicySpec, env, task: str, seed: int) -> Policy:
    """A policy for ``task`` on ``env`` from a spec (``ValueError`` naming what is missing)."""
    if isinstance(spec, ExpertPolicySpec):
        from policies.experts import expert_for_task

        return expert_for_task(task, env)
    if isinstance(spec, ResidualPolicySpec):
        from policies.residual import ResidualPolicy

        return ResidualPolicy.load(spec.checkpoint, build_policy(spec.base_spec(), env, task, seed))
    if isinstance(spec, OpenPIPolicySpec):
        from policies.serving.openpi_client import OpenPIPolicy

        return OpenPIPolicy(spec.url, action_dim=int(env.action_space.shape[0]), chunk_size=spec.chunk_size,
                            keys=spec.keys, prompt_key=spec.prompt_key, actions_key=spec.actions_key,
                            timeout_s=spec.timeout_s, convention=spec.convention)
    if isinstance(spec, HttpPolicySpec):
        from policies.serving.http_client import RemotePolicy

        return RemotePolicy(spec.url.rstrip("/"), timeout_s=spec.timeout_s)
    assert isinstance(spec, FactoryPolicySpec)
    factory = resolve_factory(spec.factory)
    kwargs = dict(spec.kwargs)
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        parameters = {}
    if "env" in parameters:
        kwargs.setdefault("env", env)
    if "task" in parameters:
        kwargs.setdefault("task", task)
    seed_everything(seed)
    policy = factory(**kwargs)
    if not isinstance(policy, Policy):
        raise ValueError(f"policy factory {spec.factory!r} returned a {type(policy).__name__}, expected a "
                         "policies.base.Policy (wrap a plain callable in policies.adapters.ModuleAdapter)")
    return policy


class PolicyCache:
    """The base policy and its variants for one task, built once per worker and env.

    ``endpoints`` (``evaluation.serving``): the variants served by the run's policy servers,
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
        if variant.compression is None:  # the base under other execution/latency settings
            return base
        from policies.compression import compress

        seed_everything(seed)
        return compress(base, variant.compression, base_name=config.base.name)
