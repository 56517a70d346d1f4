"""Recorded episodes re-rendered from seed + actions, checked bit for bit.

Neither ``steps.parquet`` (a ``vla-envs eval`` run) nor a ``JointStateRecorder`` file stores
observations (images are large); both store each control step's joint state and action, and
the env's ``gym.make`` settings and the episode's seed are known. The simulation is
deterministic given those, so an episode's observations come back by resetting the env with the
seed and executing the recorded actions. The replay is checked against the record: the
initial-state fingerprint (runs), every step's joint positions and velocities bit for bit, and
how the episode ended; any difference stops the export with the step where it happened (a
different MuJoCo or robosuite build can change floating-point results, and then the recorded
observations cannot be recovered). The running embodied metrics come from the replay's own
``EmbodiedCost`` (for a run they are checked against the recorded ones too).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from evaluation.run.record import read_run
from evaluation.schema import RUNNING_COLUMNS
from vla_envs.errors import VlaEnvsError

RUNNING_KEYS: tuple[str, ...] = tuple(column.removeprefix("running_") for column in RUNNING_COLUMNS)


class ReplayError(VlaEnvsError, RuntimeError):
    """The replay of an episode differs from its record (or the input lacks what a replay needs)."""


@dataclass
class ReplayedEpisode:
    """One episode: ``observations[t]`` is what the policy saw before ``actions[t]`` (the last one
    follows the final action); ``running[key][t]`` is the running value after ``actions[t]``."""

    group: str  # one dataset per group: the task (runs) or the env id (recordings)
    seed: int
    instruction: str
    control_freq_hz: float
    observations: list[dict[str, np.ndarray]]  # T + 1
    actions: np.ndarray  # (T, action_dim) float32
    rewards: np.ndarray  # (T,)
    terminated: bool
    truncated: bool
    running: dict[str, np.ndarray]  # metric -> (T,)
    record: dict  # episode-level fields: a run's episodes.parquet row, a recording's metadata
    label: str  # for progress and errors

    @property
    def n_steps(self) -> int:
        return len(self.actions)


@dataclass(frozen=True)
class _Recorded:
    """What a replay is checked against."""

    label: str
    seed: int
    actions: np.ndarray  # (T, action_dim)
    qpos: np.ndarray  # (T + 1, joints)
    qvel: np.ndarray
    ended: tuple[bool, bool] | None  # (terminated, truncated) when known
    initial_state: str | None = None
    running: dict[str, np.ndarray] | None = None  # recorded running metrics (T,), when known


def _replay_env(env_id: str, kwargs: dict):
    import gymnasium as gym

    import vla_envs  # noqa: F401  (registers the tasks)
    from wrappers import EmbodiedCost, JointStateRecorder

    return JointStateRecorder(EmbodiedCost(gym.make(env_id, **kwargs)), record_substeps=False)


def _replay(env, recorded: _Recorded, group: str, record: dict) -> ReplayedEpisode:
    from evaluation.run.episode import state_fingerprint

    key = recorded.label
    obs, info = env.reset(seed=recorded.seed)
    if recorded.initial_state is not None and state_fingerprint(env) != recorded.initial_state:
        raise ReplayError(f"{key}: the reset state differs from the recorded one (initial_state): this "
                          "MuJoCo/robosuite build does not reproduce the record")
    observations, rewards, running = [obs], [], {k: [] for k in RUNNING_KEYS}
    terminated = truncated = False
    for t, action in enumerate(recorded.actions):
        if terminated or truncated:
            raise ReplayError(f"{key}: the replay ended after {t} steps, the record has {len(recorded.actions)}")
        try:
            obs, reward, terminated, truncated, info = env.step(action)
        except ValueError as exc:  # the env refuses a non-finite or out-of-shape action
            raise ReplayError(f"{key}: the recorded action of step {t} is refused by the env ({exc})") from None
        observations.append(obs)
        rewards.append(float(reward))
        for k in RUNNING_KEYS:
            running[k].append(float(info["embodied"][k]))
    # the end first: an episode the replay did not end has no arrays yet to compare
    if recorded.ended is not None and (bool(terminated), bool(truncated)) != recorded.ended:
        raise ReplayError(f"{key}: the replay ended terminated={terminated}, truncated={truncated}; the record "
                          f"says {recorded.ended}")
    if not (terminated or truncated):
        env.end_episode()
    replayed = env.last_episode
    for name in ("qpos", "qvel"):
        expected, again = getattr(recorded, name), np.asarray(getattr(replayed, name), dtype=np.float64)
        if expected.shape != again.shape or not np.array_equal(expected, again):
            rows = np.flatnonzero(~(expected == again).all(axis=1)) if expected.shape == again.shape else [0]
            raise ReplayError(f"{key}: the replayed {name} differs from the record from step {int(rows[0])} on: "
                              "this MuJoCo/robosuite build does not reproduce the record bit for bit")
    running = {k: np.asarray(v) for k, v in running.items()}
    if recorded.running is not None:
        for k, values in recorded.running.items():
            if not np.array_equal(values, running[k]):
                raise ReplayError(f"{key}: the replay's running {k} differs from the recorded one")
    return ReplayedEpisode(
        group=group, seed=recorded.seed, instruction=str(info.get("instruction", "")),
        control_freq_hz=float(env.unwrapped.control_freq), observations=observations,
        actions=recorded.actions.astype(np.float32), rewards=np.asarray(rewards), terminated=bool(terminated),
        truncated=bool(truncated), running=running, record=record, label=key,
    )


def _matrix(column) -> np.ndarray:
    return np.asarray(column.to_pylist(), dtype=np.float64)


def replay_run(run_dir: str | Path, obs_mode: str | None = None, variants: list[str] | None = None,
               tasks: list[str] | None = None) -> Iterator[ReplayedEpisode]:
    """Every episode of a finished ``vla-envs eval`` run (optionally some variants/tasks), in the
    run's order; one group per task."""
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
            task, seed = record["task"], int(record["seed"])
            label = f"{task}/{record['variant']}/seed {seed}"
            steps = pq.read_table(run_dir / "steps.parquet", filters=[
                ("task", "=", task), ("variant", "=", record["variant"]), ("seed", "=", seed)]).sort_by("step")
            if steps.num_rows != int(record["n_steps"]) + 1:
                raise ReplayError(f"{label}: steps.parquet holds {steps.num_rows} rows, expected {int(record['n_steps']) + 1}")
            recorded = _Recorded(
                label=label, seed=seed, actions=np.asarray(steps.column("action").to_pylist()[1:], dtype=np.float32),
                qpos=_matrix(steps.column("qpos")), qvel=_matrix(steps.column("qvel")),
                ended=(bool(record["terminated"]), bool(record["truncated"])), initial_state=record["initial_state"],
                running={k: steps.column(f"running_{k}").to_numpy()[1:].astype(np.float64) for k in RUNNING_KEYS},
            )
            if task not in envs:
                envs[task] = _replay_env(*config.env.env_for(task, obs_mode))
            yield _replay(envs[task], recorded, task, record)
    finally:
        for env in envs.values():
            env.close()


