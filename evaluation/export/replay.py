"""A run's episodes re-rendered from seed + actions, checked bit for bit.

``steps.parquet`` holds each control step's joint state and action but no observations (images
are large). The simulation is deterministic given the seed and the actions, so an episode's
observations come back by resetting the task's env with the episode's seed and executing its
recorded actions. The replay is checked against the record: the initial-state fingerprint, and
every step's joint positions and velocities, bit for bit; any difference stops the export with
the step where it happened (a different MuJoCo or robosuite build can change the floating-point
results, and then the recorded observations cannot be recovered).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from evaluation.compare import read_run
from evaluation.config import EvalConfig
from evaluation.schema import RUNNING_COLUMNS


class ReplayError(RuntimeError):
    """The replay of an episode differs from its record (or the run lacks what a replay needs)."""


@dataclass
class ReplayedEpisode:
    """One episode: ``observations[t]`` is what the policy saw before ``actions[t]`` (the last one
    follows the final action); ``running[key][t]`` is the running value after ``actions[t]``."""

    task: str
    variant: str
    seed: int
    instruction: str
    control_freq_hz: float
    observations: list[dict[str, np.ndarray]]  # T + 1
    actions: np.ndarray  # (T, action_dim) float32
    rewards: np.ndarray  # (T,)
    terminated: bool
    truncated: bool
    running: dict[str, np.ndarray]  # metric -> (T,)
    record: dict  # the episode's row of episodes.parquet

    @property
    def n_steps(self) -> int:
        return len(self.actions)


def env_kwargs(config: EvalConfig, obs_mode: str | None = None) -> dict:
    """``gym.make`` keyword arguments of the run's episodes (another ``obs_mode`` changes only
    what is rendered, not the simulation)."""
    settings = config.env
    kwargs = {"obs_mode": obs_mode or settings.obs_mode, "image_size": settings.image_size,
              "controller": settings.controller, "render_quality": settings.render_quality}
    if settings.control_freq is not None:
        kwargs["control_freq"] = settings.control_freq
    if settings.max_episode_steps is not None:
        kwargs["max_episode_steps"] = settings.max_episode_steps
    return kwargs


def _matrix(column) -> np.ndarray:
    return np.asarray(column.to_pylist(), dtype=np.float64)


def replay_run(run_dir: str | Path, obs_mode: str | None = None, variants: list[str] | None = None,
               tasks: list[str] | None = None) -> Iterator[ReplayedEpisode]:
    """Every episode of a finished run (optionally some variants/tasks), in the run's order."""
    import gymnasium as gym

    import vla_envs  # noqa: F401  (registers the tasks)
    from evaluation.episode import state_fingerprint
    from vla_envs.config import get_task_config
    from wrappers import JointStateRecorder

    run_dir = Path(run_dir)
    config, _, episodes, _ = read_run(run_dir)
    if not (run_dir / "steps.parquet").is_file():
        raise ReplayError(f"{run_dir} has no steps.parquet (the run had recording.record_steps off): the actions "
                          "needed to replay its episodes were not recorded")
    unknown = sorted(set(variants or []) - set(config.variant_names))
    if unknown:
        raise ReplayError(f"variants {unknown} are not in the run: expected some of {config.variant_names}")
    envs: dict[str, object] = {}
    try:
        for record in episodes:
            if (variants and record["variant"] not in variants) or (tasks and record["task"] not in tasks):
                continue
            task = record["task"]
            if task not in envs:
                env = gym.make(get_task_config(task).env_id, **env_kwargs(config, obs_mode))
                envs[task] = JointStateRecorder(env, record_substeps=False)
            yield _replay(envs[task], record, run_dir, state_fingerprint)
    finally:
        for env in envs.values():
            env.close()


def _replay(env, record: dict, run_dir: Path, state_fingerprint) -> ReplayedEpisode:
    key = f"{record['task']}/{record['variant']}/seed {record['seed']}"
    steps = pq.read_table(run_dir / "steps.parquet", filters=[
        ("task", "=", record["task"]), ("variant", "=", record["variant"]), ("seed", "=", int(record["seed"]))])
    if steps.num_rows != int(record["n_steps"]) + 1:
        raise ReplayError(f"{key}: steps.parquet holds {steps.num_rows} rows, expected {int(record['n_steps']) + 1}")
    steps = steps.sort_by("step")
    actions = np.asarray(steps.column("action").to_pylist()[1:], dtype=np.float32)
    obs, info = env.reset(seed=int(record["seed"]))
    if state_fingerprint(env) != record["initial_state"]:
        raise ReplayError(f"{key}: the reset state differs from the recorded one (initial_state): this "
                          "MuJoCo/robosuite build does not reproduce the run")
    observations, rewards = [obs], []
    terminated = truncated = False
    for t, action in enumerate(actions):
        if terminated or truncated:
            raise ReplayError(f"{key}: the replay ended after {t} steps, the record has {len(actions)}")
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        rewards.append(float(reward))
    replayed = env.last_episode
    for name in ("qpos", "qvel"):
        recorded, again = _matrix(steps.column(name)), np.asarray(getattr(replayed, name), dtype=np.float64)
        if recorded.shape != again.shape or not np.array_equal(recorded, again):
            rows = np.flatnonzero(~(recorded == again).all(axis=1)) if recorded.shape == again.shape else [0]
            raise ReplayError(f"{key}: the replayed {name} differs from the record from step {int(rows[0])} on: "
                              "this MuJoCo/robosuite build does not reproduce the run bit for bit")
    if bool(terminated) != bool(record["terminated"]) or bool(truncated) != bool(record["truncated"]):
        raise ReplayError(f"{key}: the replay ended terminated={terminated}, truncated={truncated}; the record "
                          f"says {record['terminated']}, {record['truncated']}")
    running = {column.removeprefix("running_"): steps.column(column).to_numpy()[1:].astype(np.float64)
               for column in RUNNING_COLUMNS}
    return ReplayedEpisode(
        task=record["task"], variant=record["variant"], seed=int(record["seed"]),
        instruction=str(info.get("instruction", "")), control_freq_hz=float(env.unwrapped.control_freq),
        observations=observations, actions=actions, rewards=np.asarray(rewards), terminated=bool(terminated),
        truncated=bool(truncated), running=running, record=record,
    )
