"""`vla-envs report` rebuilds a run's outputs from its files; `vla-envs compare` pairs two runs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from eval_helpers import small_config

from evaluation import run_eval
from evaluation.analysis.summary import SUMMARY_METRICS
from evaluation.compare import RunFolderError, compare_runs, rebuild_report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    _, config = small_config(tmp)
    run_eval(config, tmp / "first", progress=False)
    run_eval(config, tmp / "second", progress=False)
    return tmp


def test_report_rebuilds_the_same_summary_from_the_files(two_runs):
    run = two_runs / "first"
    before = pd.read_csv(run / "summary.csv")
    for name in ("summary.csv", "summary.md", "report.html"):
        (run / name).unlink()
    rows = rebuild_report(run)
    assert len(rows) == 3
    pd.testing.assert_frame_equal(pd.read_csv(run / "summary.csv"), before)
    assert (run / "report.html").stat().st_size > 10_000 and "## Lift" in (run / "summary.md").read_text()
    with pytest.raises(RunFolderError, match="has no run.json"):
        rebuild_report(two_runs)


def test_comparing_two_runs_of_one_config_finds_no_difference(two_runs, tmp_path):
    rows, notes, divergence = compare_runs(two_runs / "first", two_runs / "second", tmp_path / "cmp")
    assert not notes
    # step by step: every episode's observations, simulator states and chunks agree bit for bit
    assert divergence.message is None
    assert sorted((r["variant"], r["seed"], r["kind"], r["first_divergent_step"]) for r in divergence.rows) == sorted(
        (v, seed, "identical", None) for v in ("perturbed", "int4_100ms", "expert") for seed in (0, 1))
    assert pd.read_csv(tmp_path / "cmp" / "divergence.csv")["kind"].eq("identical").all()
    by_name = {r["variant"]: r for r in rows}
    assert set(by_name) == {f"{run}/{v}" for run in ("first", "second") for v in ("perturbed", "int4_100ms", "expert")}
    for variant in ("perturbed", "int4_100ms", "expert"):
        row = by_name[f"second/{variant}"]
        assert row["compared_to"] == f"first/{variant}"
        assert row["paired_n"] == row["successes"] == by_name[f"first/{variant}"]["successes"]
        for metric in SUMMARY_METRICS:
            diff = row[f"{metric}_paired_diff"]
            assert diff == 0.0 or math.isnan(diff), (variant, metric, diff)
    assert by_name["second/expert"]["paired_n"] > 0 and by_name["second/perturbed"]["paired_n"] > 0
    assert by_name["first/int4_100ms"]["compared_to"] == "first/perturbed"
    assert "second compared with first" in (tmp_path / "cmp" / "summary.md").read_text()
    assert (tmp_path / "cmp" / "report.html").is_file()


def test_compare_command_prints_the_paired_table_and_names_what_differs(two_runs, tmp_path):
    text = (two_runs / "small.yaml").read_text().replace("max_episode_steps: 80", "max_episode_steps: 70")
    _, other = small_config(tmp_path, text, "other.yaml")
    run_eval(other, tmp_path / "shorter", progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "cli", "compare", str(two_runs / "first"), str(tmp_path / "shorter"),
         "--out", str(tmp_path / "cmp")],
        check=False, capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "'env' differs between the runs" in result.stdout
    assert "shorter/expert" in result.stdout and "first/expert" in result.stdout
    # the solved episodes end before either time limit: the same steps bit for bit; int4 fails
    # both seeds: its first 70 steps are equal, then only A's episode goes on
    assert "step by step: 6 episodes in both runs: 4 identical, 2 length" in result.stdout
    divergence = pd.read_csv(tmp_path / "cmp" / "divergence.csv")
    failed = divergence[divergence["variant"] == "int4_100ms"]
    assert failed["kind"].eq("length").all() and failed["first_divergent_step"].eq(71).all()
    missing = subprocess.run([sys.executable, "-m", "cli", "report", str(tmp_path)], check=False,
                             capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    assert missing.returncode == 2 and "has no run.json" in missing.stdout


def test_the_report_shows_the_base_models_own_success_and_means():
    """A run with a base and no variants (tinyvla_success.yaml) still shows success in the report."""
    from evaluation.analysis.summary import metric_column
    from evaluation.pages.report import REPORT_METRICS, paired_table

    base = {"variant": "tinyvla", "is_base": True, "successes": 45, "episodes": 50,
            "success_ci_low": 0.786, "success_ci_high": 0.957}
    base.update({metric_column(m, "mean"): 1.5 for m in REPORT_METRICS})
    table = paired_table([base])
    assert "tinyvla (base)" in table and "45/50" in table and "[78.6, 95.7] %" in table
