"""JointStateRecorder: arrays, Parquet round trip (pyarrow, pandas, polars, DuckDB), atomic writes."""

import json
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from wrappers import EmbodiedCost, JointStateRecorder, read_episode
from wrappers.parquet_io import METADATA_KEY


def _run(env, n_steps, seed):
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        _, _, terminated, truncated, info = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if terminated or truncated:
            break
    return info


def test_recording_buffer_doubles_and_keeps_rows():
    env = JointStateRecorder(gym.make("Reacher-v5", max_episode_steps=-1))  # no time limit
    probe = env.embodied_probe
    env.reset(seed=0)
    initial = probe.rows_capacity
    for _ in range(2 * initial):
        env.step(np.zeros(2, np.float32))
    assert probe.rows_capacity == 4 * initial  # 2 * initial + 1 rows needed: doubled twice
    episode = probe.episode_arrays()
    assert episode.n_steps == 2 * initial and len(episode.qpos) == 2 * initial + 1
    np.testing.assert_allclose(episode.time_s, np.arange(2 * initial + 1) / 50.0)
    env.close()


def test_episode_ends_on_truncation_and_files_round_trip(tmp_path):
    env = JointStateRecorder(
        EmbodiedCost(gym.make("vla_envs/Lift-v0", max_episode_steps=12)), out_dir=tmp_path, record_substeps=True
    )
    info = _run(env, 50, seed=4)
    episode = env.last_episode
    assert episode is not None and episode.n_steps == 12
    assert episode.qpos.shape == (13, 7) and episode.action.shape == (12, 7) and episode.reward.shape == (12,)
    assert episode.substep_torque.shape == (12, 25, 7)
    np.testing.assert_allclose(episode.time_s, np.arange(13) / 20.0)
    meta = episode.metadata
    assert meta["env_id"] == "vla_envs/Lift-v0" and meta["seed"] == 4 and meta["episode"] == 0
    assert meta["end_reason"] == "truncated" and meta["instruction"].startswith("pick up the red cube")
    assert meta["metrics"] == info["embodied"]
    assert meta["robot"]["n_substeps"] == 25 and meta["record_substeps"] is True

    [path] = env.written_paths
    assert path == tmp_path / "episode_000000.parquet"
    back = read_episode(path)
    for field in ("time_s", "qpos", "qvel", "qacc", "torque", "ee_pos", "action", "reward", "substep_torque", "substep_qvel"):
        np.testing.assert_array_equal(getattr(back, field), getattr(episode, field), err_msg=field)
    assert back.metadata == json.loads(json.dumps(meta))
    env.close()


def test_parquet_is_plain_data_for_pandas_polars_duckdb(tmp_path):
    env = JointStateRecorder(gym.make("Pusher-v5", max_episode_steps=20), out_dir=tmp_path)
    for seed in (0, 1):
        _run(env, 40, seed)
    env.close()
    files = sorted(tmp_path.glob("*.parquet"))
    assert [f.name for f in files] == ["episode_000000.parquet", "episode_000001.parquet"]

    frame = pd.read_parquet(files[0])
    assert len(frame) == 21 and list(frame["step"]) == list(range(21))
    assert frame["action"].iloc[0] is None and len(frame["action"].iloc[1]) == 7
    assert np.isnan(frame["reward"].iloc[0]) and set(frame["env_id"]) == {"Pusher-v5"}
    assert len(frame["qpos"].iloc[5]) == 7 and len(frame["ee_pos"].iloc[5]) == 3

    import polars as pl

    lazy = pl.read_parquet(files[1])
    assert lazy.height == 21 and lazy["seed"].unique().to_list() == [1]

    import duckdb

    rows = duckdb.sql(
        f"SELECT episode, count(*) AS n, max(step) AS last FROM read_parquet('{tmp_path}/*.parquet') "
        "GROUP BY episode ORDER BY episode"
    ).fetchall()
    assert rows == [(0, 21, 20), (1, 21, 20)]
    meta = json.loads(pq.read_schema(files[0]).metadata[METADATA_KEY])
    assert meta["end_reason"] == "truncated" and meta["n_steps"] == 20


def test_reset_mid_episode_and_close_keep_what_was_recorded(tmp_path):
    env = JointStateRecorder(gym.make("Reacher-v5"), out_dir=tmp_path, file_prefix="w0-")
    _run(env, 7, seed=0)
    env.reset(seed=1)  # ends episode 0 early
    assert env.last_episode.metadata["end_reason"] == "reset" and env.last_episode.n_steps == 7
    env.step(env.action_space.sample())
    env.close()
    assert env.last_episode.metadata["end_reason"] == "close" and env.last_episode.n_steps == 1
    assert sorted(p.name for p in tmp_path.glob("*.parquet")) == ["w0-episode_000000.parquet", "w0-episode_000001.parquet"]


_WRITER = """
import sys, numpy as np
from wrappers.episode_buffer import EpisodeArrays
from wrappers.parquet_io import write_episode
n = 40000
rng = np.random.default_rng(0)
ep = EpisodeArrays(
    time_s=np.arange(n + 1) / 20.0, qpos=rng.normal(size=(n + 1, 7)), qvel=rng.normal(size=(n + 1, 7)),
    qacc=rng.normal(size=(n + 1, 7)), torque=rng.normal(size=(n + 1, 7)), ee_pos=rng.normal(size=(n + 1, 3)),
    action=rng.normal(size=(n, 7)), reward=rng.normal(size=n),
    substep_torque=rng.normal(size=(n, 25, 7)), substep_qvel=rng.normal(size=(n, 25, 7)),
    metadata={"env_id": "x", "seed": 0, "episode": 0},
)
print("ready", flush=True)
i = 0
while True:
    write_episode(ep, sys.argv[1] + f"/episode_{i:06d}.parquet")
    i += 1
"""


def test_killed_writer_leaves_only_complete_files(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # most likely in the middle of the next write now
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    files = sorted(tmp_path.glob("*.parquet"))
    assert files, "the writer never finished a file"
    for path in files:
        assert pq.read_metadata(path).num_rows == 40001  # complete, readable
    leftovers = [p.name for p in tmp_path.iterdir() if p.suffix != ".parquet"]
    assert all(name.startswith(".") and name.endswith(".tmp") for name in leftovers)
