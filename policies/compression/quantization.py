"""Weight quantization: fake (quantize-dequantize) per output channel, and real dynamic int8."""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn


def fake_quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric per-output-channel quantize-dequantize.

    Row i is scaled by s_i = max_j |w_ij| / (2^(bits-1) - 1), rounded to integers in
    [-2^(bits-1), 2^(bits-1) - 1] and scaled back: at most 2^bits distinct values per row
    (symmetric scaling uses 2^bits - 1 of them: 15 for int4), zero stays zero, the largest
    magnitude is kept exactly.
    """
    if not 2 <= bits <= 16:
        raise ValueError(f"bits={bits}: expected 2..16")
    if weight.ndim < 2:
        raise ValueError(f"weight must have an output-channel dimension, got shape {tuple(weight.shape)}")
    qmax = 2 ** (bits - 1) - 1
    flat = weight.detach().reshape(weight.shape[0], -1)
    scale = flat.abs().amax(dim=1, keepdim=True) / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(flat / scale), -qmax - 1, qmax)
    return (q * scale).reshape(weight.shape).to(weight.dtype)


def fake_quantize(module: nn.Module, bits: int, layer_types: tuple[type, ...] = (nn.Linear,)) -> nn.Module:
    """A copy of ``module`` whose layers of ``layer_types`` have fake-quantized weights (biases kept)."""
    quantized = copy.deepcopy(module)
    with torch.no_grad():
        for layer in quantized.modules():
            if isinstance(layer, layer_types):
                layer.weight.copy_(fake_quantize_weight(layer.weight, bits))
                layer.weight_bits = bits  # what its weights would take on a device (profiling.weight_bytes)
    return quantized


def dynamic_int8(module: nn.Module) -> nn.Module:
    """A copy with real int8 dynamic quantization of every ``nn.Linear`` (torch.ao API, CPU)."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch deprecates quantized tensor creation in favour of torchao; the API still runs.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return quantize_dynamic(copy.deepcopy(module), {nn.Linear}, dtype=torch.qint8)
