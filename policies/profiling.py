"""Conventional inference metrics of a policy: the numbers VLA papers report as "efficiency".

``profile(policy, obs)`` -> params, non-zero params, weight memory at the weights' effective
precision, FLOPs per ``act`` call (torch's FLOP counter), latency per call (median and p90 over
repeated calls), peak memory of one call. Policies backed by a torch module return it from
``Policy.torch_module()``; others (scripted experts, remote clients) get ``None`` for the model-based
fields and are timed all the same.

Peak memory adds two allocators' own accounting over one call: torch's CPU allocator (the
profiler's memory events, in time order: the most bytes alive at once) and the Python heap
(tracemalloc, which sees numpy but not torch's allocator).
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
    peak_memory_mb: float  # most bytes alive at once during one call: torch's allocator + Python heap
    calls: int
    weight_memory_mb: float | None = None  # weights as stored: their effective precision (fake int4: 4 bits)
    weight_allocated_mb: float | None = None  # weights as held in this process's memory (fake int4: float32)

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
        if hasattr(type(tensor), "__tensor_flatten__"):  # torchao's quantized weights: count their values
            tensor = tensor.dequantize()
        nonzero += int(torch.count_nonzero(tensor.detach()))
    return total, nonzero


def _flops(policy, obs) -> int:
    """torch's FLOP counter, plus 2 * in * out per row for every linear layer whose matmul the
    counter did not see: torch.ao's dynamic-quantized linears and the integer kernels of
    torchao's W8A8 (``torch._int_mm``) and quanto's int8 run outside the aten ops it counts.
    A linear layer it did see (float, fake-quantized, or dequantized before a float matmul, as
    quanto's int4) is counted once, by the counter."""
    from torch import nn
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    unseen_flops = 0
    before: dict[int, int] = {}

    def start(module, inputs):
        before[id(module)] = counter.get_total_flops()

    def finish(module, inputs, output):
        nonlocal unseen_flops
        if counter.get_total_flops() == before.pop(id(module)):
            rows = inputs[0].numel() // module.in_features
            unseen_flops += 2 * rows * module.in_features * module.out_features

    linears = [m for m in policy.torch_module().modules() if isinstance(m, (nn.Linear, DynamicQuantizedLinear))]
    hooks = [h for m in linears for h in (m.register_forward_pre_hook(start), m.register_forward_hook(finish))]
    try:
        with counter:
            policy.act(obs)
    finally:
        for hook in hooks:
            hook.remove()
    return int(counter.get_total_flops()) + unseen_flops


def _per_channel():
    import torch

    return (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)


def weight_bytes(model) -> int:
    """Bytes of the model's weights at their effective precision: a layer marked with
    ``weight_bits`` (fake quantization) counts that many bits per weight plus one float32 scale
    per output row; dynamic-quantized linears their int8 weights plus float32 scales and bias;
    torchao's quantized weights the inner tensors they hold (``tensor_bytes``); every other
    tensor its own element size."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    from policies.compression.torchao_quantization import tensor_bytes

    total = 0
    for module in model.modules():
        bits = getattr(module, "weight_bits", None)
        for name, parameter in module.named_parameters(recurse=False):
            if name == "weight" and bits is not None:
                total += (parameter.numel() * bits + 7) // 8 + 4 * parameter.shape[0]
            else:
                total += tensor_bytes(parameter)
        for name, buffer in module.named_buffers(recurse=False):
            total += buffer.numel() * buffer.element_size()
        if isinstance(module, DynamicQuantizedLinear):
            weight, bias = module._weight_bias()
            total += weight.numel() + 4 * module.out_features + (0 if bias is None else 4 * bias.numel())
    return total


def _storages(tensor, seen: dict[tuple[str, int], int]) -> None:
    """Record the storages behind ``tensor`` (a subclass's inner tensors for torchao / quanto
    weights) by address, so views and shared weights count once."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = tensor.__tensor_flatten__()
        for name in names:
            _storages(getattr(tensor, name), seen)
        return
    if tensor.is_quantized:  # torch.ao's quantized tensors: int8 values and per-channel qparams
        per_channel = tensor.qscheme() in _per_channel()
        qparams = 16 * tensor.q_per_channel_scales().numel() if per_channel else 16  # float64 scale, int64 zero
        # unpacked afresh by each _weight_bias() call: never shared, keyed by arrival
        seen[("quantized", len(seen))] = tensor.numel() * tensor.element_size() + qparams
        return
    storage = tensor.untyped_storage()
    seen[(str(tensor.device), storage.data_ptr())] = storage.nbytes()


def allocated_weight_bytes(model) -> int:
    """Bytes of memory the model's parameters and buffers occupy in this process: every storage
    once, at the dtype it is held in (fake-quantized weights stay float32; torchao's and
    quanto's hold their packed integers and scales). Dynamic-quantized linears count the int8
    weights and float64 scales torch.ao keeps (their prepacked copy inside the backend
    library is not visible from Python)."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    seen: dict[tuple[str, int], int] = {}
    for tensor in (*model.parameters(), *model.buffers()):
        _storages(tensor, seen)
    for module in model.modules():
        if isinstance(module, DynamicQuantizedLinear):
            for tensor in module._weight_bias():
                if tensor is not None:
                    _storages(tensor, seen)
    return sum(seen.values())


def _torch_peak_bytes(call) -> int:
    """The most bytes torch's CPU allocator held at once during ``call()``, above what it held
    before (the profiler's per-op memory records, in time order)."""
    import os

    from torch.profiler import ProfilerActivity, profile as torch_profile

    # kineto writes two lines to fd 2 per profiling session; they are not ours to show
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            with torch_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recording:
                call()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    alive = peak = 0
    for event in sorted(recording.profiler.function_events, key=lambda e: e.time_range.start):
        alive += event.self_cpu_memory_usage
        peak = max(peak, alive)
    return peak


def profile(policy, obs, repeats: int = 50, warmup: int = 5) -> InferenceProfile:
    """Profile ``policy.act(obs)``; latencies over ``repeats`` calls after ``warmup`` calls."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats}: expected >= 1")
    model = policy.torch_module()
    params = nonzero = flops = weights = allocated = None
    if model is not None:
        params, nonzero = _parameter_counts(model)
        flops = _flops(policy, obs)
        weights = weight_bytes(model)
        allocated = allocated_weight_bytes(model)
    for _ in range(warmup):
        policy.act(obs)
    gc.collect()
    tracemalloc.start()
    try:
        policy.act(obs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if model is not None:  # a second call, outside tracemalloc: the profiler's own objects must not count
        peak += _torch_peak_bytes(lambda: policy.act(obs))
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
        weight_memory_mb=None if weights is None else weights / 2**20,
        weight_allocated_mb=None if allocated is None else allocated / 2**20,
    )
