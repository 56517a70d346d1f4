"""Policy specs: how a config names a policy (``{kind: expert}``, ``{factory: module:callable}``,
``{kind: residual, ...}``, ``{kind: openpi, url}``, ``{kind: http, url}``), and ``build_policy``,
which makes a ``Policy`` from one. Evaluation and fine-tuning configs both hold these specs.

Torch is seeded before every factory call, so policies with random initialisation are the same
in every worker process.
"""

from __future__ import annotations

import os
import zlib
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from policies.base import Policy
from policies.conventions import ConventionName
from policies.factories import factory_parameters, resolve_factory
from vla_envs.config import ConfigError
from vla_envs.strict_config import StrictConfig


class ExpertPolicySpec(StrictConfig):
    """The task's scripted expert (``policies.experts``); it reads privileged simulator state."""

    kind: Literal["expert"]


class FactoryPolicySpec(StrictConfig):
    """``module:callable`` returning a ``Policy``; called with ``kwargs`` (and ``env=`` and/or
    ``task=`` when the callable takes parameters of those names)."""

    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="module.path:callable")
    kwargs: dict[str, Any] = Field(default_factory=dict)


class ResidualPolicySpec(StrictConfig):
    """A base policy plus a residual trained by ``vla-envs finetune`` (``policies.residual``).

    ``checkpoint`` is the residual's safetensors file; ``base`` defaults to the base policy the
    residual was trained on, as recorded in the file, when that is one of the declared bases a
    checkpoint may name (``RESIDUAL_HEADER_BASES``): a weights file is data and never names code,
    so a residual trained on any other base needs ``base`` in the config."""

    kind: Literal["residual"]
    checkpoint: str
    base: "PolicySpec | None" = None

    @field_validator("checkpoint")
    @classmethod
    def _readable_residual(cls, value: str) -> str:
        from safetensors import SafetensorError

        from policies.residual import read_residual_spec

        try:
            read_residual_spec(value)
        except SafetensorError as exc:
            raise ValueError(f"{value} is not a safetensors file ({exc}): expected a residual written by "
                             "`vla-envs finetune`") from None
        except (OSError, ValueError) as exc:  # CheckpointError is a ValueError
            raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _base_known(self):
        if self.base is None:
            self.base_spec()  # a header naming an undeclared base fails when the config loads
        return self

    def base_spec(self) -> "PolicySpec":
        """The base policy: ``base`` when given, else the declared base the residual's header names."""
        if self.base is not None:
            return self.base
        from policies.residual import read_residual_spec

        return header_base_spec(read_residual_spec(self.checkpoint).base_policy, self.checkpoint)


# The bases a residual checkpoint's header may name (the header is data: whatever else it names is
# never imported or called): the scripted expert, and the shipped TinyVLA weights by name.
_EXPERT_BASE = {"kind": "expert"}
_SHIPPED_FACTORY = "policies.tinyvla:load_reference"
_SHIPPED_FACTORY_KWARGS = frozenset({"name", "token_seed"})


def _shipped_reference_names() -> list[str]:
    from policies.tinyvla.checkpoint import REFERENCE_DIR

    return sorted(p.stem for p in REFERENCE_DIR.glob("*.safetensors"))


