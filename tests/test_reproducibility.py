"""Reproducibility you can diff (evaluation.analysis.reproducibility): per-step hashes in steps.parquet and
`vla-envs compare`'s first divergent step, on real runs that differ in one known way."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.parquet as pq
import pytest
from eval_helpers import small_config

from evaluation import run_eval
from evaluation.analysis.reproducibility import first_divergence
from evaluation.compare import compare_runs
from evaluation.run.step_hashes import array_hash, obs_hashes
from evaluation.schema import HASH_COLUMNS, STEP_SOURCE_COLUMNS

# -- the hash -------------------------------------------------------------------------------------


def _obs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "wrist_image": rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            "proprio": rng.standard_normal(9).astype(np.float32)}


def test_hashes_are_deterministic_short_and_change_with_one_pixel():
    obs = _obs()
    full, image, state = obs_hashes(obs)
    assert (full, image, state) == obs_hashes(_obs())  # a fresh copy of the same bits
    assert obs_hashes(dict(reversed(list(obs.items())))) == (full, image, state)  # keys sorted
    assert all(len(h) == 16 and int(h, 16) >= 0 for h in (full, image, state))
    pixel = _obs()
    pixel["wrist_image"][31, 0, 2] ^= 1  # one bit of one pixel
    assert obs_hashes(pixel) == (obs_hashes(pixel)[0], obs_hashes(pixel)[1], state)
    assert obs_hashes(pixel)[0] != full and obs_hashes(pixel)[1] != image
    proprio = _obs()
    proprio["proprio"][3] = np.nextafter(proprio["proprio"][3], np.float32(np.inf))  # one ulp
    assert obs_hashes(proprio)[1:] == (image, obs_hashes(proprio)[2]) and obs_hashes(proprio)[2] != state
    # dtype and shape are hashed, not only the bytes; key names too
    assert array_hash([("a", np.zeros(4, np.float32))]) != array_hash([("a", np.zeros(2, np.float64))])
    assert array_hash([("a", np.zeros((2, 2), np.uint8))]) != array_hash([("a", np.zeros(4, np.uint8))])
    assert array_hash([("a", np.zeros(4))]) != array_hash([("b", np.zeros(4))])
    # an observation without cameras has no image hash; a bare array is all state
    assert obs_hashes({"state": np.ones(3)})[1] is None and obs_hashes(np.ones(3))[2] is not None


def _episode(n: int, changes: dict | None = None) -> dict[str, list]:
    """One episode's step lists as read_step_hashes gives them: row 0 the reset, a query every 2 steps."""
    rows = {"step": list(range(n + 1)), "queried": [False] + [i % 2 == 1 for i in range(1, n + 1)],
            "action": [None] + [bytes([i]) for i in range(1, n + 1)]}
    for name in HASH_COLUMNS:
        rows[name] = [None] + [f"{name}{i}" for i in range(1, n + 1)]
    rows["action_hash"] = [h if q else None for h, q in zip(rows["action_hash"], rows["queried"])]
    for (name, step), value in (changes or {}).items():
        rows[name][step] = value
    return rows


def test_first_divergence_names_what_differed_first():
    a = _episode(6)
    assert first_divergence(a, _episode(6)) == (None, "identical", "")
    assert first_divergence(a, _episode(8))[:2] == (7, "length")
    assert first_divergence(a, _episode(6, {("image_hash", 4): "x", ("obs_hash", 4): "y"}))[:2] == (4, "render")
    # the simulator or the proprio wins over the pixels that follow from it
    both = {("image_hash", 3): "x", ("sim_hash", 3): "y"}
    assert first_divergence(a, _episode(6, both))[:2] == (3, "physics")
    assert first_divergence(a, _episode(6, {("state_hash", 5): "x"}))[:2] == (5, "physics")
    assert first_divergence(a, _episode(6, {("action_hash", 3): "x"}))[:2] == (3, "policy")
    assert first_divergence(a, _episode(6, {("action", 2): b"x"}))[:2] == (2, "execution")
    assert first_divergence(a, _episode(6, {("queried", 2): True, ("action_hash", 2): "x"}))[:2] == (2, "execution")
    # the earliest step decides
    assert first_divergence(a, _episode(6, {("action_hash", 1): "x", ("sim_hash", 2): "y"}))[:2] == (1, "policy")


# -- real runs ------------------------------------------------------------------------------------

# Lift, state, one seed: the base re-plans every 2 of its 4 actions; `tuned` is another policy,
# `timed` the base under 100 ms latency (a query waits 2 steps at 20 Hz)
PAIRED = """\
name: reproducibility test
tasks: [Lift]
seeds: [0]
env: {obs_mode: state, max_episode_steps: 60}
base:
  name: perturbed
  policy: {factory: "policies.demo:perturbed_expert", kwargs: {chunk_size: 4, scale: 0.2}}
variants:
  - {name: expert, policy: {kind: expert}}
  - {name: tuned, policy: {factory: "policies.demo:perturbed_expert", kwargs: {chunk_size: 4, scale: 0.2}}}
  - {name: timed, latency: {fixed_ms: 100}}
execution: {schedule: open_loop, execute_steps: 2}
profile: {enabled: false}
stats: {bootstrap_resamples: 200}
"""

# the scripted expert alone for 10 steps (it does not solve Lift that fast: every episode is truncated)
EXPERT = """\
name: reproducibility test, expert
tasks: [Lift]
seeds: [0]
env: {obs_mode: state, max_episode_steps: 10}
base: {name: expert, policy: {kind: expert}}
profile: {enabled: false}
stats: {bootstrap_resamples: 200}
"""


def _run(directory, name: str, text: str):
    _, config = small_config(directory, text, f"{name}.yaml")
    run_eval(config, directory / name, progress=False)
    return directory / name


