"""One scripted-expert demonstration episode with DART noise (Laskey et al. 2017), and the
shards of a demonstration collection mapped over worker processes.

The executed action is the expert's plus Gaussian noise on its translation, clipped to [-1, 1],
while the recorded label stays the expert's clean action: the expert is closed-loop, so the
demonstration shows how to recover from the small drifts a learned policy makes.
"""

from __future__ import annotations

import numpy as np

from policies.base import Policy


def dart_episode(env, expert: Policy, obs, rng: np.random.Generator, translation_noise: float,
                 keys: tuple[str, ...]) -> tuple[dict[str, list], bool]:
    """Drive ``expert`` from ``obs`` to the end of the episode (noise of std ``translation_noise``
    action units on the first three action dimensions). Returns each frame's ``obs[key]`` for
    ``keys`` and its clean ``"action"``, and whether the episode ended in success."""
    frames: dict[str, list] = {key: [] for key in (*keys, "action")}
    while True:
        action = expert.act(obs)[0]
        for key in keys:
            frames[key].append(obs[key])
        frames["action"].append(action)
        executed = action.copy()
        executed[:3] += rng.normal(0.0, translation_noise, 3)
        obs, _, terminated, truncated, info = env.step(np.clip(executed, -1.0, 1.0))
        if terminated or truncated:
            return frames, bool(info["is_success"])


def map_shards(function, jobs: list, workers: int):
    """``function(job)`` for every job, in this process (``workers <= 1`` or a single job) or over
    ``workers`` spawned processes (each builds its own GL context); results as they finish."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield function(job)
        return
    from multiprocessing import get_context

    with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap_unordered(function, jobs)
