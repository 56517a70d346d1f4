"""``vla-envs export``: a run's episodes re-rendered bit for bit into a LeRobotDataset (loaded by
LeRobot's own loader) and a Minari dataset (``minari.load_dataset``), holding the same actions
and metrics as steps.parquet / episodes.parquet."""

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from vla_envs.cli import app

RUN = """\
name: export test
tasks: [Lift]
seeds: [0, 1]
env: {obs_mode: state, max_episode_steps: 25, image_size: 32}
base:
  name: expert
  policy: {kind: expert}
variants:
  - {name: noisy, policy: {factory: "evaluation.demo_policies:noisy_expert", kwargs: {noise: 0.3}}}
profile: {enabled: false}
stats: {bootstrap_resamples: 200}
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    (folder / "run.yaml").write_text(RUN)
    result = CliRunner().invoke(app, ["eval", str(folder / "run.yaml"), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder / "run"


def _steps(run, variant, seed):
    table = pq.read_table(run / "steps.parquet", filters=[("variant", "=", variant), ("seed", "=", seed)])
    return table.sort_by("step").to_pandas()


def test_lerobot_export_loads_with_lerobots_loader_and_matches_the_record(run, tmp_path):
    pytest.importorskip("ledataset", reason="the lerobot-dataset package (pip install -e '.[lerobot]')")
    from ledataset.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "lerobot"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "lerobot", "--out", str(out), "--obs-mode", "state+rgb"])
    assert result.exit_code == 0, result.output
    episodes = pq.read_table(run / "episodes.parquet").to_pylist()
    dataset = LeRobotDataset("vla_envs/export_test_lift", root=out / "Lift")
    assert dataset.num_episodes == 4 and dataset.fps == 20
    assert dataset.num_frames == sum(int(e["n_steps"]) for e in episodes)
    sidecar = pq.read_table(out / "Lift" / "meta" / "embodied_episodes.parquet").to_pylist()
    names = dataset.meta.features["embodied.running"]["names"]
    start = 0
    for index, record in enumerate(episodes):
        assert sidecar[index]["seed"] == record["seed"] and sidecar[index]["energy_j"] == record["energy_j"]
        steps = _steps(run, record["variant"], record["seed"])
        n = int(record["n_steps"])
        frames = [dataset[start + t] for t in range(n)]
        actions = np.stack([f["action"].numpy() for f in frames])
        np.testing.assert_array_equal(actions, np.stack(steps["action"].iloc[1:]).astype(np.float32))
        last = frames[-1]["embodied.running"].numpy()
        assert last[names.index("energy_j")] == pytest.approx(record["energy_j"], rel=1e-6)
        assert last[names.index("jerk_ms")] == pytest.approx(record["jerk_ms"], rel=1e-6)
        assert frames[0]["task"] == "pick up the red cube and lift it"
        image = frames[0]["observation.images.image"]
        assert tuple(image.shape) == (3, 32, 32)  # LeRobot's loader gives channel-first floats
        assert frames[0]["observation.environment_state"].shape[0] > frames[0]["observation.state"].shape[0]
        start += n


def test_minari_export_loads_with_minari_and_matches_the_record(run, tmp_path, monkeypatch):
    import minari

    out = tmp_path / "minari"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "minari", "--out", str(out), "--variant", "noisy"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    dataset = minari.load_dataset("vla_envs/export_test-lift-v0")
    records = [e for e in pq.read_table(run / "episodes.parquet").to_pylist() if e["variant"] == "noisy"]
    assert dataset.total_episodes == 2
    metadata = list(dataset.storage.get_episode_metadata([0, 1]))
    assert dataset.recover_environment().spec.kwargs["obs_mode"] == "state"
    for episode, meta, record in zip(dataset.iterate_episodes(), metadata, records, strict=True):
        steps = _steps(run, "noisy", record["seed"])
        assert meta["seed"] == record["seed"]
        np.testing.assert_array_equal(episode.actions, np.stack(steps["action"].iloc[1:]).astype(np.float32))
        assert episode.infos["embodied"]["energy_j"][-1] == pytest.approx(record["energy_j"], rel=1e-12)
        np.testing.assert_array_equal(episode.infos["embodied"]["action_rate"][1:], steps["running_action_rate"].iloc[1:])
        assert episode.observations["state"].shape[0] == int(record["n_steps"]) + 1


def test_a_replay_that_differs_from_the_record_stops_the_export(run, tmp_path):
    """Tamper with one recorded action: the replayed joint states no longer match."""
    import shutil

    import pyarrow as pa

    copy = tmp_path / "tampered"
    shutil.copytree(run, copy)
    table = pq.read_table(copy / "steps.parquet")
    actions = table.column("action").to_pylist()
    actions[5] = [a + 0.5 for a in actions[5]]
    table = table.set_column(table.schema.get_field_index("action"), "action", pa.array(actions))
    pq.write_table(table, copy / "steps.parquet")
    result = CliRunner().invoke(app, ["export", str(copy), "--format", "minari", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "differs from the record from step" in result.output
