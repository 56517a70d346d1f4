"""Local worker processes and Ray run the same work units as the sequential run, with the
same results (wall-clock columns aside)."""

import pyarrow.parquet as pq
import pytest
from eval_helpers import deterministic_episodes, small_config

from evaluation.run.parts import PartStore
from evaluation.runner import run_episodes


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sequential")
    _, config = small_config(tmp)
    units, ran = run_episodes(config, tmp / "out", progress=False)
    assert ran == len(units) == 6
    PartStore(tmp / "out").consolidate(units)
    return config, tmp / "out"


def _run(config, out, **kwargs):
    units, ran = run_episodes(config, out, progress=False, **kwargs)
    assert ran == len(units)
    PartStore(out).consolidate(units)
    return out


def _assert_same(out, reference):
    assert deterministic_episodes(out / "episodes.parquet") == deterministic_episodes(reference / "episodes.parquet")
    assert pq.read_table(out / "steps.parquet").equals(pq.read_table(reference / "steps.parquet"))


def test_local_workers_match_sequential(sequential, tmp_path):
    config, reference = sequential
    _assert_same(_run(config, tmp_path / "workers", workers=2), reference)


def test_ray_matches_sequential(sequential, tmp_path):
    pytest.importorskip("ray")
    config, reference = sequential
    _assert_same(_run(config, tmp_path / "ray", workers=2, backend="ray"), reference)


STOCHASTIC = """\
name: a policy that draws from the global RNGs
tasks: [Lift]
seeds: [0, 1, 2]
env: {obs_mode: state, max_episode_steps: 30}
base:
  name: noisy
  policy: {factory: "policies.demo:noisy_expert", kwargs: {noise: 0.3}}
variants:
  - {name: expert, policy: {kind: expert}}
recording: {record_steps: true}
"""


def test_a_stochastic_policy_gives_the_same_episodes_in_any_process_and_order(tmp_path):
    """numpy's and torch's global RNGs are seeded per episode: the same episodes sequentially and
    in 2 worker processes that take the units in reverse order (other RNG histories)."""
    import numpy as np

    from evaluation.backends.workers import run_processes, run_sequential
    from evaluation.run.plan import plan_units
    from evaluation.schema import TIMING_COLUMNS

    _, config = small_config(tmp_path, STOCHASTIC)
    units = plan_units(config)

    def results(iterator):
        out = {unit.key: result for unit, result in iterator}
        rows = {key: {k: v for k, v in r.row.to_record().items() if k not in TIMING_COLUMNS} for key, r in out.items()}
        actions = {key: np.stack(r.steps.column("action").to_numpy(zero_copy_only=False)[1:]) for key, r in out.items()}
        return rows, actions

    sequential_rows, sequential_actions = results(run_sequential(config, units))
    worker_rows, worker_actions = results(run_processes(config, list(reversed(units)), workers=2))
    assert sequential_rows == worker_rows
    for key, actions in sequential_actions.items():
        np.testing.assert_array_equal(actions, worker_actions[key], err_msg=key)
    # the noise is real: it moves every episode away from the expert's, differently per seed
    for seed in (0, 1, 2):
        noisy, plain = sequential_actions[f"Lift__noisy__seed{seed:06d}"], sequential_actions[f"Lift__expert__seed{seed:06d}"]
        assert not np.array_equal(noisy[:5], plain[:5])
    assert not np.array_equal(sequential_actions["Lift__noisy__seed000000"][:5], sequential_actions["Lift__noisy__seed000001"][:5])
