"""Interruption keeps finished episodes; --resume runs only the missing ones and the result is
exactly the uninterrupted run's."""

import pandas as pd
import pyarrow.parquet as pq
import pytest
from eval_helpers import deterministic_episodes, small_config

from evaluation import run_eval
from evaluation.episode import EpisodeRunner
from evaluation.parts import PartStore
from evaluation.runner import OutputExistsError, run_episodes
from evaluation.units import plan_units

PROFILE_COLUMNS = ["episode_latency_mean_ms"]


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
