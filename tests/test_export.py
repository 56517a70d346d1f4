"""``vla-envs export``: a run's episodes re-rendered bit for bit into a LeRobotDataset (loaded by
LeRobot's own loader) and a Minari dataset (``minari.load_dataset``), holding the same actions
and metrics as steps.parquet / episodes.parquet."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli.app import app

RUN = """\
name: export test
tasks: [Lift]
seeds: [0, 1]
env: {obs_mode: state, max_episode_steps: 25, image_size: 32}
base:
  name: expert
  policy: {kind: expert}
variants:
  - {name: noisy, policy: {factory: "policies.demo:noisy_expert", kwargs: {noise: 0.3}}}
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


from tests.lerobot_env import LEROBOT_PYTHON, needs  # noqa: E402

NEEDS_LEROBOT_DATASETS = needs("lerobot.datasets.lerobot_dataset")

LOAD_WITH_LEROBOT = """
import sys, json
import numpy as np
try:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
except ImportError:
    from ledataset.datasets.lerobot_dataset import LeRobotDataset
root, repo_id, out = sys.argv[1:4]
ds = LeRobotDataset(repo_id, root=root)
frames = [ds[i] for i in range(ds.num_frames)]
np.savez(out, action=np.stack([f["action"].numpy() for f in frames]),
         running=np.stack([f["embodied.running"].numpy() for f in frames]),
         episode_index=np.array([int(f["episode_index"]) for f in frames]),
         image=np.stack([f["observation.images.image"].numpy() for f in frames[:2]]),
         state=frames[0]["observation.state"].numpy(), environment_state=frames[0]["observation.environment_state"].numpy())
print(json.dumps({"num_episodes": ds.num_episodes, "fps": ds.fps, "tasks": sorted({f["task"] for f in frames}),
                  "names": ds.meta.features["embodied.running"]["names"]}))
"""


