"""Episodes out as a LeRobotDataset (v3 layout), written by LeRobot's own dataset writer.

The writer is ``lerobot.datasets.lerobot_dataset.LeRobotDataset`` (lerobot, Python >= 3.12) or
the same class from the standalone ``lerobot-dataset`` package (import name ``ledataset``), so the
layout is LeRobot's by construction and ``LeRobotDataset(repo_id, root=...)`` loads it. LeRobot
rarely imports beside robosuite, so the writer usually runs in LeRobot's own environment, fed
through a pipe (``evaluation.export.lerobot_writer``; ``--lerobot-python`` or
``$VLA_ENVS_LEROBOT_PYTHON``). Features (one frame per control step: the
observation the policy saw and the action it then executed):

======================================  =====================================================
``observation.images.image``            agentview camera, uint8 (S, S, 3), stored as PNG
``observation.images.wrist_image``      eye-in-hand camera                 } rgb observation modes
``observation.state``                   ``proprio`` (rgb modes) or ``state`` (state mode)
``observation.environment_state``       ``state`` (state+rgb mode only)
``action``                              the executed action (float32)
``next.reward``, ``next.done``          the step's reward; whether the episode ended with it
``embodied.running``                    every running embodied metric after the action
                                        (names in info.json: ``completion_time_s``, ...)
task (per frame)                        the episode's instruction
======================================  =====================================================

A LIBERO run's episodes (their observations carry ``libero_state``) get the features of the
published LIBERO datasets instead (HuggingFaceVLA/libero, what LeRobot's LIBERO evaluation
feeds a model: ``policies.conventions.lerobot_libero``), so a policy fine-tuned on the export
reads what it will be evaluated on: ``observation.images.image`` (agentview) and
``observation.images.image2`` (wrist), rotated 180 degrees from LIBERO's raw frame, and
``observation.state``, float32 (8,): eef position, axis-angle, gripper qpos. Export at 256 px
(the run's ``image_size``) for the published size.

Per episode, ``meta/embodied_episodes.parquet`` holds, keyed by LeRobot's ``episode_index``, the
episode's row of ``episodes.parquet`` (task, variant, seed, success and every metric) or, for a
``JointStateRecorder`` file, its env id, seed, end and metrics: LeRobot ignores the file, pandas
and DuckDB read it as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from evaluation.export.replay import RUNNING_KEYS, ReplayedEpisode
from evaluation.schema import EPISODE_SCHEMA
from vla_envs.errors import VlaEnvsError

RUNNING_NAMES = list(RUNNING_KEYS)


class ExportError(VlaEnvsError, RuntimeError):
    """An export that cannot be written (the message says what is missing)."""


LEROBOT_PYTHON_ENV = "VLA_ENVS_LEROBOT_PYTHON"


class _InProcess:
    def __init__(self, root: Path):
        from evaluation.export.lerobot_writer import Writer

        self.writer = Writer(root)

    def send(self, message: dict) -> None:
        self.writer.handle(message)

    def close(self) -> dict:
        return {"episodes": self.writer.episodes, "frames": self.writer.frames}


class _Subprocess:
    """The writer in LeRobot's environment, fed msgpack-numpy messages through a pipe."""

    def __init__(self, python: str, root: Path):
        import subprocess
        import tempfile

        from evaluation.export import lerobot_writer

        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([python, lerobot_writer.__file__, str(root)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)

    def send(self, message: dict) -> None:
        from policies.serving.wire import pack

        try:
            self.proc.stdin.write(pack(message))
        except BrokenPipeError:
            self.close()

    def close(self) -> dict:
        import json

        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        out = self.proc.stdout.read()
        if self.proc.wait() != 0:
            self.log.seek(0)
            tail = self.log.read().decode(errors="replace")[-3000:]
            raise ExportError(f"LeRobot's dataset writer failed (exit {self.proc.returncode}):\n{tail}")
        return json.loads(out.decode().strip().splitlines()[-1])


def _sink(root: Path, lerobot_python: str | None):
    """LeRobot's writer here when it imports, else in ``lerobot_python`` (or $VLA_ENVS_LEROBOT_PYTHON)."""
    import os

    python = lerobot_python or os.environ.get(LEROBOT_PYTHON_ENV)
    if python:
        return _Subprocess(python, root)
    try:
        from evaluation.export.lerobot_writer import lerobot_dataset_class

        lerobot_dataset_class()
    except Exception:  # noqa: BLE001 - absent, or present but broken (torchvision vs torch)
        raise ExportError(
            "--format lerobot writes with LeRobot's own dataset writer, which does not import here: give the "
            f"Python of an environment with lerobot or lerobot-dataset (--lerobot-python, or ${LEROBOT_PYTHON_ENV}; "
            "docs/integrations.md sets one up)"
        ) from None
    return _InProcess(root)


def observation_frame(observation: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A frame's observation features from one of this suite's observations (module docstring):
    images as they are, everything else float32."""
    if "libero_state" in observation:
        from policies.conventions import convention

        frame = convention("lerobot_libero").convert(observation, any_image_size=True)
    else:
        names = {"image": "observation.images.image", "wrist_image": "observation.images.wrist_image"}
        if "proprio" in observation:
            names["proprio"] = "observation.state"
            names["state"] = "observation.environment_state"
        else:
            names["state"] = "observation.state"
        frame = {names[key]: np.asarray(value) for key, value in observation.items()}
    return {name: value if name.startswith("observation.images.") else np.asarray(value, dtype=np.float32)
            for name, value in frame.items()}


def features(first: ReplayedEpisode) -> dict:
    out = {}
    for name, value in observation_frame(first.observations[0]).items():
        if name.startswith("observation.images."):
            out[name] = {"dtype": "image", "shape": value.shape, "names": ["height", "width", "channels"]}
        else:
            out[name] = {"dtype": "float32", "shape": value.shape, "names": None}
    out["action"] = {"dtype": "float32", "shape": (first.actions.shape[1],), "names": None}
    out["next.reward"] = {"dtype": "float32", "shape": (1,), "names": None}
    out["next.done"] = {"dtype": "bool", "shape": (1,), "names": None}
    out["embodied.running"] = {"dtype": "float32", "shape": (len(RUNNING_NAMES),), "names": RUNNING_NAMES}
    return out


def write_lerobot(episodes, out: str | Path, repo_id: str = "vla_envs/export", progress=None,
                  lerobot_python: str | None = None) -> tuple[int, int]:
    """Write ``episodes`` (``ReplayedEpisode``s) as a LeRobotDataset in ``out`` (a new folder);
    returns (episodes, frames). ``progress(episode)`` is called after each episode."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ExportError(f"{out} is not empty: expected a new folder for the dataset")
    if out.exists():
        out.rmdir()  # LeRobot creates the folder itself
    out.parent.mkdir(parents=True, exist_ok=True)
    sink, rows = None, []
    for episode in episodes:
        if sink is None:
            fps = episode.control_freq_hz
            if fps != math.floor(fps):
                raise ExportError(f"control frequency {fps} Hz: LeRobot datasets need an integer fps")
            sink = _sink(out, lerobot_python)
            sink.send({"kind": "create", "repo_id": repo_id, "fps": int(fps), "features": features(episode),
                       "robot_type": "panda"})
        for t in range(episode.n_steps):
            frame = observation_frame(episode.observations[t])
            frame["action"] = episode.actions[t]
            frame["next.reward"] = np.asarray([episode.rewards[t]], dtype=np.float32)
            frame["next.done"] = np.asarray([t == episode.n_steps - 1])
            frame["embodied.running"] = np.asarray([episode.running[k][t] for k in RUNNING_NAMES], dtype=np.float32)
            frame["task"] = episode.instruction
            sink.send({"kind": "frame", "frame": frame})
        sink.send({"kind": "save_episode"})
        rows.append({"episode_index": len(rows), **episode.record})
        if progress is not None:
            progress(episode)
    if sink is None:
        raise ExportError("no episodes to export")
    sink.send({"kind": "finish"})
    written = sink.close()
    if written["episodes"] != len(rows):
        raise ExportError(f"LeRobot's writer saved {written['episodes']} episodes of {len(rows)}")
    schema = pa.schema([pa.field("episode_index", pa.int64()), *EPISODE_SCHEMA])
    table = (pa.Table.from_pylist(rows, schema=schema) if set(rows[0]) == set(schema.names)  # a run's episodes
             else pa.Table.from_pylist(rows))  # a recording's metadata
    pq.write_table(table, out / "meta" / "embodied_episodes.parquet")
    return len(rows), int(written["frames"])
