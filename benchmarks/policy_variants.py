"""Conventional inference cost of the reference VLA's compressed variants, side by side.

For each variant: params, non-zero params, weight memory as stored (the effective precision:
fake int4 counts 4 bits) and as allocated (what the process holds: fake int4 is float32,
torchao's int8 tensors their int8 values and scales), FLOPs per call (torch's counter; for the
token cache the mean over the sequence below), and latency as a ratio to the base model.
Every variant acts on the same sequence of ``--calls`` Lift observations, one per query of an
episode the base model drives (4 actions per chunk), starting from ``reset``: a token cache
reuses what a real episode lets it reuse, not a frozen frame. Latencies are measured in
interleaved rounds (every variant once per round) and the ratio is the median over rounds of
the per-round ratio, so machine noise hits all variants alike.

    python benchmarks/policy_variants.py [--rounds 7] [--calls 20] [--checkpoint DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import vla_envs  # noqa: F401,I001
import gymnasium as gym
import torch
from rich.console import Console
from rich.table import Table

from policies.compression import compress
from policies.profiling import profile
from policies.tinyvla import load_reference

VARIANTS: dict[str, dict] = {
    "base": {},
    "int8 (fake)": {"quantization": {"method": "fake", "bits": 8}},
    "int4 (fake)": {"quantization": {"method": "fake", "bits": 4}},
    "int8 dynamic": {"quantization": {"method": "dynamic_int8"}},
    "torchao int8 weight-only": {"quantization": {"method": "torchao", "torchao": "int8_weight_only"}},
    "torchao W8A8": {"quantization": {"method": "torchao", "torchao": "int8_dynamic"}},
    "quanto int8": {"quantization": {"method": "quanto", "bits": 8}},
    "quanto int4 (groups of 128)": {"quantization": {"method": "quanto", "bits": 4}},
    "quanto int2 (groups of 128)": {"quantization": {"method": "quanto", "bits": 2}},
    "prune 30%": {"pruning": {"fraction": 0.3}},
    "prune 50%": {"pruning": {"fraction": 0.5}},
    "prune rows 25%": {"pruning": {"fraction": 0.25, "structured": True}},
    "tokens 50% attention": {"token_sparsification": {"keep": 0.5, "method": "attention"}},
    "tokens 25% attention": {"token_sparsification": {"keep": 0.25, "method": "attention"}},
    "tokens 50% norm": {"token_sparsification": {"keep": 0.5, "method": "norm"}},
    "tokens 50% random": {"token_sparsification": {"keep": 0.5, "method": "random"}},
    "DCT keep 3": {"action_codec": {"dct_keep": 3}},
    "DCT keep 3, q=10": {"action_codec": {"dct_keep": 3, "quantization_scale": 10.0}},
    "downsample 2": {"action_codec": {"downsample": 2}},
    "FAST": {"action_codec": {"fast": {"tokenizer": "tinyvla"}}},
    "skip block 3 (early exit)": {"layer_skip": {"blocks": [3]}},
    "token cache, similarity 0.999": {"token_cache": {"similarity": 0.999}},
    "token cache, similarity 0.99": {"token_cache": {"similarity": 0.99}},
}


def observation_sequence(base, env, calls: int) -> tuple[list[dict], str]:
    """The observations the base model is queried on in one Lift episode (seed 0)."""
    obs, info = env.reset(seed=0)
    base.reset(info["instruction"])
    sequence = []
    while len(sequence) < calls:
        sequence.append(obs)
        for action in base.act(obs)[:EXECUTE_STEPS]:
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset(seed=len(sequence))
                break
    return sequence, info["instruction"]
LIBRARY_VARIANTS = ("torchao int8 weight-only", "torchao W8A8", "quanto int8", "quanto int4 (groups of 128)",
                    "quanto int2 (groups of 128)")
EXECUTE_STEPS = 4  # actions run per query while recording the observation sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--checkpoint", help="checkpoint directory (default: the shipped weights)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = as in parallel evaluation)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = load_reference(args.checkpoint)
    env = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=base.model.config.image_size)
    sequence, instruction = observation_sequence(base, env, args.calls)
    try:
        import optimum.quanto  # noqa: F401
        import torchao  # noqa: F401
        variants = VARIANTS
    except ImportError:
        print("torchao or optimum-quanto is not installed (pip install -e \".[quant]\"): their variants are left out")
        variants = {name: spec for name, spec in VARIANTS.items() if name not in LIBRARY_VARIANTS}
    policies = {name: compress(base, spec) if spec else base for name, spec in variants.items()}
    profiles = {}
    flops = {}
    for name, policy in policies.items():
        policy.reset(instruction)
        profiles[name] = profile(policy, sequence[0], repeats=3)
        policy.reset(instruction)  # a token cache's saving over the sequence, by its own counter
        for obs in sequence:
            policy.act(obs)
        flops[name] = profiles[name].flops_per_call - policy.episode_counters()["flops_saved"] / len(sequence)
    ratios: dict[str, list[float]] = {name: [] for name in policies}
    medians: dict[str, list[float]] = {name: [] for name in policies}
    for _ in range(args.rounds):
        round_ms = {}
        for name, policy in policies.items():
            policy.reset(instruction)
            times = []
            for obs in sequence:
                start = time.perf_counter()
                policy.act(obs)
                times.append((time.perf_counter() - start) * 1e3)
            round_ms[name] = statistics.median(times)
        for name in policies:
            ratios[name].append(round_ms[name] / round_ms["base"])
            medians[name].append(round_ms[name])
    table = Table("variant", "params", "non-zero", "weight MB stored", "weight MB allocated", "MFLOPs/call",
                  "FLOPs ratio", "latency ms", "latency ratio")
    for name, p in profiles.items():
        table.add_row(name, f"{p.params:,}", f"{p.nonzero_params:,}", f"{p.weight_memory_mb:.2f}",
                      f"{p.weight_allocated_mb:.2f}", f"{flops[name] / 1e6:.1f}", f"{flops[name] / flops['base']:.3f}",
                      f"{statistics.median(medians[name]):.2f}", f"{statistics.median(ratios[name]):.3f}")
    Console().print(table)
    print(f"torch threads: {args.threads}; {args.rounds} interleaved rounds x {args.calls} calls (one Lift episode's "
          "queries); "
          "fake quantization stores dequantized float weights, so its latency equals the base model's")


if __name__ == "__main__":
    main()
