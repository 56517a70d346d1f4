"""Teacher-forced divergence (evaluation.run.teacher_forcing): per-step error apart from closed-loop drift."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from evaluation.run.teacher_forcing import plan_distance


def test_plan_distance_in_closed_form():
    reference = np.zeros((4, 2))
    variant = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 0.0], [6.0, 8.0]])  # row distances 5, 1, 0, 10
    assert plan_distance(reference, variant) == (pytest.approx(4.0), pytest.approx(5.0))
    # only the overlapping rows count: a shorter variant chunk of 2 rows -> mean(5, 1)
    assert plan_distance(reference, variant[:2]) == (pytest.approx(3.0), pytest.approx(5.0))
    assert plan_distance(variant, variant) == (0.0, 0.0)
    with pytest.raises(ValueError, match=r"chunks of shapes \(4, 2\) and \(4, 3\)"):
        plan_distance(reference, np.zeros((4, 3)))



def _config(tmp_path, extra_variants: str = "", name: str = "small.yaml"):
    from eval_helpers import SMALL, small_config

    text = SMALL.replace(
        "  - {name: expert, policy: {kind: expert}}\n",
        "  - {name: expert, policy: {kind: expert}}\n" + extra_variants,
    )
    return small_config(tmp_path, text, name)[1]


def test_teacher_forced_distance_is_zero_for_the_base_itself_and_positive_for_int4(tmp_path):
    """A variant that is the base under another latency has the base's policy: distance 0 on
    every query. int4 is queried on the base's observations at the base's query steps: > 0.
    The teacher-forced variants do not change the base's own episodes."""
    from eval_helpers import deterministic_episodes

    from evaluation import run_eval

    config = _config(tmp_path, "  - {name: perturbed_200ms, latency: {fixed_ms: 200}}\n")
    outcome = run_eval(config, tmp_path / "run", progress=False)
    rows = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    base_rows = [r for r in rows if r["variant"] == "perturbed"]
    for row in base_rows:
        forced = {t["variant"]: t for t in row["teacher_forced"]}
        assert set(forced) == {"int4_100ms", "expert", "perturbed_200ms"}
        assert forced["perturbed_200ms"]["action_distance"] == 0.0
        assert forced["perturbed_200ms"]["first_action_distance"] == 0.0
        assert forced["int4_100ms"]["action_distance"] > 0 and forced["int4_100ms"]["first_action_distance"] > 0
        # the base re-plans every 2 of its 4 actions: one query per 2 steps, each seen by every follower
        assert forced["int4_100ms"]["queries"] == row["inference_calls"] == forced["perturbed_200ms"]["queries"]
    assert all(r["teacher_forced"] == [] for r in rows if r["variant"] != "perturbed")
    summary = {r["variant"]: r for r in outcome.summary}
    assert summary["perturbed_200ms"]["tf_action_distance_mean"] == 0.0
    assert summary["int4_100ms"]["tf_action_distance_mean"] > 0
    assert np.isnan(summary["perturbed"]["tf_action_distance_mean"])
    assert "per-step error" in (tmp_path / "run" / "summary.md").read_text()
    # the declared contracts are what the files hold
    from evaluation.analysis.summary import SUMMARY_COLUMNS
    from evaluation.schema import EPISODE_SCHEMA, STEP_SOURCE_COLUMNS

    assert pq.read_schema(tmp_path / "run" / "episodes.parquet").remove_metadata().equals(EPISODE_SCHEMA)
    assert set(STEP_SOURCE_COLUMNS) <= set(pq.read_schema(tmp_path / "run" / "steps.parquet").names)
    header = (tmp_path / "run" / "summary.csv").read_text().splitlines()[0].split(",")
    assert tuple(header) == SUMMARY_COLUMNS

    alone = _config(tmp_path, name="alone.yaml").model_copy(update={"variants": []})
    run_eval(alone, tmp_path / "alone", progress=False)

    def base_only(path):
        return [{k: v for k, v in r.items() if k != "teacher_forced"}
                for r in deterministic_episodes(path) if r["variant"] == "perturbed"]

    assert base_only(tmp_path / "alone" / "episodes.parquet") == base_only(tmp_path / "run" / "episodes.parquet")


def test_compare_to_makes_a_variant_follow_its_own_reference(tmp_path):
    from evaluation import run_eval

    config = _config(tmp_path, "  - {name: int4_again, compression: {quantization: {method: fake, bits: 4}}, "
                               "compare_to: int4_100ms}\n")
    run_eval(config, tmp_path / "run", progress=False)
    rows = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    for row in rows:
        followers = [t["variant"] for t in row["teacher_forced"]]
        expected = {"perturbed": ["int4_100ms", "expert"], "int4_100ms": ["int4_again"]}.get(row["variant"], [])
        assert followers == expected, row["variant"]
        if row["variant"] == "int4_100ms":  # the same compression of the same base: the same plans
            assert row["teacher_forced"][0]["action_distance"] == 0.0


def test_a_factory_that_returns_no_policy_fails_before_any_episode(tmp_path):
    from eval_helpers import SMALL, small_config

    from evaluation import run_eval
    from vla_envs.config import ConfigError

    text = SMALL.replace("  - {name: expert, policy: {kind: expert}}\n",
                         "  - {name: plain, policy: {factory: \"builtins:dict\"}}\n")
    _, config = small_config(tmp_path, text)
    with pytest.raises(ConfigError, match=r"variant 'plain' on Lift: .*returned a dict, expected a policies.base.Policy"):
        run_eval(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "parts").exists()


def test_async_k_beyond_the_chunk_fails_before_any_episode(tmp_path):
    from eval_helpers import SMALL, small_config

    from evaluation import run_eval
    from vla_envs.config import ConfigError

    text = SMALL.replace("latency: {fixed_ms: 100}}",
                         "latency: {fixed_ms: 100}, execution: {schedule: async, query_when_remaining: 4}}")
    _, config = small_config(tmp_path, text)
    with pytest.raises(ConfigError, match=r"variant 'int4_100ms' on Lift: query_when_remaining=4: expected 0..3"):
        run_eval(config, tmp_path / "run", progress=False)


def test_episode_records_follow_the_declared_schema(tmp_path):
    from evaluation.schema import episode_record

    with pytest.raises(ValueError, match=r"missing fields \[.*'success'.*\], unknown fields \['sucess'\]"):
        episode_record({"task": "Lift", "variant": "a", "seed": 0, "sucess": True})