def recording_files(path: str | Path) -> list[Path]:
    """``JointStateRecorder`` files: ``path`` itself, or the ``*.parquet`` files in that folder."""
    path = Path(path)
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ReplayError(f"{path}: expected a run folder (with run.json), or JointStateRecorder Parquet files")
    return files


def replay_recordings(path: str | Path, obs_mode: str | None = None,
                      env_id: str | None = None) -> Iterator[ReplayedEpisode]:
    """Every episode recorded by ``JointStateRecorder(out_dir=...)`` in ``path`` (a file or a
    folder; only those of ``env_id`` when given), re-rendered with the env settings its metadata
    names; one group per env id."""
    from wrappers.parquet_io import read_episode, read_metadata

    envs: dict[str, object] = {}
    try:
        for file in recording_files(path):
            if env_id is not None and read_metadata(file).get("env_id") != env_id:
                continue
            episode = read_episode(file)
            meta = episode.metadata
            missing = [k for k in ("env_id", "env_kwargs", "seed") if meta.get(k) is None]
            if missing:
                raise ReplayError(f"{file}: its metadata lacks {missing} (recorded before they were recorded, or not a "
                                  "JointStateRecorder file): expected what gym.make and reset need")
            kwargs = dict(meta["env_kwargs"])
            if obs_mode is not None:
                kwargs["obs_mode"] = obs_mode
            if meta.get("max_episode_steps") is not None:
                kwargs["max_episode_steps"] = meta["max_episode_steps"]
            signature = repr((meta["env_id"], sorted(kwargs.items())))
            if signature not in envs:
                envs[signature] = _replay_env(meta["env_id"], kwargs)
            end = meta.get("end_reason")
            recorded = _Recorded(
                label=f"{file.name} ({meta['env_id']}, seed {meta['seed']})", seed=int(meta["seed"]),
                actions=np.asarray(episode.action, dtype=np.float32), qpos=np.asarray(episode.qpos, np.float64),
                qvel=np.asarray(episode.qvel, np.float64),
                ended=(end == "terminated", end == "truncated") if end in ("terminated", "truncated") else None,
            )
            record = {"file": file.name, "env_id": meta["env_id"], "seed": int(meta["seed"]),
                      "end_reason": end, **{k: float(v) for k, v in (meta.get("metrics") or {}).items()}}
            yield _replay(envs[signature], recorded, meta["env_id"], record)
    finally:
        for env in envs.values():
            env.close()
