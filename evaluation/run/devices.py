"""Device models for ``latency: {device: NAME}``: latency per call from FLOPs.

    latency_ms = flops_per_call / (effective_tflops * 1e12) * 1e3 + overhead_ms

The shipped table is ``configs/latency/devices.yaml`` (each entry's figures and sources are
documented there); an evaluation config's ``devices:`` mapping adds entries or overrides them by
name. A roofline this simple is a planning tool: it ranks variants by FLOPs and adds a fixed
cost per query, so it shows what a FLOP reduction is worth on a device, and nothing more.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from vla_envs.strict_config import StrictConfig


class DeviceModel(StrictConfig):
    """One device: the throughput a batch-1 query sustains and a fixed cost per query."""

    description: str = ""
    effective_tflops: float = Field(gt=0.0, allow_inf_nan=False, description="sustained TFLOP/s for one query")
    overhead_ms: float = Field(0.0, ge=0.0, allow_inf_nan=False, description="fixed cost per query (ms)")
    source: str = ""


class DeviceTable(StrictConfig):
    devices: dict[str, DeviceModel]


def shipped_devices_path() -> Path:
    from vla_envs.config import shipped_config_dir

    return shipped_config_dir() / "latency" / "devices.yaml"


@lru_cache(maxsize=1)
def shipped_devices() -> dict[str, DeviceModel]:
    """The shipped device table, validated (``ConfigError`` naming the entry and field)."""
    from vla_envs.config import load_config

    return dict(load_config(shipped_devices_path(), DeviceTable).devices)


def device_latency_ms(flops_per_call: float, device: DeviceModel) -> float:
    """The modelled latency of one query of ``flops_per_call`` FLOPs on ``device`` (ms)."""
    if not (flops_per_call >= 0 and math.isfinite(flops_per_call)):
        raise ValueError(f"flops_per_call={flops_per_call!r}: expected a finite number >= 0")
    return flops_per_call / (device.effective_tflops * 1e12) * 1e3 + device.overhead_ms

