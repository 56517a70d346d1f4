"""Local worker processes and Ray run the same work units as the sequential run, with the
same results (wall-clock columns aside)."""

import pyarrow.parquet as pq
import pytest
from eval_helpers import deterministic_episodes, small_config

from evaluation.parts import PartStore
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
