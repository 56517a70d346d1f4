"""Success rate of a TinyVLA checkpoint over seeded episodes, per task.

    python -m policies.tinyvla.evaluate [--tasks Lift Stack PickPlaceCan] [--episodes 50]
        [--seed-start 0] [--schedule open_loop --execute-steps 4] [--workers 2] [--checkpoint DIR]

Seeds start at 0: the demonstrations used seeds from 1000 up, so these initial states are
unseen in training. For full embodied-cost comparisons of variants use ``vla-envs eval``.
"""

from __future__ import annotations

import argparse
import multiprocessing
from pathlib import Path

import numpy as np


def run_episode(task: str, seed: int, schedule: str = "open_loop", execute_steps: int = 4,
                checkpoint: str | None = None, image_size: int = 64) -> dict:
    import gymnasium as gym
    import torch

    import vla_envs  # noqa: F401
    from policies.chunk_executor import ChunkExecutor
    from policies.tinyvla.policy import load_reference

    torch.set_num_threads(1)
    policy = load_reference(checkpoint)
    env = gym.make(f"vla_envs/{task}-v0", obs_mode="rgb", image_size=policy.model.config.image_size)
    executor = ChunkExecutor(policy, schedule, execute_steps if schedule == "open_loop" else None)
    obs, info = env.reset(seed=seed)
    executor.reset(info["instruction"])
    steps = 0
    while True:
        obs, _, terminated, truncated, info = env.step(executor.step(obs))
        steps += 1
        if terminated or truncated:
            break
    env.close()
    return {"task": task, "seed": seed, "success": bool(info["is_success"]), "steps": steps,
            "inference_calls": executor.inference_calls}


def _run(args: tuple) -> dict:
    return run_episode(*args)


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["Lift", "Stack", "PickPlaceCan"])
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--schedule", choices=["open_loop", "temporal_ensemble"], default="open_loop")
    parser.add_argument("--execute-steps", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: the shipped weights)")
    args = parser.parse_args(argv)
    jobs = [(task, args.seed_start + i, args.schedule, args.execute_steps, str(args.checkpoint) if args.checkpoint else None)
            for task in args.tasks for i in range(args.episodes)]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = list(track(pool.imap(_run, jobs), total=len(jobs), description="episodes"))
    table = Table("task", "success", "rate", "mean steps (successes)", "inference calls / episode")
    for task in args.tasks:
        rows = [r for r in results if r["task"] == task]
        wins = [r for r in rows if r["success"]]
        table.add_row(task, f"{len(wins)}/{len(rows)}", f"{len(wins) / len(rows):.0%}",
                      f"{np.mean([r['steps'] for r in wins]):.1f}" if wins else "-",
                      f"{np.mean([r['inference_calls'] for r in rows]):.1f}")
    Console().print(table)


if __name__ == "__main__":
    main()
