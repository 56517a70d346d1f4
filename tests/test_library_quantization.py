"""Weight quantization through maintained libraries: torchao (``policies.compression.
torchao_quantization``: real int8 tensors and kernels on TinyVLA, a clear refusal where int4's CUDA
kernels cannot run) and optimum-quanto (``quanto_quantization``: int8 / int4 / int2 weights on the
CPU); the base left untouched, the bytes the quantized weights hold counted exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("torchao", reason="torchao is not installed: pip install -e \".[quant]\"")
pytest.importorskip("optimum.quanto", reason="optimum-quanto is not installed: pip install -e \".[quant]\"")

from policies.compression import compress  # noqa: E402
from policies.compression.quanto_quantization import quanto_quantize  # noqa: E402
from policies.compression.torchao_quantization import (  # noqa: E402
    QuantizationUnavailable,
    tensor_bytes,
    torchao_quantize,
)
from policies.profiling import allocated_weight_bytes, profile, weight_bytes  # noqa: E402
from policies.tinyvla import load_reference  # noqa: E402


def _obs(policy):
    config = policy.model.config
    rng = np.random.default_rng(0)
    return {"image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
            "proprio": rng.normal(size=config.proprio_dim).astype(np.float32)}


def _int8_bytes(model: nn.Module) -> int:
    """Closed form: each linear's int8 weights, a float32 scale and an int8 zero point per output
    row, its float32 bias; every other tensor as it is."""
    total = 0
    for module in model.modules():
        for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            if isinstance(module, nn.Linear) and name == "weight":
                total += tensor.numel() + 5 * tensor.shape[0]
            else:
                total += tensor.numel() * tensor.element_size()
    return total


def _variant_against_base(spec: dict):
    """TinyVLA and its ``spec`` variant on one observation: the largest action difference, and
    the base's weights checked unchanged."""
    policy = load_reference()
    before = {key: value.clone() for key, value in policy.model.state_dict().items()}
    obs = _obs(policy)
    policy.reset("lift the red cube")
    base_chunk = policy.act(obs)
    variant = compress(policy, spec)
    variant.reset("lift the red cube")
    chunk = variant.act(obs)
    assert chunk.shape == base_chunk.shape and np.isfinite(chunk).all()
    for key, value in policy.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    return policy, variant, obs, float(np.abs(chunk - base_chunk).max())


@pytest.mark.parametrize("method", ["int8_weight_only", "int8_dynamic"])
def test_int8_methods_hold_int8_weights_act_differently_and_leave_the_base_alone(method):
    policy, variant, obs, error = _variant_against_base({"quantization": {"method": "torchao", "torchao": method}})
    assert 0 < error < 0.2
    qkv = variant.model.blocks[0].attn.qkv.weight
    assert type(qkv).__name__ == "Int8Tensor" and qkv.qdata.dtype == torch.int8
    assert weight_bytes(variant.model) == _int8_bytes(policy.model)
    assert weight_bytes(variant.model) < 0.35 * weight_bytes(policy.model)
    timing = profile(variant, obs, repeats=3, warmup=1)
    assert timing.latency_median_ms > 0 and timing.weight_memory_mb == pytest.approx(weight_bytes(variant.model) / 2**20)
    # unlike fake quantization, the memory the process holds shrinks too
    assert timing.weight_allocated_mb == pytest.approx(timing.weight_memory_mb, rel=1e-3)


def test_int4_on_a_cpu_is_refused_saying_what_it_needs():
    with pytest.raises(QuantizationUnavailable, match=r"int4_weight_only runs torchao's tinygemm kernels, on a CUDA "
                                                      r"device.*the model is on cpu: use int8_weight_only or int8_dynamic"):
        torchao_quantize(nn.Sequential(nn.Linear(64, 64)), "int4_weight_only", group_size=32)


@pytest.mark.parametrize("spec, message", [
    ({"method": "torchao"}, "exactly when method is 'torchao'"),
    ({"method": "fake", "torchao": "int8_dynamic"}, "exactly when method is 'torchao'"),
    ({"method": "torchao", "torchao": "int8_dynamic", "group_size": 32}, "exactly for torchao int4_weight_only"),
    ({"method": "torchao", "torchao": "int4_weight_only"}, "exactly for torchao int4_weight_only"),
])
def test_a_torchao_spec_missing_or_misplacing_a_field_is_refused(spec, message):
    from pydantic import ValidationError

    from policies.compression.compress import CompressionSpec

    with pytest.raises(ValidationError, match=message):
        CompressionSpec.model_validate({"quantization": spec})


def test_tensor_bytes_of_plain_and_quantized_tensors():
    assert tensor_bytes(torch.zeros(3, 5)) == 60
    layer = torchao_quantize(nn.Sequential(nn.Linear(64, 32)), "int8_weight_only")[0]
    assert tensor_bytes(layer.weight) == 32 * 64 + 32 * 4 + 32


@pytest.mark.parametrize("bits, expected_bytes", [
    (8, 64 * 256 + 4 * 64),  # int8 values, a float32 scale per output row
    (4, 64 * 256 // 2 + 8 * (64 * 256 // 128)),  # two values a byte, scale and shift per 128 inputs
    (2, 64 * 256 // 4 + 8 * (64 * 256 // 128)),  # four values a byte
])
def test_quanto_weights_hold_their_packed_bytes(bits, expected_bytes):
    layer = quanto_quantize(nn.Sequential(nn.Linear(256, 64)), bits)[0]
    assert tensor_bytes(layer.weight) == expected_bytes


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_quanto_variants_act_on_the_cpu_and_leave_the_base_alone(bits):
    policy, variant, _, error = _variant_against_base({"quantization": {"method": "quanto", "bits": bits}})
    assert 0 < error < {8: 0.2, 4: 1.0, 2: 2.0}[bits]
    assert weight_bytes(variant.model) < {8: 0.35, 4: 0.25, 2: 0.2}[bits] * weight_bytes(policy.model)
    assert allocated_weight_bytes(variant.model) == weight_bytes(variant.model)


@pytest.mark.parametrize("spec", [{"method": "torchao", "torchao": "int8_dynamic"}, {"method": "torchao", "torchao": "int8_weight_only"},
                                  {"method": "quanto", "bits": 8}, {"method": "quanto", "bits": 4}])
def test_integer_kernels_count_the_same_flops_as_the_float_model(spec):
    """torch's counter does not see torch._int_mm or quanto's int8 kernel: profile() adds those
    linears' 2 * in * out per row, so an int8 model does the float model's arithmetic."""
    policy, variant, obs, _ = _variant_against_base({"quantization": spec})
    assert profile(variant, obs, repeats=1, warmup=0).flops_per_call == profile(policy, obs, repeats=1, warmup=0).flops_per_call
