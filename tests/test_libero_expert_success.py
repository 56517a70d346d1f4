"""``python -m policies.libero_expert_success``: its record survives an interrupted run, resumes
without redoing an episode, and its table counts what the record holds."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

from policies import libero_expert_success as expert_success  # noqa: E402


def _row(task: int, state: int, success: bool, step: int | None = None) -> dict:
    return {"suite": "libero_spatial", "task": task, "init_state": state, "success": success,
            "success_step": step, "steps": 300 if step is None else step, "wall_s": 1.0}


def test_a_torn_last_line_is_skipped_and_episodes_are_keyed_by_task_and_state(tmp_path):
    path = tmp_path / "episodes.jsonl"
    path.write_text(json.dumps(_row(0, 0, True, 40)) + "\n" + json.dumps(_row(0, 1, False)) + "\n" + '{"suite": "libe')
    episodes = expert_success.read_episodes(path)
    assert set(episodes) == {("libero_spatial", 0, 0), ("libero_spatial", 0, 1)}
    assert episodes[("libero_spatial", 0, 0)]["success_step"] == 40


def test_summary_counts_successes_and_the_median_step_per_task():
    episodes = {("libero_spatial", 0, s): row for s, row in enumerate([_row(0, 0, True, 40), _row(0, 1, True, 61),
                                                                         _row(0, 2, False)])}
    episodes[("libero_spatial", 3, 0)] = _row(3, 0, False)
    table = expert_success.summary_table(episodes).splitlines()
    assert table[2] == "| LIBERO-Spatial | 0 | 3 | 2 | 67% | 50.5 |"
    assert table[3] == "| LIBERO-Spatial | 3 | 1 | 0 | 0% | - |"


def test_a_finished_record_is_resumed_without_building_an_env(tmp_path, monkeypatch):
    path = tmp_path / "episodes.jsonl"
    rows = [_row(0, state, state % 2 == 0, 50 if state % 2 == 0 else None) for state in range(3)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    before = path.read_text()
    def no_env(*args, **kwargs):
        raise AssertionError("every episode is recorded: no env should be built")

    monkeypatch.setattr(expert_success, "make_env", no_env)
    assert expert_success.main(["--suites", "libero_spatial", "--tasks", "0", "--init-states", "0", "1", "2",
                                "--out", str(path)]) == 0
    assert path.read_text() == before


@pytest.mark.parametrize("shard", ["2/2", "a/b", "1", "0/0"])
def test_a_bad_shard_is_refused_naming_the_flag(shard, capsys):
    with pytest.raises(SystemExit):
        expert_success.main(["--shard", shard, "--summary"])
    assert "--shard" in capsys.readouterr().err
