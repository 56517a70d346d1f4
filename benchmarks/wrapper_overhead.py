"""Cost of the embodied wrapper stack, measured side by side with the bare env in one run.

Stack: EfficiencyReward(JointStateRecorder(EmbodiedCost(env))) (recording per control step,
substeps integrated for energy but not stored), and the same with ``record_substeps=True``.
Envs: ``vla_envs/Lift-v0`` (state mode) and gymnasium's ``Pusher-v5`` (very cheap).
Rounds alternate bare / wrapped so machine noise hits both alike; ratios are of medians.

    python benchmarks/wrapper_overhead.py [--rounds 7]
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


def steps_per_second(env: gym.Env, actions: np.ndarray, seed: int) -> float:
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return len(actions) / (time.perf_counter() - start)


def compare(env_id: str, n_steps: int, rounds: int, record_substeps: bool) -> dict[str, float]:
    # max_episode_steps=-1: no TimeLimit, so a round never crosses an episode boundary
    bare = gym.make(env_id, max_episode_steps=-1)
    wrapped = stack(gym.make(env_id, max_episode_steps=-1), record_substeps)
    actions = np.random.default_rng(0).uniform(-1, 1, (n_steps, *bare.action_space.shape)).astype(np.float32)
    rates: dict[str, list[float]] = {"bare": [], "wrapped": []}
    try:
        steps_per_second(bare, actions[:20], 0)  # warm-up (numba JIT, caches)
        steps_per_second(wrapped, actions[:20], 0)
        for r in range(rounds):
            pair = [("bare", bare), ("wrapped", wrapped)]
            for name, env in pair if r % 2 == 0 else reversed(pair):
                rates[name].append(steps_per_second(env, actions, r))
    finally:
        bare.close()
        wrapped.close()
    bare_rate, wrapped_rate = statistics.median(rates["bare"]), statistics.median(rates["wrapped"])
    return {"bare": bare_rate, "wrapped": wrapped_rate, "slowdown": bare_rate / wrapped_rate - 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    cases = [
        ("vla_envs/Lift-v0", 200, False, 0.02),
        ("Pusher-v5", 5000, False, 0.10),
        ("vla_envs/Lift-v0", 200, True, None),
        ("Pusher-v5", 5000, True, None),
    ]
    print(f"EfficiencyReward(JointStateRecorder(EmbodiedCost(env))) vs bare env; medians of {args.rounds} alternating rounds")
    header = f"{'env':<18} {'substeps':>8} {'bare steps/s':>13} {'wrapped steps/s':>16} {'slowdown':>9} {'budget':>7}"
    print(header)
    print("-" * len(header))
    for env_id, n_steps, substeps, budget in cases:
        m = compare(env_id, n_steps, args.rounds, substeps)
        budget_text = f"{budget:.0%}" if budget is not None else "-"
        print(f"{env_id:<18} {'stored' if substeps else 'summed':>8} {m['bare']:>13.0f} {m['wrapped']:>16.0f} "
              f"{m['slowdown']:>+9.1%} {budget_text:>7}", flush=True)


if __name__ == "__main__":
    main()
