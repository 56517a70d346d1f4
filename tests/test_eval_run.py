"""End to end: `vla-envs eval` on a small config writes every output with the right rows, the
episodes are paired, and the summary equals a recomputation from episodes.parquet."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from eval_helpers import SMALL, small_config
from scipy.stats import binomtest
from typer.testing import CliRunner

from cli.app import app
from evaluation.analysis.stats import bootstrap_ci
from evaluation.analysis.summary import SUMMARY_METRICS

VARIANTS = ["perturbed", "int4_100ms", "expert"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    text = SMALL + "recording: {record_steps: true, videos: {seeds: [0], variants: [expert], size: 64}}\n"
    path, _ = small_config(tmp, text)
    out = tmp / "out"
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def test_every_output_file_and_its_rows(run_dir):
    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    assert len(episodes) == 1 * len(VARIANTS) * 2
    assert sorted(episodes["variant"].unique()) == sorted(VARIANTS)
    for column in ["task", "variant", "seed", "success", "inference_calls", "latency_mean_ms", "latency_p90_ms",
                   "energy_j", "jerk_ms", "completion_time_s", "ee_path_m", "n_steps"]:
        assert column in episodes.columns
    steps = pd.read_parquet(run_dir / "steps.parquet")
    assert len(steps) == int((episodes["n_steps"] + 1).sum())  # reset row + one per control step
    for column in ["task", "variant", "seed", "step", "qpos", "qvel", "torque", "action", "reward", "running_energy_j"]:
        assert column in steps.columns
    last = steps.groupby(["variant", "seed"]).tail(1).set_index(["variant", "seed"])["running_energy_j"]
    assert np.allclose(last.sort_index(), episodes.set_index(["variant", "seed"])["energy_j"].sort_index())

    summary = pd.read_csv(run_dir / "summary.csv")
    assert list(summary["variant"]) == VARIANTS
    assert summary.loc[summary.variant == "perturbed", "profile_params"].item() > 0
    md = (run_dir / "summary.md").read_text()
    assert all(v in md for v in VARIANTS) and "Wilson" in md

    report = (run_dir / "report.html").read_text()
    assert "<script" not in report
    # the headline first: paired change, then success against cost, distributions, one seed's traces
    figures = [report.index(f'<img alt="{alt}" src="data:image/png;base64,') for alt in
               ("paired change", "success against cost", "distributions", "traces")]
    assert figures == sorted(figures)

    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "complete"
    assert info["seeds"] == {"Lift": [0, 1]}
    assert info["config"]["base"]["name"] == "perturbed"
    for package in ("mujoco", "robosuite", "torch", "gymnasium"):
        assert info["packages"][package]
    assert {"commit", "dirty"} <= set(info["git"]) and info["machine"]["cpu_count"] >= 1
    assert "MUJOCO_GL" in info["renderer"]

    videos = list((run_dir / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["Lift__expert__seed000000.mp4"]
    assert videos[0].stat().st_size > 1000


def test_paired_seeds_share_initial_states(run_dir):
    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    per_seed = episodes.groupby("seed")["initial_state"].nunique()
    assert (per_seed == 1).all()  # every variant started from the same state
    assert episodes.groupby("seed")["initial_state"].first().nunique() == 2  # seeds differ
    steps = pd.read_parquet(run_dir / "steps.parquet")
    first = steps[steps.step == 0]
    for seed, group in first.groupby("seed"):
        qpos = np.stack(group["qpos"].to_numpy())
        assert np.array_equal(qpos, np.repeat(qpos[:1], len(qpos), axis=0)), seed


def _close(a, b):
    if (a is None or (isinstance(a, float) and math.isnan(a))) and (b is None or math.isnan(b)):
        return True
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


def test_summary_equals_a_recomputation_from_episodes(run_dir):
    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    summary = pd.read_csv(run_dir / "summary.csv").set_index("variant")
    base = episodes[(episodes.variant == "perturbed") & episodes.success].set_index("seed")
    for variant, group in episodes.groupby("variant"):
        row = summary.loc[variant]
        successes = int(group.success.sum())
        assert row.successes == successes and row.episodes == len(group)
        assert _close(row.success_rate, successes / len(group))
        wilson = binomtest(successes, len(group)).proportion_ci(confidence_level=0.95, method="wilson")
        assert row.success_ci_low == pytest.approx(wilson.low, abs=1e-12)
        assert row.success_ci_high == pytest.approx(wilson.high, abs=1e-12)
        solved = group[group.success].set_index("seed")
        shared = sorted(set(solved.index) & set(base.index))
        assert row.paired_n == len(shared)
        for metric in SUMMARY_METRICS:
            values = solved[metric].to_numpy()
            mean = values.mean() if len(values) else math.nan
            assert _close(row[f"{metric}_mean"], mean), (variant, metric)
            ci = bootstrap_ci(values, 0.95, 500, 0)
            assert _close(row[f"{metric}_ci_low"], ci[0]) and _close(row[f"{metric}_ci_high"], ci[1])
            base_mean = base[metric].mean()
            expected = 100 * (mean - base_mean) / abs(base_mean) if base_mean else math.nan
            assert _close(row[f"{metric}_pct_vs_base"], expected), (variant, metric)
            paired = [row[f"{metric}_paired_{k}"] for k in ("diff", "ci_low", "ci_high", "pct")]
            if shared:
                differences = solved.loc[shared, metric] - base.loc[shared, metric]
                assert _close(paired[0], differences.mean()), (variant, metric)
                assert _close(paired[1], bootstrap_ci(differences, 0.95, 500, 0)[0]), (variant, metric)
                assert _close(paired[2], bootstrap_ci(differences, 0.95, 500, 0)[1]), (variant, metric)
                assert paired[1] <= paired[0] <= paired[2], (variant, metric)
                base_shared = base.loc[shared, metric].mean()
                pct = 100 * (solved.loc[shared, metric].mean() - base_shared) / abs(base_shared)
                assert _close(paired[3], pct), (variant, metric)
                if variant == "perturbed":  # the base against itself
                    assert paired == [0.0, 0.0, 0.0, 0.0]
            else:
                assert all(math.isnan(v) for v in paired)
        assert _close(row.inference_calls_mean, group.inference_calls.mean())


def test_a_second_run_into_the_same_folder_needs_resume(run_dir, tmp_path):
    path, _ = small_config(tmp_path)
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(run_dir)])
    assert result.exit_code == 2 and "--resume" in result.output


def test_seam_and_within_parts_sum_to_each_episodes_metrics(run_dir):
    """Recomputed from steps.parquet: the parts sum to jerk_ms and action_rate, and the seam
    part is the jerk on the steps where a new chunk started (chunks of 4, k = 2)."""
    from evaluation.run.latency import StepSource, seam_mask
    from wrappers.metrics import jerk_ms_parts

    episodes = pd.read_parquet(run_dir / "episodes.parquet")
    steps = pd.read_parquet(run_dir / "steps.parquet")
    for _, e in episodes.iterrows():
        assert e["jerk_ms_seam"] + e["jerk_ms_within"] == pytest.approx(e["jerk_ms"], rel=1e-9, abs=1e-9)
        assert e["action_rate_seam"] + e["action_rate_within"] == pytest.approx(e["action_rate"], rel=1e-9, abs=1e-12)
        rows = steps[(steps.variant == e["variant"]) & (steps.seed == e["seed"])]
        starts = seam_mask([StepSource(*flags) for flags in zip(rows["queried"], rows["waiting"], rows["chunk_start"])])
        qvel = np.stack(rows["qvel"].to_numpy())
        assert jerk_ms_parts(qvel, 20.0, starts)[0] == pytest.approx(e["jerk_ms_seam"], rel=1e-9, abs=1e-9)
    perturbed = episodes[episodes.variant == "perturbed"]
    assert (perturbed["jerk_ms_seam"] > 0).all() and (perturbed["jerk_ms_within"] > 0).all()
    summary = pd.read_csv(run_dir / "summary.csv").set_index("variant")
    assert summary.loc["perturbed", "jerk_ms_seam_mean"] > 0
    assert "Chunk seams" in (run_dir / "summary.md").read_text()


def test_run_json_is_the_declared_record_and_reads_back_as_written(run_dir):
    """run.json holds RunRecord's fields in their declared order (a fresh local run sets all but
    none of them unset), and reading it back gives the very text again."""
    from evaluation.run.record import read_run_record
    from evaluation.schema import RunRecord

    text = (run_dir / "run.json").read_text()
    assert list(json.loads(text)) == list(RunRecord.model_fields)
    record = read_run_record(run_dir / "run.json")
    assert record.to_json() == text
    assert [call.episodes_run for call in record.calls] == [6] and record.calls[0].status is None
    assert set(record.profiles_by_key()) == {("Lift", variant) for variant in VARIANTS}
