"""Scripted-expert demonstrations for behaviour cloning, collected with the suite's own envs.

One ``.npz`` per task holds every frame of its successful episodes::

    image, wrist_image   uint8 (N, S, S, 3)   the env's ``rgb`` observation
    proprio              float32 (N, P)
    action               float32 (N, 7)       the expert's (clean) action at that frame
    episode              int32 (N,)           episode index within the file
    seed                 int64 (E,)           reset seed of each kept episode
    instruction          str                  the task's instruction

``collect_parallel`` spreads the episodes over worker processes in fixed shards (shard ``j``
collects ``SHARD_EPISODES`` successes from seed ``seed_start + j * SHARD_SEED_STRIDE``), so the
demonstrations depend on the config, never on the number of workers; shard 0 is exactly the
first episodes a sequential ``collect`` gives.

The executed action gets Gaussian noise on its translation part (DART-style, Laskey et al.
2017) while the *recorded* label stays the expert's clean action: the expert is closed-loop, so
the demonstrations show how to recover from the small drifts a learned policy makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

import vla_envs  # noqa: F401  (registers the tasks)
import gymnasium as gym

from policies.dart import dart_episode
from policies.experts import expert_for_task
from vla_envs.files import atomic_path

SHARD_EPISODES = 10
SHARD_SEED_STRIDE = 100_000  # seeds a shard may try before running into the next one


@dataclass(frozen=True)
class DemoSpec:
    task: str
    episodes: int
    seed_start: int = 1000  # evaluation uses seeds 0..; demonstrations stay clear of them
    image_size: int = 64
    translation_noise: float = 0.1  # std of the executed-action noise, in action units (x 5 cm)


def collect(spec: DemoSpec, path: Path, progress=None) -> Path:
    """Run the task's scripted expert until ``path`` holds ``spec.episodes`` successes.

    An existing file with fewer episodes (same image size) is topped up: collection goes on
    from the seed after its last attempt, so asking for more demonstrations never redoes any.
    """
    env = gym.make(f"vla_envs/{spec.task}-v0", obs_mode="rgb", image_size=spec.image_size)
    frames: dict[str, list] = {"image": [], "wrist_image": [], "proprio": [], "action": [], "episode": []}
    seeds: list[int] = []
    seed = spec.seed_start
    if path.exists():
        old = load(path)
        if old["image"].shape[1] == spec.image_size:
            for key in frames:
                frames[key] = list(old[key])
            seeds = old["seed"].tolist()
            seed = spec.seed_start + int(old["attempts"])
    rng = np.random.default_rng(seed)
    instruction = ""
    while len(seeds) < spec.episodes:
        obs, info = env.reset(seed=seed)
        instruction = info["instruction"]
        expert = expert_for_task(spec.task, env)
        expert.reset(instruction)
        episode, success = dart_episode(env, expert, obs, rng, spec.translation_noise, ("image", "wrist_image", "proprio"))
        if success:
            for key, values in episode.items():
                frames[key].extend(values)
            frames["episode"].extend([len(seeds)] * len(episode["action"]))
            seeds.append(seed)
            if progress is not None:
                progress()
        seed += 1
    env.close()
    _save(
        path,
        image=np.stack(frames["image"]),
        wrist_image=np.stack(frames["wrist_image"]),
        proprio=np.stack(frames["proprio"]).astype(np.float32),
        action=np.stack(frames["action"]).astype(np.float32),
        episode=np.asarray(frames["episode"], np.int32),
        seed=np.asarray(seeds, np.int64),
        instruction=np.asarray(instruction),
        attempts=np.asarray(seed - spec.seed_start),  # seeds tried, successful or not
    )
    return path


def _save(path: Path, **arrays: np.ndarray) -> None:
    """One demonstration file, written atomically (an interrupted write leaves the old one)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def shards(spec: DemoSpec) -> list[DemoSpec]:
    """``spec`` cut into fixed shards of at most ``SHARD_EPISODES`` successes each."""
    count = math.ceil(spec.episodes / SHARD_EPISODES)
    return [
        replace(spec, episodes=min(SHARD_EPISODES, spec.episodes - j * SHARD_EPISODES),
                seed_start=spec.seed_start + j * SHARD_SEED_STRIDE)
        for j in range(count)
    ]


def _collect_shard(job: tuple[DemoSpec, Path]) -> int:
    spec, path = job
    collect(spec, path)
    return spec.episodes


def merge(parts: list[Path], path: Path, seed_start: int) -> Path:
    """Concatenate shard files into one demonstration file (episodes renumbered in order)."""
    loaded = [load(part) for part in parts]
    per_frame = ("image", "wrist_image", "proprio", "action")
    episodes, offset = [], 0
    for data in loaded:
        episodes.append(data["episode"] + offset)
        offset += len(data["seed"])
    seeds = np.concatenate([data["seed"] for data in loaded])
    _save(
        path,
        **{key: np.concatenate([data[key] for data in loaded]) for key in per_frame},
        episode=np.concatenate(episodes).astype(np.int32),
        seed=seeds,
        instruction=loaded[0]["instruction"],
        attempts=np.asarray(int(seeds.max()) + 1 - seed_start),  # a top-up continues after the last seed
    )
    return path


def collect_parallel(jobs: list[tuple[DemoSpec, Path]], workers: int) -> list[Path]:
    """Collect several demonstration files at once, their shards spread over ``workers``
    processes (spawned: each builds its own GL context). Finished shards are kept beside the
    target until it is merged, so an interrupted collection resumes where it stopped."""
    from rich.progress import Progress

    from policies.dart import map_shards

    from vla_envs.progress import progress_columns

    shard_jobs, parts = [], {}
    for spec, path in jobs:
        path.parent.mkdir(parents=True, exist_ok=True)
        parts[path] = []
        for j, shard in enumerate(shards(spec)):
            part = path.parent / f".{path.stem}.shard{j:03d}.npz"
            parts[path].append(part)
            shard_jobs.append((shard, part))
    with Progress(*progress_columns("episodes"), transient=False) as progress:
        bar = progress.add_task("demonstrations", total=sum(spec.episodes for spec, _ in jobs))
        for done in map_shards(_collect_shard, shard_jobs, workers):
            progress.advance(bar, done)
    for spec, path in jobs:
        merge(parts[path], path, spec.seed_start)
        for part in parts[path]:
            part.unlink()
    return [path for _, path in jobs]
