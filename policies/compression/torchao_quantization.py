"""Weight quantization as deployments run it: torchao's tensor subclasses and kernels.

Unlike ``fake_quantize`` (quantize-dequantize in float32: the numbers change, memory and
latency do not), these store int8 / int4 weights with their scales and run torchao's kernels:

=====================  ======================================================  ==================
method                 torchao config                                          runs on
=====================  ======================================================  ==================
``int8_weight_only``   ``Int8WeightOnlyConfig``: int8 weights, per-row scales    CPU and CUDA
``int8_dynamic``       ``Int8DynamicActivationInt8WeightConfig`` (W8A8):          CPU and CUDA
                       activations quantized per token at every call
``int4_weight_only``   ``Int4WeightOnlyConfig(group_size)``: int4 weights,        CUDA, bfloat16
                       one scale and zero point per ``group_size`` inputs         (tinygemm kernels)
=====================  ======================================================  ==================

Every ``nn.Linear`` is quantized (torchao's default filter); ``exclude`` names submodules left in
float (a model's ``pruning_exclude``, e.g. TinyVLA's action head, is not excluded: deployed
int8 models quantize every linear). Where a method cannot run, ``QuantizationUnavailable`` says
what it needs instead of torchao's own error. ``policies.profiling.weight_bytes`` counts the
bytes these subclasses actually hold (their inner tensors: ``qdata``, scales, zero points).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from vla_envs.errors import VlaEnvsError

TORCHAO_METHODS = ("int8_weight_only", "int8_dynamic", "int4_weight_only")
INT4_GROUP_SIZES = (32, 64, 128)


class QuantizationUnavailable(VlaEnvsError, RuntimeError):
    """A quantization method cannot run here (a missing library, device or dtype)."""


def _torchao():
    try:
        import torchao.quantization as quantization
    except ImportError:
        raise QuantizationUnavailable("torchao is not installed: pip install torchao "
                                      "(or this project's extra: pip install -e \".[quant]\")") from None
    return quantization


def torchao_quantize(module: nn.Module, method: str, group_size: int | None = None) -> nn.Module:
    """A copy of ``module`` with torchao-quantized linears (the module docstring)."""
    if method not in TORCHAO_METHODS:
        raise ValueError(f"method={method!r}: expected one of {TORCHAO_METHODS}")
    if (method == "int4_weight_only") != (group_size is not None):
        raise ValueError(f"group_size={group_size!r}: int4_weight_only needs one of {INT4_GROUP_SIZES}, "
                         f"the int8 methods none")
    if group_size is not None and group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"group_size={group_size}: expected one of {INT4_GROUP_SIZES}")
    quantization = _torchao()
    quantized = copy.deepcopy(module)
    if method == "int8_weight_only":
        config = quantization.Int8WeightOnlyConfig()
    elif method == "int8_dynamic":
        config = quantization.Int8DynamicActivationInt8WeightConfig()
    else:
        device = next(quantized.parameters()).device
        if device.type != "cuda":
            raise QuantizationUnavailable(
                f"int4_weight_only runs torchao's tinygemm kernels, on a CUDA device with bfloat16 weights; "
                f"the model is on {device.type}: use int8_weight_only or int8_dynamic here, or move the policy "
                "to a GPU")
        quantized = quantized.to(torch.bfloat16)
        config = quantization.Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")
    quantization.quantize_(quantized, config)
    return quantized


def tensor_bytes(tensor: torch.Tensor) -> int:
    """The bytes a tensor holds: a plain tensor's elements, or, for a tensor subclass that
    flattens into inner tensors (torchao's quantized weights), theirs."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, name)) for name in names)
    return tensor.numel() * tensor.element_size()
