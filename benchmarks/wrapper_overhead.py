"""Cost of the embodied wrapper stack, measured side by side with the bare env in one run.

Stack: EfficiencyReward(JointStateRecorder(EmbodiedCost(env))) recording every control step
(substeps integrated for energy but not stored), and the same with ``record_substeps=True``.
Envs: ``vla_envs/Lift-v0`` (state mode) and gymnasium's ``Pusher-v5`` (very cheap: ~50 us/step).

Why so careful: on these shared VMs two instances of the *same* bare env differ by up to ~3%
in steps/s (memory layout), which is the size of the effect measured. So each round builds a
fresh bare env and a fresh wrapped env, times them alternately (best of a few repeats each, to
drop scheduler noise), and the reported slowdown is the median over rounds of the paired ratio.

    python benchmarks/wrapper_overhead.py [--rounds 9] [--env Pusher-v5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import vla_envs  # noqa: F401,I001  (registers the tasks; sets MUJOCO_GL before mujoco loads)
import gymnasium as gym
import numpy as np

from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder


def stack(env: gym.Env, record_substeps: bool = False) -> gym.Env:
    return EfficiencyReward(JointStateRecorder(EmbodiedCost(env), record_substeps=record_substeps))


def seconds_per_step(env: gym.Env, actions: np.ndarray, repeats: int) -> float:
    """Best of ``repeats`` passes over ``actions`` (one episode, no time limit)."""
    env.reset(seed=0)
    for action in actions[:20]:  # warm-up: numba dispatch, caches
        env.step(action)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for action in actions:
            env.step(action)
        best = min(best, (time.perf_counter() - start) / len(actions))
    return best


def compare(env_id: str, n_steps: int, rounds: int, repeats: int, record_substeps: bool) -> dict[str, float]:
    ratios, bare_times, wrapped_times = [], [], []
    for r in range(rounds):
        # max_episode_steps=-1: no TimeLimit, so a pass never crosses an episode boundary
        bare = gym.make(env_id, max_episode_steps=-1)
        wrapped = stack(gym.make(env_id, max_episode_steps=-1), record_substeps)
        actions = np.random.default_rng(r).uniform(-1, 1, (n_steps, *bare.action_space.shape)).astype(np.float32)
        try:
            pair = [(bare, bare_times), (wrapped, wrapped_times)]
            for env, times in pair if r % 2 == 0 else reversed(pair):
                times.append(seconds_per_step(env, actions, repeats))
        finally:
            bare.close()
            wrapped.close()
        ratios.append(wrapped_times[-1] / bare_times[-1])
    return {
        "bare": 1.0 / statistics.median(bare_times),
        "wrapped": 1.0 / statistics.median(wrapped_times),
        "slowdown": statistics.median(ratios) - 1.0,
        "spread": (min(ratios) - 1.0, max(ratios) - 1.0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="fresh bare/wrapped pairs per case")
    parser.add_argument("--env", action="append", help="only these env ids (repeatable; default: all)")
    args = parser.parse_args()
    cases = [  # env id, steps per pass, passes (best of), substeps stored, budget
        ("vla_envs/Lift-v0", 300, 3, False, 0.02),
        ("Pusher-v5", 2000, 5, False, 0.15),
        ("vla_envs/Lift-v0", 300, 3, True, None),
        ("Pusher-v5", 2000, 5, True, None),
    ]
    print("EfficiencyReward(JointStateRecorder(EmbodiedCost(env))) vs bare env; "
          f"median over {args.rounds} rounds of fresh paired instances")
    header = (f"{'env':<18} {'substeps':>8} {'bare steps/s':>13} {'wrapped steps/s':>16} {'slowdown':>9} "
              f"{'min..max':>16} {'budget':>7}")
    print(header)
    print("-" * len(header))
    for env_id, n_steps, repeats, substeps, budget in cases:
        if args.env and env_id not in args.env:
            continue
        m = compare(env_id, n_steps, args.rounds, repeats, substeps)
        budget_text = f"{budget:.0%}" if budget is not None else "-"
        spread = f"{m['spread'][0]:+.1%}..{m['spread'][1]:+.1%}"
        print(f"{env_id:<18} {'stored' if substeps else 'summed':>8} {m['bare']:>13.0f} {m['wrapped']:>16.0f} "
              f"{m['slowdown']:>+9.1%} {spread:>16} {budget_text:>7}", flush=True)


if __name__ == "__main__":
    main()
