"""Conventional inference metrics of a policy: the numbers VLA papers report as "efficiency".

``profile(policy, obs)`` -> params, non-zero params, FLOPs per ``act`` call (torch's FLOP
counter), latency median and p90 over repeated calls, peak memory. Policies backed by a torch
module expose it as ``policy.model``; others (scripted experts, remote clients) get ``None``
for the model-based fields and are timed all the same.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class InferenceProfile:
    params: int | None  # parameters (quantized weights count once)
    nonzero_params: int | None
    flops_per_call: int | None  # as counted by torch.utils.flop_counter (a multiply-add = 2)
    latency_median_ms: float
    latency_p90_ms: float
    peak_memory_mb: float  # peak Python-heap growth during one call (tracemalloc), plus torch CPU tensors
    calls: int

    def to_dict(self) -> dict:
        return asdict(self)


def _parameter_counts(model) -> tuple[int, int]:
    import torch

    total = nonzero = 0
    tensors = list(model.parameters())
    for module in model.modules():  # dynamic-quantized linears keep weight and bias outside parameters()
        for name in ("weight", "bias"):
            getter = getattr(module, name, None)
            if callable(getter) and not isinstance(getter, torch.nn.Parameter):
                value = getter()
                if value is not None:
                    tensors.append(value.dequantize() if value.is_quantized else value)
    for tensor in tensors:
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor.detach()))
    return total, nonzero


def _flops(policy, obs) -> int:
    """torch's FLOP counter, plus 2 * in * out per row for dynamic-quantized linears, whose
    quantized kernels the counter does not see."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
    from torch.utils.flop_counter import FlopCounterMode

    quantized_flops = 0

    def count(module, inputs, output):
        nonlocal quantized_flops
        rows = inputs[0].numel() // module.in_features
        quantized_flops += 2 * rows * module.in_features * module.out_features

    hooks = [m.register_forward_hook(count) for m in policy.model.modules() if isinstance(m, DynamicQuantizedLinear)]
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            policy.act(obs)
    finally:
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()) + quantized_flops


def profile(policy, obs, repeats: int = 50, warmup: int = 5) -> InferenceProfile:
    """Profile ``policy.act(obs)``; latencies over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: expected >= 1")
    model = getattr(policy, "model", None)
    params = nonzero = flops = None
    if model is not None:
        params, nonzero = _parameter_counts(model)
        flops = _flops(policy, obs)
    for _ in range(warmup):
        policy.act(obs)
    gc.collect()
    tracemalloc.start()
    try:
        policy.act(obs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    latencies = []
    for _ in range(repeats):
        start = time.perf_counter()
        policy.act(obs)
        latencies.append((time.perf_counter() - start) * 1e3)
    return InferenceProfile(
        params=params,
        nonzero_params=nonzero,
        flops_per_call=flops,
        latency_median_ms=statistics.median(latencies),
        latency_p90_ms=float(np.percentile(latencies, 90)),
        peak_memory_mb=peak / 2**20,
        calls=repeats,
    )
