"""Absolute checks: each variant's own settings (latency model, compression, chunk execution)
reach its episodes. The other eval tests compare the pipeline with itself (workers against
sequential, resumed against uninterrupted); these compare every variant with what its config
says must follow, so a study of identical "variants" cannot pass."""

import math

import numpy as np
import pandas as pd
import pytest
from eval_helpers import small_config

from evaluation.run.latency import delay_steps
from evaluation.run.parts import PartStore
from evaluation.runner import run_episodes

# Lift, state mode: the perturbed expert (expert + a small torch MLP, chunks of 4) solves it in
# ~35 steps. Every variant changes exactly one thing against the base.
CONFIG = """\
name: variant settings
tasks: [Lift]
seeds: [0, 1]
env: {obs_mode: state, max_episode_steps: 60}
base:
  name: base
  policy: {factory: "policies.demo:perturbed_expert", kwargs: {chunk_size: 4, scale: 0.2}}
variants:
  - {name: wait_100ms, latency: {fixed_ms: 100}}
  - {name: int4, compression: {quantization: {method: fake, bits: 4}}}
  - {name: prune50, compression: {pruning: {fraction: 0.5}}}
  - {name: k4, execution: {schedule: open_loop, execute_steps: 4}}
  - {name: spec_k1, compression: {execution: {open_loop_steps: 1}}}
execution: {schedule: open_loop, execute_steps: 2}
recording: {record_steps: true}
profile: {repeats: 1, warmup: 0}
stats: {bootstrap_resamples: 100}
"""
# the open-loop k each variant must execute
EXECUTE_STEPS = {"base": 2, "wait_100ms": 2, "int4": 2, "prune50": 2, "k4": 4, "spec_k1": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("variants")
    _, config = small_config(tmp, CONFIG)
    out = tmp / "out"
    units, ran = run_episodes(config, out, progress=False)
    assert ran == len(units) == 12
    PartStore(out).consolidate(units)
    episodes = pd.read_parquet(out / "episodes.parquet").set_index(["variant", "seed"])
    steps = pd.read_parquet(out / "steps.parquet")
    steps = steps[steps.step > 0]  # row 0 is the reset; step t is the t-th control step
    return episodes, {key: group.sort_values("step") for key, group in steps.groupby(["variant", "seed"])}


def _actions(steps, variant, seed) -> np.ndarray:
    return np.stack(steps[(variant, seed)]["action"].to_numpy())


def test_latency_label_and_waiting_steps_follow_the_latency_model(run):
    episodes, steps = run
    for (variant, seed), row in episodes.iterrows():
        if variant == "wait_100ms":
            assert row.latency_model == "fixed_100ms"
            assert row.waiting_steps > 0
        else:
            assert row.latency_model == "frozen", variant
            assert row.waiting_steps == 0, variant
        assert row.waiting_steps == int(steps[(variant, seed)]["waiting"].sum())


def test_a_fixed_latency_waits_its_steps_after_every_query_but_the_first(run):
    episodes, steps = run
    wait = delay_steps(0.100, 20.0)
    assert wait == 2
    for seed in (0, 1):
        table = steps[("wait_100ms", seed)]
        queried = table["queried"].to_numpy()
        waiting = table["waiting"].to_numpy()
        query_steps = np.flatnonzero(queried)
        assert query_steps[0] == 0 and not waiting[0]  # the first chunk costs no time
        expected_waiting = np.zeros_like(waiting)
        for index in query_steps[1:]:
            expected_waiting[index:index + wait] = True
        np.testing.assert_array_equal(waiting, expected_waiting)
        # the chunk computed during the wait runs for k steps after it: queries 2 + k apart
        np.testing.assert_array_equal(np.diff(query_steps[1:]), wait + 2)


# waiting steps change the query count of a variant with latency (checked step by step above)
@pytest.mark.parametrize("variant", [v for v in EXECUTE_STEPS if v != "wait_100ms"])
def test_inference_calls_follow_each_variants_execute_steps(run, variant):
    episodes, steps = run
    k = EXECUTE_STEPS[variant]
    for seed in (0, 1):
        row = episodes.loc[(variant, seed)]
        assert row.inference_calls == math.ceil(row.n_steps / k), (variant, seed)
        queried = np.flatnonzero(steps[(variant, seed)]["queried"].to_numpy())
        np.testing.assert_array_equal(queried, np.arange(0, row.n_steps, k))


@pytest.mark.parametrize("variant", ["wait_100ms", "int4", "prune50", "k4", "spec_k1"])
def test_every_variant_acts_differently_from_the_base_on_the_same_seed(run, variant):
    _, steps = run
    for seed in (0, 1):
        base, other = _actions(steps, "base", seed), _actions(steps, variant, seed)
        n = min(len(base), len(other))
        assert not np.array_equal(base[:n], other[:n]), (variant, seed)


def test_compression_changes_the_first_chunk_and_execution_changes_only_later_steps(run):
    _, steps = run
    for seed in (0, 1):
        base = _actions(steps, "base", seed)
        # the first observation is the same for every variant (same seed, same initial state):
        # a compressed model answers it differently at once
        for variant in ("int4", "prune50"):
            assert not np.array_equal(_actions(steps, variant, seed)[0], base[0]), variant
        # the base model under other settings: the same first chunk, so the same first actions
        for variant in ("wait_100ms", "k4"):
            np.testing.assert_array_equal(_actions(steps, variant, seed)[:2], base[:2])
        # k = 1 re-plans every step: its second action starts a new chunk
        assert not np.array_equal(_actions(steps, "spec_k1", seed)[1], base[1])


def test_paired_episodes_share_the_initial_state(run):
    episodes, _ = run
    fingerprints = episodes["initial_state"].unstack("seed")
    for seed in (0, 1):
        assert fingerprints[seed].nunique() == 1, fingerprints[seed]
    assert fingerprints[0].iloc[0] != fingerprints[1].iloc[0]
