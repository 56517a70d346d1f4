"""``compress(policy, spec) -> Policy``: compression as configuration, not forks.

A spec (dict, or YAML under ``configs/``) selects any combination of::

    quantization: {method: fake, bits: 8 | 4}   # per-channel quantize-dequantize
                | {method: dynamic_int8}         # real int8 linears (torch.ao)
                | {method: torchao, torchao: int8_weight_only | int8_dynamic}   # torchao's kernels
                | {method: torchao, torchao: int4_weight_only, group_size: 32 | 64 | 128}  # CUDA
                | {method: quanto, bits: 8 | 4 | 2}    # optimum-quanto's packed weights, CPU and CUDA
    pruning: {fraction: 0.05, structured: false} # magnitude (or whole output rows)
    token_sparsification: {keep: 0.5, method: attention | norm | random}
    layer_skip: {blocks: [3]}                    # blocks skipped (early exit / layer dropping)
    token_cache: {similarity: 0.99}              # VLA-Cache: unchanged patches' keys/values reused
    action_codec: {dct_keep: 4, quantization_scale: 10.0}  # and/or
                  {downsample: 2}                    # and/or
                  {fast: {tokenizer: tinyvla, max_tokens: 12, relaxed: false}}  # FAST tokens
    execution: {open_loop_steps: 4}              # the ChunkExecutor's k

Weight methods need ``policy.torch_module()`` (and a settable ``policy.model``); token sparsification needs a policy
with ``set_token_sparsification(keep, method)``, layer skipping one with ``set_layer_skip(blocks)``,
token caching one with ``set_token_cache(similarity)``;
action codecs and execution work on any
policy. The result carries ``variant_card``: method, parameters and base model, plain data.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from policies.base import Policy
from policies.compression.action_codec import dct_compress, temporal_downsample
from policies.compression.pruning import magnitude_prune, structured_prune_rows
from policies.compression.quantization import dynamic_int8, fake_quantize
from vla_envs.strict_config import StrictConfig


class QuantizationSpec(StrictConfig):
    method: Literal["fake", "dynamic_int8", "torchao", "quanto"] = "fake"
    bits: Literal[2, 4, 8] = 8  # fake and quanto
    torchao: Literal["int8_weight_only", "int8_dynamic", "int4_weight_only"] | None = None
    group_size: Literal[32, 64, 128] | None = None  # torchao int4_weight_only only

    @model_validator(mode="after")
    def _torchao_fields(self):
        if (self.method == "torchao") != (self.torchao is not None):
            raise ValueError(f"quantization.torchao = {self.torchao!r}: expected one of int8_weight_only, "
                             "int8_dynamic, int4_weight_only exactly when method is 'torchao'")
        if (self.torchao == "int4_weight_only") != (self.group_size is not None):
            raise ValueError(f"quantization.group_size = {self.group_size!r}: expected 32, 64 or 128 exactly "
                             "for torchao int4_weight_only")
        return self


class PruningSpec(StrictConfig):
    fraction: float = Field(ge=0.0, lt=1.0)
    structured: bool = False


class TokenSpec(StrictConfig):
    keep: float = Field(gt=0.0, le=1.0)
    method: Literal["attention", "norm", "random"] = "attention"


class FastSpec(StrictConfig):
    """The chunk goes through FAST tokens (``policies.compression.fast``): ``tokenizer`` is a
    shipped vocabulary's name (``policies/compression/fast_<name>.json``) or a JSON file's path;
    ``max_tokens`` a decoder's token budget (None: all tokens); ``relaxed`` LeRobot's decoding
    of a malformed sequence instead of pi0-FAST's zeros."""

    tokenizer: str = "tinyvla"
    max_tokens: int | None = Field(None, ge=1)
    relaxed: bool = False


class LayerSkipSpec(StrictConfig):
    blocks: list[int] = Field(min_length=1)


class TokenCacheSpec(StrictConfig):
    """Reuse an image token's keys and values while its patch's cosine similarity to the pixels
    they were computed from stays >= ``similarity`` (``policies.tinyvla.token_cache``)."""

    similarity: float = Field(gt=0.0)


class ActionCodecSpec(StrictConfig):
    fast: FastSpec | None = None
    dct_keep: int | None = Field(None, ge=1)
    quantization_scale: float | None = Field(None, gt=0.0)
    downsample: int | None = Field(None, ge=1)


class ExecutionSpec(StrictConfig):
    open_loop_steps: int = Field(ge=1)


class CompressionSpec(StrictConfig):
    quantization: QuantizationSpec | None = None
    pruning: PruningSpec | None = None
    token_sparsification: TokenSpec | None = None
    layer_skip: LayerSkipSpec | None = None
    token_cache: TokenCacheSpec | None = None
    action_codec: ActionCodecSpec | None = None
    execution: ExecutionSpec | None = None


