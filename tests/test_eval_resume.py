"""Interruption keeps finished episodes; --resume runs only the missing ones and the result is
exactly the uninterrupted run's."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest
from eval_helpers import deterministic_episodes, small_config

from evaluation import run_eval
from evaluation.run.episode import EpisodeRunner
from evaluation.run.parts import PartStore
from evaluation.run.plan import plan_units
from evaluation.runner import OutputExistsError, run_episodes

PROFILE_COLUMNS = ["latency_per_call_mean_ms", "inference_time_per_episode_ms"]


def _summary(path):
    table = pd.read_csv(path)
    return table.drop(columns=[c for c in table.columns if c.startswith("profile_")] + PROFILE_COLUMNS)


def test_resume_after_interruption_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    _, config = small_config(tmp_path)
    full = run_eval(config, tmp_path / "full", progress=False)
    assert full.ran == 6

    # interrupt (Ctrl-C) during the fourth episode
    original, calls = EpisodeRunner.run, {"n": 0}

    def interrupted(self, unit):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, unit)

    monkeypatch.setattr(EpisodeRunner, "run", interrupted)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        run_eval(config, out, progress=False)
    monkeypatch.setattr(EpisodeRunner, "run", original)
    store = PartStore(out)
    assert len(store.done_keys()) == 3
    assert not (out / "episodes.parquet").exists()
    assert "interrupted" in (out / "run.json").read_text()
    # a crash between an episode's files: an orphan steps part and a stray temporary file
    units = plan_units(config)
    pending = [u for u in units if u.key not in store.done_keys()][0]
    store.steps_path(pending).write_bytes(b"garbage from a killed write")
    (store.episodes_dir / ".x.parquet.123.tmp").write_bytes(b"partial")

    resumed = run_eval(config, out, resume=True, progress=False)
    assert resumed.ran == 3
    assert deterministic_episodes(out / "episodes.parquet") == deterministic_episodes(tmp_path / "full" / "episodes.parquet")
    assert pq.read_table(out / "steps.parquet").equals(pq.read_table(tmp_path / "full" / "steps.parquet"))
    pd.testing.assert_frame_equal(_summary(out / "summary.csv"), _summary(tmp_path / "full" / "summary.csv"))

    # resuming a complete run runs nothing and duplicates nothing
    again = run_eval(config, out, resume=True, progress=False)
    assert again.ran == 0
    assert pq.read_table(out / "episodes.parquet").num_rows == 6
    # run.json keeps one record per call: how the run was filled, and where
    calls = json.loads((out / "run.json").read_text())["calls"]
    assert [c["episodes_run"] for c in calls] == [3, 3, 0]
    assert calls[0]["status"] == "interrupted" and all(c["episodes_wall_s"] >= 0 for c in calls)
    assert [len(json.loads((tmp_path / "full" / "run.json").read_text())["calls"])] == [1]


def test_resume_refuses_another_config(tmp_path):
    _, config = small_config(tmp_path)
    run_episodes(config, tmp_path / "out", progress=False, max_episodes=1)
    _, other = small_config(tmp_path, (tmp_path / "small.yaml").read_text().replace("seeds: [0, 1]", "seeds: [0, 2]"), "other.yaml")
    with pytest.raises(OutputExistsError, match=r"config differs .* in \['seeds'\]"):
        run_episodes(other, tmp_path / "out", resume=True, progress=False)
    # settings that do not shape episodes may change
    _, same = small_config(tmp_path, (tmp_path / "small.yaml").read_text().replace("repeats: 3", "repeats: 4"), "same.yaml")
    units, ran = run_episodes(same, tmp_path / "out", resume=True, progress=False, max_episodes=1)
    assert ran == 1


def _damage(store, units, config):
    """Four kinds of damaged part, one per finished episode: 0 bytes, truncated, another
    episode's record under this name, a steps file cut short."""
    import shutil

    keys = sorted(store.done_keys())
    store.episode_path(units[0]).write_bytes(b"")
    data = store.episode_path(units[1]).read_bytes()
    store.episode_path(units[1]).write_bytes(data[: len(data) // 2])
    shutil.copyfile(store.episode_path(units[3]), store.episode_path(units[2]))
    steps = pq.read_table(store.steps_path(units[3]))
    pq.write_table(steps.slice(0, steps.num_rows - 1), store.steps_path(units[3]))
    return keys


def test_damaged_parts_are_moved_aside_and_their_episodes_run_again(tmp_path):
    _, config = small_config(tmp_path)
    full = run_eval(config, tmp_path / "full", progress=False)
    out = tmp_path / "damaged"
    run_episodes(config, out, progress=False, max_episodes=5)
    store = PartStore(out)
    units = plan_units(config)
    _damage(store, units, config)
    done, messages = store.completed(expect_steps=True)
    assert done == {units[4].key}
    reasons = " | ".join(messages)
    assert "unreadable" in reasons and f"is the record of {units[3].key}, not of {units[2].key}" in reasons
    assert "its steps file holds" in reasons
    # the damaged files are kept for a look, not deleted
    assert len(list((out / "parts" / "corrupt").iterdir())) >= 4

    with pytest.warns(UserWarning, match="runs again"):
        store.episode_path(units[4]).write_bytes(b"not parquet")
        resumed = run_eval(config, out, resume=True, progress=False)
    assert resumed.ran == 6  # the four damaged, the one damaged now, and the one never run
    assert deterministic_episodes(out / "episodes.parquet") == deterministic_episodes(tmp_path / "full" / "episodes.parquet")
    assert full.ran == 6


def test_out_refuses_a_folder_of_someone_elses_files(tmp_path):
    _, config = small_config(tmp_path)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.md").write_text("my own notes")
    (mine / "thesis.tex").write_text("chapter 1")
    with pytest.raises(OutputExistsError, match=r"files an evaluation run did not write \(thesis.tex\)"):
        run_episodes(config, mine, progress=False, max_episodes=1)
    with pytest.raises(OutputExistsError, match="no run.json"):
        run_episodes(config, mine, resume=True, progress=False, max_episodes=1)
    assert (mine / "summary.md").read_text() == "my own notes"
    # an empty folder, and a folder of a run that never finished an episode, are fine
    (tmp_path / "empty").mkdir()
    assert run_episodes(config, tmp_path / "empty", progress=False, max_episodes=1)[1] == 1


def test_ctrl_c_right_after_an_episode_exits_130_keeps_everything_and_resumes(tmp_path):
    """SIGINT to `vla-envs eval` (one worker) once the first episode is on disk: the episode
    in progress finishes and is written, the run says interrupted, --resume completes it."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    path, config = small_config(tmp_path)
    out = tmp_path / "run"
    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-m", "cli", "eval", str(path), "--out", str(out)]
    process = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "COLUMNS": "200"})
    episodes = out / "parts" / "episodes"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not (episodes.is_dir() and any(episodes.iterdir())):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=300)[0]
    assert process.returncode == 130, output
    assert "AttributeError" not in output and "Traceback" not in output
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted"
    store = PartStore(out)
    done, damaged = store.completed(expect_steps=True)
    assert 1 <= len(done) < 6 and not damaged
    resumed = run_eval(config, out, resume=True, progress=False)
    assert resumed.ran == 6 - len(done)
    assert pq.read_table(out / "episodes.parquet").num_rows == 6


def test_ctrl_c_while_an_episode_is_being_written_keeps_that_episode(tmp_path, monkeypatch):
    """The first Ctrl-C is deferred across the episode and its write: a SIGINT that lands in the
    middle of writing the part (the probe's race) no longer deletes it."""
    import os
    import signal

    from evaluation.run import parts

    _, config = small_config(tmp_path)
    original = parts.PartStore.write

    def interrupted_write(self, unit, result):
        os.kill(os.getpid(), signal.SIGINT)  # delivered now, inside the write
        return original(self, unit, result)

    monkeypatch.setattr(parts.PartStore, "write", interrupted_write)
    with pytest.raises(KeyboardInterrupt):
        run_episodes(config, tmp_path / "run", progress=False)
    done, damaged = PartStore(tmp_path / "run").completed(expect_steps=True)
    assert len(done) == 1 and not damaged


def test_parts_from_before_a_column_existed_merge_with_nulls(tmp_path):
    """A run resumed across a vla-envs upgrade: its old parts lack the per-step hash columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evaluation.run.parts import _concat_parquet

    old = pa.table({"step": pa.array([0, 1], pa.int64()), "time_s": [0.0, 0.05]})
    new = pa.table({"step": pa.array([0, 1], pa.int64()), "time_s": [0.0, 0.05],
                    "obs_hash": pa.array([None, "00ff00ff00ff00ff"], pa.string())})
    pq.write_table(old, tmp_path / "a.parquet")
    pq.write_table(new, tmp_path / "b.parquet")
    assert _concat_parquet([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "all.parquet") == 4
    merged = pq.read_table(tmp_path / "all.parquet")
    assert merged.column("obs_hash").to_pylist() == [None, None, None, "00ff00ff00ff00ff"]
    assert merged.column("time_s").to_pylist() == [0.0, 0.05, 0.0, 0.05]
