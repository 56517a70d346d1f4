"""``JointStateRecorder``: keep each episode's joint-state arrays; write them to Parquet."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import gymnasium as gym

from wrappers.base import EmbodiedWrapper
from wrappers.episode_buffer import EpisodeArrays
from wrappers.parquet_io import write_new_episode


def _json_kwargs(kwargs: dict) -> dict:
    """The keyword arguments that survive JSON (a callable or an object would not)."""
    import json

    out = {}
    for key, value in kwargs.items():
        try:
            json.dumps(value)
        except TypeError:
            continue
        out[key] = value
    return out


class JointStateRecorder(EmbodiedWrapper, gym.utils.RecordConstructorArgs):
    """Records per-step arm state (and optionally every physics substep) for each episode.

    Per control step, in buffers that double when full: time (s), qpos, qvel, qacc, applied
    torque (the last substep's ``qfrc_actuator``), end-effector position, action, reward; with
    ``record_substeps=True`` also the (substeps, joints) torque and velocity arrays.

    When an episode ends (``terminated`` / ``truncated``, a ``reset`` before its end, or
    ``close``) it becomes ``last_episode`` (an ``EpisodeArrays``) and, with ``out_dir``, is
    written atomically to ``out_dir/<prefix>episode_<n>.parquet`` (layout in
    ``wrappers.parquet_io``), ``n`` (6 digits) the first number from the episode's index on
    whose name is free: a file already there, written by another recorder, sub-env or run, is
    never replaced, and recorders sharing a folder never take the same name. The episode index
    itself is ``metadata["episode"]``. Episodes with no step are dropped. Two recorders in one
    wrapper stack writing to the same folder are refused when the second is built (``ValueError``
    naming the folder): they share one probe, so each episode would be written twice, under file
    numbers that no longer follow the episode index; the first recorder keeps recording as before.

    ``last_episode.metadata``::

        {"env_id": "vla_envs/Lift-v0", "env_kwargs": {...gym.make kwargs...}, "max_episode_steps": 300,
         "seed": 0, "episode": 0, "instruction": "...",
         "end_reason": "terminated" | "truncated" | "sim_unstable" | "reset" | "close",
         "n_steps": T, "robot": {...readout settings...}, "record_substeps": False,
         "metrics": {...the EmbodiedCost metrics of the whole episode...}}

    The metrics include the actuator ledger (``docs/metrics.md``); ``metadata["limits"]`` holds
    the limits it was measured against::

         "limits": {"torque_nm": [...per joint...], "velocity_rad_s": [...NaN where none...]}

    Args:
        env: the environment.
        out_dir: folder for Parquet files (``None``: keep in memory only).
        record_substeps: also keep per-substep torque and joint velocity.
        file_prefix: prefix of the file names (e.g. a worker id).
        joint_names, ee_site, ee_body: as for ``EmbodiedCost``.
    """

    def __init__(
        self,
        env: gym.Env,
        out_dir: str | Path | None = None,
        record_substeps: bool = False,
        file_prefix: str = "",
        joint_names: list[str] | tuple[str, ...] | None = None,
        ee_site: str | None = None,
        ee_body: str | None = None,
    ):
        if out_dir is not None:  # before anything below touches the probe the recorders would share
            _check_no_recorder_writes_to(env, Path(out_dir))
        gym.utils.RecordConstructorArgs.__init__(
            self,
            out_dir=None if out_dir is None else str(out_dir),
            record_substeps=record_substeps,
            file_prefix=file_prefix,
            joint_names=joint_names,
            ee_site=ee_site,
            ee_body=ee_body,
        )
        EmbodiedWrapper.__init__(self, env, joint_names, ee_site, ee_body)
        self.embodied_probe.enable_recording(substeps=record_substeps)
        self.out_dir = None if out_dir is None else _writable_folder(Path(out_dir))
        self.record_substeps = record_substeps
        self.file_prefix = file_prefix
        self.last_episode: EpisodeArrays | None = None
        self.written_paths: list[Path] = []
        self._next_file_index = 0
        self._open = False
        self._instruction: str | None = None

    def reset(self, *, seed=None, options=None):
        if self._open:
            self._finish("reset")
        obs, info = super().reset(seed=seed, options=options)
        self._instruction = info.get("instruction", getattr(self.env.unwrapped, "instruction", None))
        self._open = True
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = (
            self._owner_step(action) if self._owns_probe else self.env.step(action)
        )
        if terminated or truncated:
            if info.get("sim_unstable"):
                reason = "sim_unstable"
            else:
                reason = "terminated" if terminated else "truncated"
            self._finish(reason)
        return obs, reward, terminated, truncated, info

    def close(self):
        if self._open:
            self._finish("close")
        super().close()

    def end_episode(self, end_reason: str = "reset") -> None:
        """End the open episode now, as a ``reset`` would, without resetting the env (a replay
        of an episode that was ended by a reset needs its arrays before the next one starts)."""
        if self._open:
            self._finish(end_reason)

    def _finish(self, end_reason: str) -> None:
        self._open = False
        probe = self.embodied_probe
        if probe.n_recorded_steps == 0:
            return
        readout = probe.readout
        spec = self.env.spec
        metadata = {
            "env_id": spec.id if spec is not None else type(self.env.unwrapped).__name__,
            # what gym.make needs to rebuild the env (vla-envs export replays recorded episodes)
            "env_kwargs": _json_kwargs(spec.kwargs) if spec is not None else {},
            "max_episode_steps": spec.max_episode_steps if spec is not None else None,
            "seed": probe.seed,
            "episode": probe.episode_index,
            "instruction": self._instruction,
            "end_reason": end_reason,
            "n_steps": probe.n_recorded_steps,
            "robot": readout.settings(),
            "record_substeps": self.record_substeps,
        }
        # the running values equal metrics.episode_metrics on these arrays (tested), with energy
        # and effort integrated over every substep whether or not substeps are recorded
        metadata["metrics"] = probe.values()
        episode = probe.episode_arrays(metadata)
        # what the ledger metrics were measured against
        episode.metadata["limits"] = {
            "torque_nm": probe.state.torque_limit.tolist(),
            "velocity_rad_s": probe.state.velocity_limit.tolist(),
        }
        self.last_episode = episode
        if self.out_dir is not None:
            # the first free name from the episode's index on: sub-envs of a vector env, two
            # recorders or a second run sharing out_dir each keep every episode
            first = max(probe.episode_index, self._next_file_index)
            candidates = (self.out_dir / f"{self.file_prefix}episode_{n:06d}.parquet" for n in itertools.count(first))
            path = write_new_episode(episode, candidates)
            self._next_file_index = int(path.stem.rsplit("_", 1)[1]) + 1
            self.written_paths.append(path)


def _check_no_recorder_writes_to(env: gym.Env, out_dir: Path) -> None:
    """A ``ValueError`` naming ``out_dir`` when a ``JointStateRecorder`` below ``env`` already
    writes there (the same folder however spelt: relative, ``..``, a symbolic link)."""
    wanted = out_dir.resolve()
    inner = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, JointStateRecorder) and inner.out_dir is not None and inner.out_dir.resolve() == wanted:
            raise ValueError(
                f"out_dir={str(out_dir)!r}: a JointStateRecorder below in this wrapper stack already writes to "
                f"{str(wanted)!r}; expected another folder (or out_dir=None: the recorder below keeps writing its "
                "episodes)"
            )
        inner = inner.env


def _writable_folder(path: Path) -> Path:
    """``path`` as a folder episodes can be written to (created if missing), checked now rather
    than when the first episode ends, where the error would cost that step's return value."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out_dir={str(path)!r}: cannot create the folder ({exc.strerror}); expected a writable folder") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir={str(path)!r}: the folder is not writable; expected a writable folder")
    return path
