"""LIBERO runs out as LeRobotDatasets with the published LIBERO datasets' features
(HuggingFaceVLA/libero: what LeRobot's LIBERO evaluation feeds a model), replayed bit for bit."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from evaluation.export.lerobot_format import observation_frame
from tests.lerobot_env import LEROBOT_PYTHON
from tests.test_export import NEEDS_LEROBOT_DATASETS
from cli.app import app

LIBERO_FEATURES = ["observation.images.image", "observation.images.image2", "observation.state"]


def test_a_libero_observation_becomes_the_published_libero_features():
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "proprio": rng.normal(size=39).astype(np.float32), "libero_state": rng.normal(size=8)}
    frame = observation_frame(obs)
    assert sorted(frame) == LIBERO_FEATURES
    # LIBERO's raw frame is this suite's image upside down; the datasets hold it rotated 180 degrees
    np.testing.assert_array_equal(frame["observation.images.image"], obs["image"][::-1][::-1, ::-1])
    np.testing.assert_array_equal(frame["observation.images.image2"], obs["wrist_image"][:, ::-1])
    assert frame["observation.state"].dtype == np.float32
    np.testing.assert_array_equal(frame["observation.state"], obs["libero_state"].astype(np.float32))
    # the suite's own tasks keep their features
    assert sorted(observation_frame({k: obs[k] for k in ("image", "wrist_image", "proprio")})) == [
        "observation.images.image", "observation.images.wrist_image", "observation.state"]


RUN = """\
name: libero export test
tasks: [LIBERO-Spatial-0]
seeds: [0]
env: {obs_mode: state, max_episode_steps: 6, image_size: 64}
base:
  name: echo
  policy: {factory: "tests.libero_policies:ObservationEcho"}
recording: {record_steps: true}
profile: {enabled: false}
stats: {bootstrap_resamples: 100}
"""

LOAD = """
import sys, json
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(sys.argv[2], root=sys.argv[1])
frames = [ds[i] for i in range(ds.num_frames)]
np.savez(sys.argv[3], action=np.stack([f["action"].numpy() for f in frames]),
         state=np.stack([f["observation.state"].numpy() for f in frames]))
print(json.dumps({"features": {k: list(v["shape"]) for k, v in ds.meta.features.items()}, "tasks": sorted({f["task"] for f in frames}),
                  "image": list(frames[0]["observation.images.image"].shape)}))
"""


@NEEDS_LEROBOT_DATASETS
def test_a_libero_run_exports_with_libero_features_and_loads_in_lerobot(tmp_path):
    (tmp_path / "run.yaml").write_text(RUN)
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "run.yaml"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "lerobot"
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--format", "lerobot", "--out", str(out),
                                      "--obs-mode", "rgb", "--lerobot-python", LEROBOT_PYTHON])
    assert result.exit_code == 0, result.output  # the replay matched the recorded episode
    (folder,) = [p for p in out.iterdir() if p.is_dir()]
    loaded = subprocess.run([LEROBOT_PYTHON, "-c", LOAD, str(folder), f"vla_envs/{folder.name}", str(tmp_path / "l.npz")],
                            capture_output=True, text=True, timeout=600)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    meta = json.loads(loaded.stdout.strip().splitlines()[-1])
    assert {k: meta["features"][k] for k in LIBERO_FEATURES + ["action"]} == {
        "observation.images.image": [64, 64, 3], "observation.images.image2": [64, 64, 3],
        "observation.state": [8], "action": [7]}
    assert meta["image"] == [3, 64, 64]
    assert meta["tasks"] == ["pick up the black bowl between the plate and the ramekin and place it on the plate"]
    data = np.load(tmp_path / "l.npz")
    steps = pq.read_table(tmp_path / "run" / "steps.parquet").sort_by("step")
    np.testing.assert_array_equal(data["action"], np.stack(steps.column("action").to_pylist()[1:]).astype(np.float32))
    assert data["state"].shape == (6, 8) and np.isfinite(data["state"]).all()
