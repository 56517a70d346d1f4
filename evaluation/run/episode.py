"""Run one work unit: a seeded episode of one variant on one task, closed loop.

``EpisodeRunner`` is what a worker process holds: one environment per task (with its renderer)
and the policies built for it. ``run`` returns an ``EpisodeResult`` (the episode's row, its
per-step table and optionally MP4 bytes); writing them is the caller's job, so a worker can
live on another machine (Ray) and only the driver touches the output folder.

Identical results in any process and order: ``env.reset(seed=s)`` fixes the initial state and
the simulation; numpy's and torch's global RNGs are seeded with ``s`` before the episode (for
stochastic policies); policies are built with seeds derived from their names.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from evaluation.run.config import EvalConfig
from evaluation.run.latency import (
    AsyncChunkExecutor,
    LatencyAwareExecutor,
    StepSource,
    TimedChunkExecutor,
    seam_mask,
)
from evaluation.run.plan import RunPlan, WorkUnit, resolved_latency
from evaluation.run.policy_cache import PolicyCache
from evaluation.run.step_hashes import StepHasher
from evaluation.schema import (
    HASH_COLUMNS,
    RUNNING_COLUMNS,
    SEAM_COLUMNS,
    STEP_SOURCE_COLUMNS,
    EpisodeRow,
)
from policies.specs import seed_everything
from wrappers.metrics import METRIC_KEYS


@dataclass
class EpisodeResult:
    row: EpisodeRow
    steps: pa.Table | None = None
    video: bytes | None = None


def state_fingerprint(env) -> str:
    """A hash of the simulator's joint positions and velocities (equal iff initial states match)."""
    rs = getattr(env.unwrapped, "robosuite_env", None)
    data = rs.sim.data if rs is not None else env.unwrapped.data
    digest = hashlib.sha1(np.ascontiguousarray(data.qpos, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(data.qvel, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def seam_columns(episode, sources: list[StepSource], control_freq_hz: float) -> dict[str, float]:
    """The episode's ``SEAM_COLUMNS`` from its recorded velocities and actions and where each
    chunk started (``evaluation.run.latency.seam_mask``; ``sources[0]`` stands for the reset row)."""
    from wrappers.metrics import action_rate_parts, jerk_ms_parts

    starts = seam_mask(sources)
    jerk = jerk_ms_parts(episode.qvel, control_freq_hz, starts)
    rate = action_rate_parts(episode.action, starts[1:])  # action i was executed on row i + 1
    return dict(zip(SEAM_COLUMNS, (*jerk, *rate)))


class EpisodeRunner:
    """Runs work units of one config; keeps one env per task and the policies built on it."""

    def __init__(self, config: EvalConfig, plan: RunPlan | None = None):
        """``plan``: the latencies and policy servers the driver resolved (``evaluation.run.plan``);
        without one, each variant's latency is read from the config (resolved or needing no value)."""
        self.config = config
        self.plan = plan
        self._envs: dict[str, object] = {}
        self._policies: dict[str, PolicyCache] = {}

    # -- per-task resources -------------------------------------------------------------------
    def _wants_video(self, unit: WorkUnit) -> bool:
        videos = self.config.recording.videos
        return (
            videos is not None
            and unit.seed in videos.seeds
            and (videos.variants is None or unit.variant in videos.variants)
        )

    def env(self, task: str):
        if task not in self._envs:
            import gymnasium as gym

            import vla_envs  # noqa: F401  (registers the tasks)
            from wrappers import EmbodiedCost, JointStateRecorder

            env_id, kwargs = self.config.env.env_for(task)
            videos = self.config.recording.videos
            if videos is not None:  # a renderer for the front view; only filmed episodes use it
                kwargs.update(render_mode="rgb_array", render_size=videos.size)
            env = EmbodiedCost(gym.make(env_id, **kwargs))
            # always recorded in memory: the chunk-seam columns need each step's velocities and
            # actions; steps.parquet is written only with recording.record_steps
            env = JointStateRecorder(env, record_substeps=self.config.recording.record_substeps)
            self._envs[task] = env
            self._policies[task] = PolicyCache(self.config, task, env, self.plan.endpoints if self.plan else None)
        return self._envs[task]

    def policy(self, task: str, variant: str):
        self.env(task)
        return self._policies[task].get(variant)

    def executor(self, task: str, variant: str) -> LatencyAwareExecutor | AsyncChunkExecutor:
        policy = self.policy(task, variant)
        execution = self.config.execution_for(variant)
        # a compression spec's `execution: {open_loop_steps: k}` wins over the config's k; the
        # config's k is capped at each policy's chunk size (an expert's chunks have one action)
        execute_steps = policy.execute_steps or execution.execute_steps
        if execute_steps is not None:
            execute_steps = min(execute_steps, int(policy.chunk_size))
        kwargs = execution.executor_kwargs()
        chunk = TimedChunkExecutor(policy, kwargs["schedule"], execute_steps, execution.ensemble_coefficient)
        hold = None
        if execution.on_empty == "hold_position":
            from functools import partial

            from vla_envs.controllers import hold_position_action

            # the arm's own dims: joint-space commands are one per joint (6 on the UR5e)
            hold = partial(hold_position_action, self.config.env.controller, robot=self.env(task).unwrapped.robot)
        latency = self.plan.latency(task, variant) if self.plan is not None else \
            resolved_latency(self.config, task, variant)
        control_freq = self.env(task).unwrapped.control_freq
        if execution.schedule == "async":
            return AsyncChunkExecutor(chunk, latency, control_freq, execution.query_when_remaining, hold)
        return LatencyAwareExecutor(chunk, latency, control_freq, hold)

    def teacher_forcing(self, task: str, variant: str):
        """The variants compared with ``variant`` (its followers), to be queried on its episodes'
        observations (``evaluation.run.teacher_forcing``); ``None`` when no variant is compared with it."""
        from evaluation.run.teacher_forcing import TeacherForcing

        config = self.config
        followers = [v for v in config.variant_names if v != variant and config.reference_of(v) == variant]
        if not followers:
            return None
        return TeacherForcing({v: self.policy(task, v) for v in followers}, self.policy(task, variant))

    def close(self) -> None:
        for env in self._envs.values():
            env.close()
        self._envs.clear()
        self._policies.clear()

    # -- one episode ----------------------------------------------------------------------------
    def run(self, unit: WorkUnit) -> EpisodeResult:
        start = time.perf_counter()
        env = self.env(unit.task)
        executor = self.executor(unit.task, unit.variant)
        film = self._wants_video(unit)
        seed_everything(unit.seed)
        obs, info = env.reset(seed=unit.seed)
        fingerprint = state_fingerprint(env)
        executor.reset(info.get("instruction", ""))
        forcing = self.teacher_forcing(unit.task, unit.variant)
        if forcing is not None:
            forcing.reset(info.get("instruction", ""))
        running = [info["embodied"]]
        sources = [StepSource(queried=False, waiting=False)]  # the reset row
        frames = [env.render()] if film else []
        # per-step hashes of what each step acted on (evaluation.run.step_hashes), for steps.parquet
        hasher = StepHasher() if self.config.recording.record_steps else None
        total_reward, success, terminated, truncated = 0.0, bool(info.get("is_success", False)), False, False
        while not (terminated or truncated):
            if hasher is not None:
                hasher.observe(obs, env)
            action, source = executor.step(obs)
            if hasher is not None:
                hasher.returned(executor.executor.last_chunk if source.queried else None)
            if forcing is not None and source.queried:
                forcing.observe(obs, executor.executor.last_chunk)
            obs, reward, terminated, truncated, info = env.step(action)
            total_reward += float(reward)
            success = success or bool(info.get("is_success", False))
            running.append(info["embodied"])
            sources.append(source)
            if film:
                frames.append(env.render())
        latencies_ms = np.asarray(executor.latencies_s) * 1e3
        row = EpisodeRow(
            task=unit.task,
            variant=unit.variant,
            seed=unit.seed,
            episode=unit.episode,
            success=success,
            terminated=bool(terminated),
            truncated=bool(truncated),
            sim_unstable=bool(info.get("sim_unstable", False)),
            metrics={key: float(info["embodied"][key]) for key in METRIC_KEYS},
            episode_return=total_reward,
            inference_calls=int(executor.inference_calls),
            waiting_steps=int(executor.waiting_steps),
            stale_actions=int(executor.stale_actions),
            counters=executor.executor.policy.episode_counters(),
            latency_model=executor.latency.label,
            latency_mean_ms=float(latencies_ms.mean()) if len(latencies_ms) else float("nan"),
            latency_p90_ms=float(np.percentile(latencies_ms, 90)) if len(latencies_ms) else float("nan"),
            initial_state=fingerprint,
            wall_s=time.perf_counter() - start,
            seams=seam_columns(env.last_episode, sources, env.unwrapped.control_freq),
            teacher_forced=[] if forcing is None else forcing.entries(),
        )
        steps = self._steps_table(env, unit, running, sources, hasher) if hasher is not None else None
        video = None
        if film:
            from evaluation.run.video import encode_mp4

            video = encode_mp4(frames, fps=env.unwrapped.control_freq)
        return EpisodeResult(row, steps, video)

    @staticmethod
    def _steps_table(env, unit: WorkUnit, running: list[dict], sources: list[StepSource],
                     hasher: StepHasher) -> pa.Table:
        """The recorder's per-step table with the episode keys, running costs, action sources and
        per-step hashes."""
        from wrappers.parquet_io import episode_table

        table = episode_table(env.last_episode)
        n_rows = table.num_rows
        if n_rows != len(running):
            raise RuntimeError(f"recorded {n_rows} rows but saw {len(running)} steps for {unit.key}")
        # the recorder's `episode` counts episodes per env (it depends on the worker's history);
        # the unit's keys are the same in every process
        table = table.drop_columns(["env_id", "episode", "seed"])
        keys = {
            "task": pa.array([unit.task] * n_rows, pa.string()),
            "variant": pa.array([unit.variant] * n_rows, pa.string()),
            "seed": pa.array(np.full(n_rows, unit.seed, dtype=np.int64)),
            "episode": pa.array(np.full(n_rows, unit.episode, dtype=np.int64)),
        }
        for index, (name, column) in enumerate(keys.items()):
            table = table.add_column(index, name, column)
        for column in RUNNING_COLUMNS:
            key = column.removeprefix("running_")
            table = table.append_column(column, pa.array([float(r[key]) for r in running], pa.float64()))
        for column in STEP_SOURCE_COLUMNS:
            table = table.append_column(column, pa.array([getattr(s, column) for s in sources], pa.bool_()))
        hashes = hasher.columns()
        if len(hashes["obs_hash"]) != n_rows:
            raise RuntimeError(f"hashed {len(hashes['obs_hash'])} rows but recorded {n_rows} for {unit.key}")
        for column in HASH_COLUMNS:
            table = table.append_column(column, hashes[column])
        return table.replace_schema_metadata(None)