@NEEDS_LEROBOT_DATASETS
def test_lerobot_export_loads_with_lerobots_loader_and_matches_the_record(run, tmp_path):
    """Written by LeRobot's writer in LeRobot's environment (fed through a pipe), loaded there by
    LeRobot's LeRobotDataset: the same actions as steps.parquet, the same final metrics as
    episodes.parquet, the instruction as the task string, images of the requested size."""
    import json
    import subprocess

    out = tmp_path / "lerobot"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "lerobot", "--out", str(out), "--obs-mode",
                                      "state+rgb", "--lerobot-python", LEROBOT_PYTHON])
    assert result.exit_code == 0, result.output
    loaded = subprocess.run([LEROBOT_PYTHON, "-c", LOAD_WITH_LEROBOT, str(out / "lift"), "vla_envs/export_test_lift",
                             str(tmp_path / "loaded.npz")], capture_output=True, text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    meta = json.loads(loaded.stdout.strip().splitlines()[-1])
    data = np.load(tmp_path / "loaded.npz")
    episodes = pq.read_table(run / "episodes.parquet").to_pylist()
    assert meta["num_episodes"] == 4 and meta["fps"] == 20
    assert meta["tasks"] == ["pick up the red cube and lift it off the table"]
    assert len(data["action"]) == sum(int(e["n_steps"]) for e in episodes)
    assert data["image"].shape == (2, 3, 32, 32)  # LeRobot's loader gives channel-first float images
    assert data["environment_state"].shape[0] > data["state"].shape[0]  # state+rgb: state and proprio
    sidecar = pq.read_table(out / "lift" / "meta" / "embodied_episodes.parquet").to_pylist()
    names = meta["names"]
    for index, record in enumerate(episodes):
        assert (sidecar[index]["variant"], sidecar[index]["seed"]) == (record["variant"], record["seed"])
        assert sidecar[index]["energy_j"] == record["energy_j"]
        rows = data["episode_index"] == index
        steps = _steps(run, record["variant"], record["seed"])
        np.testing.assert_array_equal(data["action"][rows], np.stack(steps["action"].iloc[1:]).astype(np.float32))
        last = data["running"][rows][-1]
        assert last[names.index("energy_j")] == pytest.approx(record["energy_j"], rel=1e-6)
        assert last[names.index("jerk_ms")] == pytest.approx(record["jerk_ms"], rel=1e-6)


def test_lerobot_export_without_lerobot_says_how_to_get_it(run, tmp_path, monkeypatch):
    monkeypatch.delenv("VLA_ENVS_LEROBOT_PYTHON", raising=False)
    try:
        from evaluation.export.lerobot_writer import lerobot_dataset_class

        lerobot_dataset_class()
        pytest.skip("LeRobot imports in this environment")
    except Exception:  # noqa: BLE001
        pass
    result = CliRunner().invoke(app, ["export", str(run), "--format", "lerobot", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--lerobot-python" in result.output


def test_minari_export_loads_with_minari_and_matches_the_record(run, tmp_path, monkeypatch):
    import minari

    out = tmp_path / "minari"
    result = CliRunner().invoke(app, ["export", str(run), "--format", "minari", "--out", str(out), "--variant", "noisy"])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(out))
    dataset = minari.load_dataset("vla_envs/export_test-run-lift-v0")  # <config>-<run folder>-<task>
    records = [e for e in pq.read_table(run / "episodes.parquet").to_pylist() if e["variant"] == "noisy"]
    assert dataset.total_episodes == 2
    metadata = list(dataset.storage.get_episode_metadata([0, 1]))
    assert dataset.recover_environment().spec.kwargs["obs_mode"] == "state"
    started = json.loads((run / "run.json").read_text())["started"]
    for episode, meta, record in zip(dataset.iterate_episodes(), metadata, records, strict=True):
        steps = _steps(run, "noisy", record["seed"])
        assert meta["seed"] == record["seed"]
        assert (meta["run"], meta["run_started"], meta["task"], meta["variant"]) == ("run", started, "Lift", "noisy")
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


def test_joint_state_recorder_files_export_too(tmp_path, monkeypatch):
    """Episodes a user recorded with JointStateRecorder(out_dir=...) around gym.make: replayed from
    the metadata's env settings and seed, exported to Minari with the same actions and metrics."""
    import gymnasium as gym
    import minari

    import vla_envs  # noqa: F401
    from policies.experts import expert_for_task
    from wrappers import EmbodiedCost, JointStateRecorder

    env = JointStateRecorder(EmbodiedCost(gym.make("vla_envs/Lift-v0", obs_mode="state", max_episode_steps=15)),
                             out_dir=tmp_path / "recorded")
    expert = expert_for_task("Lift", env)
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(expert.act(obs)[0])
            done = terminated or truncated
    env.close()
    result = CliRunner().invoke(app, ["export", str(tmp_path / "recorded"), "--format", "minari", "--out",
                                      str(tmp_path / "minari")])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    dataset = minari.load_dataset("vla_envs/recorded-lift_v0-v0")
    from wrappers.parquet_io import read_episode

    files = sorted((tmp_path / "recorded").glob("*.parquet"))
    records = [read_episode(f) for f in files]
    assert dataset.total_episodes == 2
    metadata = list(dataset.storage.get_episode_metadata([0, 1]))
    assert [(m["file"], m["env_id"], m["seed"]) for m in metadata] == [
        (file.name, "vla_envs/Lift-v0", seed) for file, seed in zip(files, (3, 4))]
    for episode, record in zip(dataset.iterate_episodes(), records, strict=True):
        np.testing.assert_array_equal(episode.actions, record.action.astype(np.float32))
        assert episode.infos["embodied"]["energy_j"][-1] == pytest.approx(record.metadata["metrics"]["energy_j"], rel=1e-12)


def test_recorded_episodes_ended_by_a_reset_or_close_export_too(tmp_path, monkeypatch):
    """A loop that stops after a fixed number of steps and resets: the replay ends those episodes
    where the recording did, not at a stale episode of the replay env."""
    import gymnasium as gym
    import minari

    import vla_envs  # noqa: F401
    from wrappers import EmbodiedCost, JointStateRecorder
    from wrappers.parquet_io import read_episode

    env = JointStateRecorder(EmbodiedCost(gym.make("vla_envs/Lift-v0", obs_mode="state", max_episode_steps=15)),
                             out_dir=tmp_path / "recorded")
    env.action_space.seed(0)
    for seed in (5, 6):
        env.reset(seed=seed)
        for _ in range(4 + seed - 5):
            env.step(env.action_space.sample())
    env.close()
    records = [read_episode(f) for f in sorted((tmp_path / "recorded").glob("*.parquet"))]
    assert [r.metadata["end_reason"] for r in records] == ["reset", "close"]
    result = CliRunner().invoke(app, ["export", str(tmp_path / "recorded"), "--format", "minari", "--out",
                                      str(tmp_path / "minari")])
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    episodes = list(minari.load_dataset("vla_envs/recorded-lift_v0-v0").iterate_episodes())
    assert [len(e.actions) for e in episodes] == [4, 5]
    for episode, record in zip(episodes, records, strict=True):
        np.testing.assert_array_equal(episode.actions, record.action.astype(np.float32))