def _describe(value: Any, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def header_base_spec(base_policy: Any, checkpoint: str) -> "PolicySpec":
    """The base policy a residual's header records, if it is a declared one (``{kind: expert}`` or
    ``{factory: policies.tinyvla:load_reference, kwargs: {name: <shipped weights>}}``); any other
    value is a ``ValueError`` that says to give the base in the config."""
    if base_policy == _EXPERT_BASE:
        return ExpertPolicySpec(kind="expert")
    shipped = _shipped_reference_names()
    if isinstance(base_policy, dict) and set(base_policy) <= {"factory", "kwargs"} \
            and base_policy.get("factory") == _SHIPPED_FACTORY:
        kwargs = base_policy.get("kwargs") or {}
        if isinstance(kwargs, dict) and set(kwargs) <= _SHIPPED_FACTORY_KWARGS \
                and kwargs.get("name", "tinyvla") in shipped \
                and type(kwargs.get("token_seed", 0)) is int:
            return FactoryPolicySpec(factory=_SHIPPED_FACTORY, kwargs=kwargs)
    raise ValueError(
        f"residual checkpoint {checkpoint}: its header names the base policy {_describe(base_policy)}, which is not "
        f"one a checkpoint may name ({{kind: expert}} or {{factory: {_SHIPPED_FACTORY}, kwargs: {{name: one of "
        f"{shipped}}}}}); a weights file never names code: give the base in the config "
        "(policy: {kind: residual, checkpoint: ..., base: {factory: ...}})"
    )


class OpenPIPolicySpec(StrictConfig):
    """A policy served over openpi's websocket protocol (``policies.serving.openpi_client``): pi0
    served by openpi, a LeRobot policy, or ``python -m policies.remote serve --protocol openpi``."""

    kind: Literal["openpi"]
    url: str = Field(pattern=r"^wss?://[^\s/]+", description="ws://host:port")
    keys: dict[str, str] = Field(default_factory=dict, description="this suite's observation key -> the server's")
    prompt_key: str = "prompt"
    actions_key: str = "actions"
    chunk_size: int | None = Field(None, ge=1, description="when the server's metadata does not say")
    timeout_s: float = Field(60.0, gt=0.0)
    convention: ConventionName | None = Field(
        None, description="send observations as that ecosystem's LIBERO client does (policies.conventions) "
        "instead of renaming them with 'keys'")

    @model_validator(mode="after")
    def _keys_or_convention(self):
        if self.convention is not None and self.keys:
            raise ValueError(f"'keys' = {self.keys} with 'convention' = {self.convention!r}: the convention names "
                             "every key, expected one of them")
        return self


class HttpPolicySpec(StrictConfig):
    """A policy served over this suite's HTTP protocol at ``url`` (``policies.serving.http_server``:
    ``python -m policies.remote serve``, a LeRobot policy served by ``python -m
    policies.serving.lerobot_policy serve``, or a server another evaluation started). The server
    must be up when the evaluation starts; every simulator worker opens its own sessions."""

    kind: Literal["http"]
    url: str = Field(pattern=r"^http://[^\s/]+(:\d+)?/?$", description="http://host:port")
    timeout_s: float = Field(60.0, gt=0.0, description="per request")


def _policy_kind(value: Any) -> str | None:
    """Which spec a policy entry is, from its ``kind`` (a factory has none), so a mistake is
    reported against that spec alone rather than against every member of the union."""
    if isinstance(value, dict):
        return value.get("kind", "factory" if "factory" in value else None)
    if isinstance(value, StrictConfig):
        return getattr(value, "kind", "factory")
    return None


PolicySpec = Annotated[
    Annotated[ExpertPolicySpec, Tag("expert")] | Annotated[FactoryPolicySpec, Tag("factory")]
    | Annotated[ResidualPolicySpec, Tag("residual")] | Annotated[OpenPIPolicySpec, Tag("openpi")]
    | Annotated[HttpPolicySpec, Tag("http")],
    Discriminator(_policy_kind, custom_error_type="policy_kind",
                  custom_error_message="a policy: {kind: expert}, {kind: residual, checkpoint: ...}, "
                  "{kind: openpi, url: ...}, {kind: http, url: ...} or {factory: module:callable}"),
]
ResidualPolicySpec.model_rebuild()


def underlying_spec(spec: PolicySpec) -> PolicySpec:
    """The policy a spec finally runs: through any residuals, the base they rest on (read from
    the residual's header when the config does not give it)."""
    while isinstance(spec, ResidualPolicySpec):
        spec = spec.base_spec()
    return spec


def check_factory_importable(spec: FactoryPolicySpec) -> None:
    """Resolve ``module:callable`` now (``ConfigError`` naming it otherwise)."""
    try:
        resolve_factory(spec.factory)
    except ValueError as exc:
        raise ConfigError(f"policy factory {exc}") from None


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


def set_threads(threads: int) -> None:
    """torch's intra-op thread count in this process (``EvalConfig.torch_threads``): one setting for
    episodes, profiling and policy servers, so their latencies compare."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass


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
    parameters = factory_parameters(factory)
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


