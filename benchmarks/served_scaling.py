"""Many simulators, one model: episodes per minute against the number of simulator workers, with
the policy in every worker (in-process) and in one policy server the run starts (``serving``),
unbatched and batched, measured in one run and printed side by side; then the two physical
limits: simulator steps per second on one core, and the model's forward passes per second at
the batch sizes the served runs reached.

The work: TinyVLA (the shipped reference) on Lift, 64 px images, the quickstart's execution
(open loop, 4 of 8 actions), seeds 0..N-1. Times are wall clock for ``run_episodes`` (server and
worker start-up included, the summary and report excluded), into fresh temporary folders.

    python benchmarks/served_scaling.py [--seeds 8] [--workers 1 2] [--task Lift]

On a machine with more cores, e.g. ``--workers 1 2 4 8 16 --seeds 64``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import vla_envs  # noqa: F401  (first: sets MUJOCO_GL before mujoco picks a GL backend)
from evaluation.run.config import EvalConfig
from evaluation.runner import run_episodes

POLICY = "policies.tinyvla:load_reference"


def config(task: str, seeds: int, serving: dict | None) -> EvalConfig:
    data = {
        "name": "served scaling benchmark",
        "tasks": [task],
        "seeds": list(range(seeds)),
        "env": {"obs_mode": "rgb", "image_size": 64},
        "base": {"name": "tinyvla", "policy": {"factory": POLICY}},
        "execution": {"schedule": "open_loop", "execute_steps": 4},
        "profile": {"enabled": False},
        "recording": {"record_steps": False},
    }
    if serving is not None:
        data["serving"] = serving
    return EvalConfig.model_validate(data)


def timed(cfg: EvalConfig, workers: int) -> tuple[int, float, dict | None, int]:
    """(episodes, wall seconds, the server's statistics or None, simulator steps)."""
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        units, ran = run_episodes(cfg, out, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        assert ran == len(units)
        call = json.loads((Path(out) / "run.json").read_text())["calls"][-1]
        stats = call["serving"]["servers"][0]["stats"] if "serving" in call else None
        steps = sum(int(pq.read_table(p, columns=["n_steps"]).column(0)[0].as_py())
                    for p in (Path(out) / "parts" / "episodes").glob("*.parquet"))
    return ran, seconds, stats, steps


def simulator_steps_per_s(task: str, steps: int = 200) -> float:
    """Env steps per second in this process (rendering both 64 px views), zero actions."""
    import gymnasium as gym
    import numpy as np

    env = gym.make(f"vla_envs/{task}-v0", obs_mode="rgb", image_size=64)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, dtype=np.float32)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset(seed=0)
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate


def forward_passes_per_s(batch: int, calls: int = 40) -> float:
    """TinyVLA's forward passes per second at ``batch`` observations (``act_batch``), 1 thread."""
    import numpy as np
    import torch

    from policies.factories import resolve_factory

    torch.set_num_threads(1)
    policy = resolve_factory(POLICY)()
    sessions = [policy.fork() for _ in range(batch)]
    for session in sessions:
        session.reset("lift the red cube")
    rng = np.random.default_rng(0)
    size = policy.model.config.image_size
    obs = {"image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 255, (size, size, 3), dtype=np.uint8),
           "proprio": rng.normal(size=policy.model.config.proprio_dim).astype(np.float32)}
    policy.act_batch(sessions, [obs] * batch)  # warm-up
    start = time.perf_counter()
    for _ in range(calls):
        policy.act_batch(sessions, [obs] * batch)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8, help="episodes per run")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="simulator worker counts")
    parser.add_argument("--task", default="Lift")
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    modes = {
        "in-process": lambda workers: None,
        "served": lambda workers: {"max_batch": 1},
        "served, batched": lambda workers: {"max_batch": max(workers, 1), "max_wait_ms": args.max_wait_ms},
    }
    print(f"\n{args.seeds} episodes of TinyVLA on {args.task} per run")
    print(f"{'mode':<16} {'workers':>7} {'wall (s)':>9} {'episodes/min':>13} {'vs in-process x1':>17} "
          f"{'mean batch':>11} {'forward (ms)':>13}")
    reference = None
    batches = set()
    for workers in args.workers:
        for mode, serving in modes.items():
            n, seconds, stats, steps = timed(config(args.task, args.seeds, serving(workers)), workers)
            rate = 60 * n / seconds
            reference = reference or rate
            batch = f"{stats['mean_batch_size']:.2f}" if stats else "-"
            forward = f"{stats['forward_ms']['mean']:.2f}" if stats else "-"
            if stats:
                batches.add(max(1, round(stats["mean_batch_size"])))
            print(f"{mode:<16} {workers:>7} {seconds:>9.1f} {rate:>13.1f} {rate / reference:>16.2f}x "
                  f"{batch:>11} {forward:>13}", flush=True)

    print("\nPhysical limits (this process, one core):")
    sim = simulator_steps_per_s(args.task)
    print(f"  simulator: {sim:.0f} steps/s per core (stepping and rendering both 64 px views)")
    for batch in sorted(batches | {1}):
        passes = forward_passes_per_s(batch)
        print(f"  model: {passes:.0f} forward passes/s at batch {batch} ({passes * batch:.0f} queries/s)")
    print("  (a query every 4 steps: one core's simulator asks for about "
          f"{sim / 4:.0f} queries/s)")


if __name__ == "__main__":
    main()