@pytest.fixture(scope="module", autouse=True)
def _no_report_html():
    """report.html (plots, seconds per run) is not what these tests check."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("evaluation.pages.report.write_report", lambda path, *args, **kwargs: None)
        yield


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Real runs, each differing from its reference in one known way (two runs of one config
    agreeing bit for bit: tests/test_eval_compare.py, on a config with latency and compression)."""
    tmp = tmp_path_factory.mktemp("repro")
    return {
        "a": _run(tmp, "a", PAIRED),
        # another checkpoint for `tuned` (the residual's scale) and another latency for `timed`
        "b": _run(tmp, "b", PAIRED.replace("chunk_size: 4, scale: 0.2}}}", "chunk_size: 4, scale: 0.3}}}")
                  .replace("fixed_ms: 100", "fixed_ms: 200")),
        "expert": _run(tmp, "expert", EXPERT),
        "longer": _run(tmp, "longer", EXPERT.replace("max_episode_steps: 10", "max_episode_steps: 12")),
        "faster": _run(tmp, "faster", EXPERT.replace("max_episode_steps: 10",
                                                     "max_episode_steps: 10, control_freq: 25")),
        "rgb": _run(tmp, "rgb", EXPERT.replace("obs_mode: state", "obs_mode: rgb, image_size: 32")),
        "rgb_again": _run(tmp, "rgb_again", EXPERT.replace("obs_mode: state", "obs_mode: rgb, image_size: 32")),
        "rgb_full": _run(tmp, "rgb_full", EXPERT.replace("obs_mode: state", "obs_mode: rgb, image_size: 32, "
                                                          "render_quality: full")),
    }


def _divergence(runs, a: str, b: str, tmp_path) -> dict[tuple, tuple]:
    _, _, divergence = compare_runs(runs[a], runs[b], tmp_path / f"{a}_vs_{b}")
    assert divergence.message is None, divergence.message
    with open(tmp_path / f"{a}_vs_{b}" / "divergence.csv", newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [(r["variant"], r["kind"]) for r in written] == [(r["variant"], r["kind"]) for r in divergence.rows]
    return {r["variant"]: (r["first_divergent_step"], r["kind"]) for r in divergence.rows}


def test_steps_parquet_holds_a_hash_per_step_and_one_per_query(runs):
    steps = pq.read_table(runs["a"] / "steps.parquet")
    assert steps.column_names[-len(HASH_COLUMNS):] == list(HASH_COLUMNS)
    assert STEP_SOURCE_COLUMNS[-1] in steps.column_names
    rows = steps.to_pylist()
    for row in rows:
        if row["step"] == 0:  # the reset row acted on nothing
            assert all(row[name] is None for name in HASH_COLUMNS)
            continue
        assert all(len(row[name]) == 16 for name in ("obs_hash", "state_hash", "sim_hash"))
        assert row["image_hash"] is None  # state observations
        assert (row["action_hash"] is not None) == row["queried"]
    episodes = {r["variant"]: r for r in pq.read_table(runs["a"] / "episodes.parquet").to_pylist()}
    for variant, episode in episodes.items():
        queries = [r for r in rows if r["variant"] == variant and r["action_hash"] is not None]
        assert len(queries) == episode["inference_calls"], variant
    rgb = pq.read_table(runs["rgb"] / "steps.parquet").to_pylist()
    assert all(len(r["image_hash"]) == 16 for r in rgb if r["step"] > 0)


def test_two_runs_of_one_rendering_config_are_identical_bit_for_bit_at_every_step(runs, tmp_path):
    assert _divergence(runs, "rgb", "rgb_again", tmp_path) == {"expert": (None, "identical")}


def test_another_policy_and_another_latency_diverge_where_and_how_expected(runs, tmp_path):
    found = _divergence(runs, "a", "b", tmp_path)
    # the policy: another chunk on the very first (equal) observation
    assert found["tuned"] == (1, "policy")
    # the latency: the second query (step 3) waits 2 or 4 steps, each run executing the first
    # chunk's 2 leftover actions (steps 3, 4); on step 5 A executes the new chunk, B still holds
    assert found["timed"] == (5, "execution")
    assert found["perturbed"] == found["expert"] == (None, "identical")


def test_another_time_limit_control_rate_or_renderer_diverge_where_and_how_expected(runs, tmp_path):
    # a longer time limit: the first 10 steps are equal, then only one run goes on
    assert _divergence(runs, "expert", "longer", tmp_path) == {"expert": (11, "length")}
    # 25 Hz instead of 20: the first action is chosen on the same reset observation, and the
    # simulation it leads to differs (fewer physics substeps per action)
    assert _divergence(runs, "expert", "faster", tmp_path) == {"expert": (2, "physics")}
    # robosuite's full meshes instead of the lean ones: other pixels from the first frame, the
    # same simulation and proprio all along
    assert _divergence(runs, "rgb", "rgb_full", tmp_path) == {"expert": (1, "render")}


def test_runs_without_hashes_get_a_message_not_a_crash(runs, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(runs["a"], old)
    steps = pq.read_table(old / "steps.parquet")
    pq.write_table(steps.drop_columns(list(HASH_COLUMNS)), old / "steps.parquet")
    rows, _, divergence = compare_runs(runs["a"], old, tmp_path / "cmp")
    assert rows and divergence.rows == [] and "has no per-step hashes" in divergence.message
    assert (tmp_path / "cmp" / "summary.csv").is_file() and not (tmp_path / "cmp" / "divergence.csv").exists()
    (old / "steps.parquet").unlink()  # recording.record_steps: false
    _, _, divergence = compare_runs(old, runs["a"], tmp_path / "cmp")
    assert "steps.parquet does not exist" in divergence.message
