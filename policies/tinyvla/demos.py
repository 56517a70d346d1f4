"""Scripted-expert demonstrations for behaviour cloning, collected with the suite's own envs.

One ``.npz`` per task holds every frame of its successful episodes::

    image, wrist_image   uint8 (N, S, S, 3)   the env's ``rgb`` observation
    proprio              float32 (N, P)
    action               float32 (N, 7)       the expert's (clean) action at that frame
    episode              int32 (N,)           episode index within the file
    seed                 int64 (E,)           reset seed of each kept episode
    instruction          str                  the task's instruction

The executed action gets Gaussian noise on its translation part (DART-style, Laskey et al.
2017) while the *recorded* label stays the expert's clean action: the expert is closed-loop, so
the demonstrations show how to recover from the small drifts a learned policy makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

import vla_envs  # noqa: F401  (registers the tasks)
import gymnasium as gym

from policies.experts import expert_for_task


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
        episode: dict[str, list] = {key: [] for key in frames if key != "episode"}
        success = False
        while True:
            action = expert.act(obs)[0]
            for key in ("image", "wrist_image", "proprio"):
                episode[key].append(obs[key])
            episode["action"].append(action)
            executed = action.copy()
            executed[:3] += rng.normal(0.0, spec.translation_noise, 3)
            obs, _, terminated, truncated, info = env.step(np.clip(executed, -1.0, 1.0))
            if terminated or truncated:
                success = bool(info["is_success"])
                break
        if success:
            for key, values in episode.items():
                frames[key].extend(values)
            frames["episode"].extend([len(seeds)] * len(episode["action"]))
            seeds.append(seed)
            if progress is not None:
                progress()
        seed += 1
    env.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        image=np.stack(frames["image"]),
        wrist_image=np.stack(frames["wrist_image"]),
        proprio=np.stack(frames["proprio"]).astype(np.float32),
        action=np.stack(frames["action"]).astype(np.float32),
        episode=np.asarray(frames["episode"], np.int32),
        seed=np.asarray(seeds, np.int64),
        instruction=np.asarray(instruction),
        attempts=np.asarray(seed - spec.seed_start),  # seeds tried, successful or not
    )
    tmp.replace(path)
    return path


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}
