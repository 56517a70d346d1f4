"""Fit and ship the FAST vocabulary of a reference model from its scripted experts' action chunks.

    python -m policies.compression.fast_vocabulary [--episodes 40] [--horizon 8] [--out policies/compression/fast_tinyvla.json]

FAST's byte-pair encoding is trained on the action chunks a model learns to emit; TinyVLA learns
the scripted experts' (``policies.tinyvla.demos``), so its vocabulary is fitted on theirs: every
``horizon``-long window of consecutive clean expert actions, the episode's last action repeated
past its end (as TinyVLA's training targets are cut), over ``--episodes`` successful episodes per
task from seed 1000 (the demonstrations' seeds), state observations (the actions do not depend on
rendering). Scale 10 and 1024 tokens are pi0-FAST's settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from policies.compression.fast import FastTokenizer, shipped_path

TASKS = ("Lift", "Stack", "PickPlaceCan", "Door", "NutAssemblySquare")
SEED_START = 1000


def expert_episodes(task: str, episodes: int, seed_start: int = SEED_START) -> list[np.ndarray]:
    """The clean actions of ``episodes`` successful scripted-expert episodes of ``task``."""
    import gymnasium as gym

    import vla_envs  # noqa: F401 - registers the tasks
    from policies.experts import expert_for_task

    env = gym.make(f"vla_envs/{task}-v0", obs_mode="state")
    kept, seed = [], seed_start
    while len(kept) < episodes:
        obs, info = env.reset(seed=seed)
        expert = expert_for_task(task, env)
        expert.reset(info["instruction"])
        actions = []
        while True:
            action = expert.act(obs)[0]
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        if terminated:
            kept.append(np.asarray(actions, dtype=np.float64))
        seed += 1
    env.close()
    return kept


def windows(actions: np.ndarray, horizon: int) -> np.ndarray:
    """(T, H, D): each step's next ``horizon`` actions, the last repeated past the end."""
    index = np.minimum(np.arange(len(actions))[:, None] + np.arange(horizon)[None, :], len(actions) - 1)
    return actions[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=40, help="successful expert episodes per task")
    parser.add_argument("--horizon", type=int, default=8, help="the model's chunk size (TinyVLA: 8)")
    parser.add_argument("--scale", type=float, default=10.0)
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--out", type=Path, default=shipped_path("tinyvla"))
    args = parser.parse_args(argv)
    chunks = np.concatenate([windows(actions, args.horizon) for task in TASKS
                             for actions in expert_episodes(task, args.episodes)])
    tokenizer = FastTokenizer.fit(chunks, args.scale, args.vocab_size)
    lengths = [len(tokenizer.encode(chunk)) for chunk in chunks]
    tokenizer.save(args.out)
    print(f"{args.out}: {len(chunks)} chunks of {args.horizon} x {chunks.shape[2]}, {tokenizer.bpe.get_vocab_size()} tokens; "
          f"tokens per chunk: median {np.median(lengths):g}, max {max(lengths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
