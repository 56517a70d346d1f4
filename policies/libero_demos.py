"""Scripted-expert demonstrations on LIBERO, away from the test set, rendered as evaluation renders.

Every LIBERO paper evaluates on the 50 standard initial states of each task, so demonstrations
never start from one: each episode starts from LIBERO's own placement sampler drawn from a seed
(``reset(seed=s)`` without ``init_state``; seeds from ``DEMO_SEED_START``, clear of the
evaluation seeds 0-49 and the held-out 500-999), and the qpos at the first frame of every kept
episode is stored, so that its object layout can be checked against the 50 standard states
(``object_layouts``, ``nearest_standard_layout_m``).

A task's demonstrations are shards of ``SHARD_EPISODES`` successful episodes each; shard ``j``
tries seeds from ``seed_start + j * SHARD_SEED_STRIDE``, so what is collected depends on the
config, never on the number of workers, and a finished shard is never redone::

    <out>/<suite>/task<k>/shard<j>.npz
        image, wrist_image   uint8 (N, S, S, 3)   the env's rgb observation (lean rendering)
        libero_state         float64 (N, 8)       eef position, axis-angle, gripper qpos
        proprio              float32 (N, P)       the suite's proprioception
        action               float32 (N, 7)       the expert's clean action at that frame
        episode              int32 (N,)           episode index within the shard
        seed                 int64 (E,)           reset seed of each kept episode
        initial_qpos         float64 (E, Q)       the sim's qpos at the first frame (after the settle steps)
        instruction          str
        attempts             int64                seeds tried, successful or not

The executed action gets Gaussian noise on its translation while the recorded label is the
expert's clean action (``policies.dart``). Images are rendered at
``image_size`` with the env's defaults (lean rendering), which is how ``vla-envs eval`` renders.

    python -m policies.libero_demos --config configs/demos/libero.yaml [--workers 16]
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import ConfigDict, Field, field_validator, model_validator

from vla_envs.config import load_config
from vla_envs.files import atomic_path
from vla_envs.strict_config import StrictConfig

DEMO_SEED_START = 1000  # evaluation uses seeds 0-49, held-out checks 500-999
SHARD_EPISODES = 10
SHARD_SEED_STRIDE = 100_000  # seeds a shard may try before running into the next one
PER_FRAME = ("image", "wrist_image", "libero_state", "proprio", "action")


class LiberoDemoConfig(StrictConfig):
    """``configs/demos/*.yaml``: which tasks, how many episodes each, how they are rendered."""

    model_config = ConfigDict(strict=False)  # values from code: numpy numbers are numbers

    suites: list[str] = Field(min_length=1)
    tasks: list[Annotated[int, Field(ge=0)]] | None = None  # indices; None: all the suite's tasks
    episodes_per_task: Annotated[int, Field(ge=1)]
    seed_start: Annotated[int, Field(ge=DEMO_SEED_START)] = DEMO_SEED_START
    image_size: Annotated[int, Field(ge=16, le=1024)] = 128
    translation_noise: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] = 0.1  # action units (x 5 cm)
    out: Path = Path("runs/libero_demos")

    def task_indices(self, suite: str) -> list[int]:
        """The tasks of ``suite`` the config asks for: ``tasks``, or all of the suite's."""
        from vla_envs.libero.suites import SUITES

        return list(self.tasks) if self.tasks is not None else list(range(SUITES[suite].n_tasks))

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, suites: list[str]) -> list[str]:
        from vla_envs.libero.suites import SUITES

        unknown = [suite for suite in suites if suite not in SUITES]
        if unknown:
            raise ValueError(f"{unknown}: expected LIBERO suites among {sorted(SUITES)}")
        return suites

    @model_validator(mode="after")
    def _tasks_in_every_suite(self) -> LiberoDemoConfig:
        from vla_envs.libero.suites import SUITES

        for suite in self.suites:
            for task in self.tasks or ():
                if task >= SUITES[suite].n_tasks:
                    raise ValueError(f"tasks: {task} is not a task of {suite} (0 to {SUITES[suite].n_tasks - 1})")
        return self


@dataclass(frozen=True)
class Shard:
    suite: str
    task: int
    index: int
    episodes: int
    seed_start: int
    image_size: int
    translation_noise: float

    def path(self, out: Path) -> Path:
        return out / self.suite / f"task{self.task}" / f"shard{self.index:03d}.npz"


def shards(config: LiberoDemoConfig) -> list[Shard]:
    """The config cut into fixed shards, task by task."""
    jobs = []
    for suite in config.suites:
        for task in config.task_indices(suite):
            for j in range(math.ceil(config.episodes_per_task / SHARD_EPISODES)):
                jobs.append(Shard(suite, task, j, min(SHARD_EPISODES, config.episodes_per_task - j * SHARD_EPISODES),
                                  config.seed_start + j * SHARD_SEED_STRIDE, config.image_size,
                                  config.translation_noise))
    return jobs


def make_env(suite: str, task: int, image_size: int):
    import gymnasium as gym

    import vla_envs  # noqa: F401 - registers the ids
    from vla_envs.libero.suites import SETTLE_STEPS, check_suite

    return gym.make(f"vla_envs/{check_suite(suite).title}-v0", task_id=task, obs_mode="rgb",
                    image_size=image_size, settle_steps=SETTLE_STEPS)


def collect_shard(shard: Shard, path: Path) -> Path:
    """Run the expert from successive seeds until ``shard.episodes`` succeed; write ``path``."""
    from policies.dart import dart_episode
    from policies.libero_expert import LiberoPickPlaceExpert

    env = make_env(shard.suite, shard.task, shard.image_size)
    frames: dict[str, list] = {key: [] for key in (*PER_FRAME, "episode")}
    seeds: list[int] = []
    initial_qpos: list[np.ndarray] = []
    seed = shard.seed_start
    rng = np.random.default_rng(seed)
    instruction = ""
    while len(seeds) < shard.episodes:
        if seed - shard.seed_start >= SHARD_SEED_STRIDE:
            raise RuntimeError(f"{shard.suite} task {shard.task} shard {shard.index}: {SHARD_SEED_STRIDE} seeds "
                               f"gave {len(seeds)} of {shard.episodes} successes")
        obs, info = env.reset(seed=seed)
        if info["init_state"] is not None:  # never: seeds >= DEMO_SEED_START are placements
            raise RuntimeError(f"seed {seed} reset to standard initial state {info['init_state']}")
        qpos = np.array(env.unwrapped.robosuite_env.sim.data.qpos)
        instruction = info["instruction"]
        expert = LiberoPickPlaceExpert(env)
        expert.reset(instruction)
        episode, success = dart_episode(env, expert, obs, rng, shard.translation_noise, PER_FRAME[:-1])
        if success:
            for key, values in episode.items():
                frames[key].extend(values)
            frames["episode"].extend([len(seeds)] * len(episode["action"]))
            seeds.append(seed)
            initial_qpos.append(qpos)
        seed += 1
    env.close()
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            image=np.stack(frames["image"]), wrist_image=np.stack(frames["wrist_image"]),
            libero_state=np.stack(frames["libero_state"]).astype(np.float64),
            proprio=np.stack(frames["proprio"]).astype(np.float32),
            action=np.stack(frames["action"]).astype(np.float32),
            episode=np.asarray(frames["episode"], np.int32), seed=np.asarray(seeds, np.int64),
            initial_qpos=np.stack(initial_qpos), instruction=np.asarray(instruction),
            attempts=np.asarray(seed - shard.seed_start, np.int64),
        )
    return path


def object_joint_addresses(model) -> np.ndarray:
    """The qpos addresses of the x, y of every free-jointed body that is not the robot's:
    the objects LIBERO places."""
    import mujoco

    addresses = []
    for joint in range(model.njnt):
        if model.jnt_type[joint] == mujoco.mjtJoint.mjJNT_FREE:
            body = model.body(model.jnt_bodyid[joint]).name
            if not body.startswith(("robot0_", "gripper0_", "mount0_")):
                addresses.append(model.jnt_qposadr[joint] + np.arange(2))
    return np.asarray(addresses, dtype=np.int64)


def object_layouts(qpos: np.ndarray, addresses: np.ndarray) -> np.ndarray:
    """(E, objects, 2) object positions on the table from (E, nq) qpos rows."""
    return np.asarray(qpos)[:, addresses]


def nearest_standard_layout_m(layouts: np.ndarray, standard: np.ndarray) -> np.ndarray:
    """For each layout (E, objects, 2), the distance to the nearest standard layout (S,
    objects, 2): the largest object displacement between the two, minimised over the
    standard ones (m). A demonstration that started from standard state ``s`` is ~0 away."""
    apart = np.linalg.norm(layouts[:, None] - standard[None], axis=-1).max(axis=-1)
    return apart.min(axis=1)


def load_shard(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def load_task(out: Path, suite: str, task: int) -> dict[str, np.ndarray]:
    """All shards of one task, concatenated (episodes renumbered in shard order)."""
    parts = sorted((Path(out) / suite / f"task{task}").glob("shard*.npz"))
    if not parts:
        raise FileNotFoundError(f"no demonstrations of {suite} task {task} under {out}")
    loaded = [load_shard(part) for part in parts]
    episodes, offset = [], 0
    for data in loaded:
        episodes.append(data["episode"] + offset)
        offset += len(data["seed"])
    merged = {key: np.concatenate([data[key] for data in loaded]) for key in (*PER_FRAME, "seed", "initial_qpos")}
    merged["episode"] = np.concatenate(episodes)
    merged["instruction"] = loaded[0]["instruction"]
    return merged


def _collect(job: tuple[Shard, Path]) -> int:
    shard, path = job
    collect_shard(shard, path)
    return shard.episodes


def collect(config: LiberoDemoConfig, workers: int = 1, progress: bool = True) -> list[Path]:
    """Collect every shard the config asks for that is not on disk yet, over ``workers``
    processes (spawned: each builds its own GL context). Resumable: finished shards stay."""
    from rich.progress import Progress

    from policies.dart import map_shards
    from vla_envs.progress import progress_columns

    jobs = [(shard, shard.path(config.out)) for shard in shards(config)]
    todo = [(shard, path) for shard, path in jobs if not path.exists()]
    for _, path in todo:
        path.parent.mkdir(parents=True, exist_ok=True)
    with Progress(*progress_columns("episodes"), disable=not progress) as bar:
        task = bar.add_task("LIBERO demonstrations", total=sum(shard.episodes for shard, _ in jobs),
                            completed=sum(shard.episodes for shard, _ in jobs) - sum(shard.episodes for shard, _ in todo))
        for done in map_shards(_collect, todo, workers):
            bar.advance(task, done)
    return [path for _, path in jobs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("configs/demos/libero.yaml"))
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    config = load_config(args.config, LiberoDemoConfig)
    paths = collect(config, workers=args.workers)
    print(f"{len(paths)} shards under {config.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