class CompressedPolicy(Policy):
    """A base policy with a transformed model and/or post-processed action chunks."""

    def __init__(self, base: Policy, spec: CompressionSpec, variant_card: dict):
        self.base = base
        self.spec = spec
        self.variant_card = variant_card
        self.action_dim = base.action_dim
        self.chunk_size = base.chunk_size
        if spec.execution is not None and spec.execution.open_loop_steps > base.chunk_size:
            raise ValueError(
                f"execution.open_loop_steps={spec.execution.open_loop_steps}: expected <= chunk size {base.chunk_size}"
            )
        self.execute_steps = spec.execution.open_loop_steps if spec.execution else None
        codec = spec.action_codec
        self.fast = None
        if codec is not None and codec.fast is not None:
            from policies.compression.fast import FastTokenizer, shipped_path

            self.fast = FastTokenizer.load(shipped_path(codec.fast.tokenizer))
            if (self.fast.horizon, self.fast.action_dim) != (base.chunk_size, base.action_dim):
                raise ValueError(f"action_codec.fast.tokenizer {codec.fast.tokenizer!r} codes chunks of "
                                 f"{self.fast.horizon} x {self.fast.action_dim} actions: expected the policy's "
                                 f"{base.chunk_size} x {base.action_dim}")
        self._decode_failures = 0

    def torch_module(self):
        return self.base.torch_module()

    @property
    def model(self):
        """The transformed torch module (``torch_module()``), for inspection."""
        return self.torch_module()

    def reset(self, instruction: str = "") -> None:
        super().reset(instruction)
        self.base.reset(instruction)
        self._decode_failures = 0

    def episode_counters(self) -> dict[str, int]:
        counters = self.base.episode_counters()
        counters["decode_failures"] += self._decode_failures
        return counters

    def act(self, obs):
        chunk = self.base.act(obs)
        codec = self.spec.action_codec
        if self.fast is not None:
            decoded = self.fast.roundtrip(chunk, codec.fast.max_tokens, codec.fast.relaxed)
            self._decode_failures += int(decoded.failed)
            chunk = decoded.chunk
        if codec is not None:
            if codec.dct_keep is not None or codec.quantization_scale is not None:
                chunk = dct_compress(chunk, codec.dct_keep or len(chunk), codec.quantization_scale)
            if codec.downsample is not None:
                chunk = temporal_downsample(chunk, codec.downsample)
        return chunk


def load_spec(spec: dict | str | Path | CompressionSpec) -> CompressionSpec:
    if isinstance(spec, CompressionSpec):
        return spec
    if isinstance(spec, (str, Path)):
        from vla_envs.config import load_config

        return load_config(spec, CompressionSpec)
    return CompressionSpec.model_validate(spec)


def compress(policy: Policy, spec: dict | str | Path | CompressionSpec, base_name: str | None = None) -> CompressedPolicy:
    """A compressed variant of ``policy`` (the original is left untouched)."""
    spec = load_spec(spec)
    weight_methods = spec.quantization is not None or spec.pruning is not None
    if weight_methods and policy.torch_module() is None:
        raise ValueError(f"{type(policy).__name__} has no torch module (Policy.torch_module() is None): "
                         "weight quantization/pruning need one")
    model_methods = spec.token_sparsification or spec.layer_skip or spec.token_cache
    base = copy.deepcopy(policy) if (weight_methods or model_methods) else policy
    if spec.pruning is not None:
        prune = structured_prune_rows if spec.pruning.structured else magnitude_prune
        base.model = prune(base.model, spec.pruning.fraction)
    if spec.quantization is not None:
        q = spec.quantization
        if q.method == "torchao":
            from policies.compression.torchao_quantization import torchao_quantize

            base.model = torchao_quantize(base.model, q.torchao, q.group_size)
        elif q.method == "quanto":
            from policies.compression.quanto_quantization import quanto_quantize

            base.model = quanto_quantize(base.model, q.bits)
        else:
            base.model = dynamic_int8(base.model) if q.method == "dynamic_int8" else fake_quantize(base.model, q.bits)
    # each raises UnsupportedCapability (a ValueError) naming the policy when it does not declare it
    if spec.token_sparsification is not None:
        base.set_token_sparsification(spec.token_sparsification.keep, spec.token_sparsification.method)
    if spec.layer_skip is not None:
        base.set_layer_skip(list(spec.layer_skip.blocks))
    if spec.token_cache is not None:
        base.set_token_cache(spec.token_cache.similarity)
    card = {
        "base_model": base_name or type(policy).__name__,
        "methods": [name for name, value in spec.model_dump().items() if value is not None],
        "parameters": spec.model_dump(exclude_none=True),
    }
    return CompressedPolicy(base, spec, card)
