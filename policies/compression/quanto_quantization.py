"""Weight quantization with Hugging Face's optimum-quanto: int8, int4 and int2 weights on any device.

The second library family beside torchao (``torchao_quantization``), chosen because it is what a
user of this suite on a CPU reaches for: torchao's int4 weight-only path needs CUDA and bfloat16,
quanto's ``qint4`` / ``qint2`` weights (one scale and shift per group of 128 inputs) run on CPU
and CUDA alike, and it is the backend of ``transformers``' ``QuantoConfig``. Weights are
quantized and frozen (``quantize`` then ``freeze``): the float weights are gone, the module holds
quanto's packed tensors (``WeightQBytesTensor`` for int8, ``WeightQBitsTensor`` for int4 / int2),
whose bytes ``policies.profiling.weight_bytes`` counts. Activations stay float.

quanto's int4 / int2 matmuls fail under ``torch.inference_mode`` ("Cannot set version_counter for
inference tensor"); the suite's policies run under ``torch.no_grad``.
"""

from __future__ import annotations

import copy

from torch import nn

from policies.compression.torchao_quantization import QuantizationUnavailable

QUANTO_BITS = (8, 4, 2)


def quanto_quantize(module: nn.Module, bits: int) -> nn.Module:
    """A copy of ``module`` whose linear layers hold quanto int``bits`` weights."""
    if bits not in QUANTO_BITS:
        raise ValueError(f"bits={bits}: quanto quantizes weights to one of {QUANTO_BITS} bits")
    try:
        from optimum.quanto import freeze, qint2, qint4, qint8, quantize
    except ImportError:
        raise QuantizationUnavailable("optimum-quanto is not installed: pip install optimum-quanto "
                                      "(or this project's extra: pip install -e \".[quant]\")") from None
    quantized = copy.deepcopy(module)
    quantize(quantized, weights={8: qint8, 4: qint4, 2: qint2}[bits])
    freeze(quantized)
    return quantized
