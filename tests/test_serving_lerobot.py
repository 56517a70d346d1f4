"""A LeRobot policy served from LeRobot's own environment (Python >= 3.12, lerobot installed),
evaluated from this one: an ACT policy created from a config with random weights and saved with
its processors (nothing downloaded), served by ``policies.serving.lerobot_policy`` over openpi's
protocol, answers exactly what it computes in process, and runs a ``vla-envs eval`` end to end."""

import json
import os
import subprocess
import textwrap

import numpy as np
import pytest

from tests.lerobot_env import CHECKOUT, LEROBOT_PYTHON, needs

pytestmark = needs("lerobot.policies.factory")

MAKE_ACT = textwrap.dedent("""
    import sys, json, numpy as np, torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    sys.path.insert(0, sys.argv[2])
    from policies.serving.lerobot_policy import LeRobotPolicy

    torch.manual_seed(0)
    config = ACTConfig(
        input_features={"observation.images.image": PolicyFeature(FeatureType.VISUAL, (3, 64, 64)),
                        "observation.state": PolicyFeature(FeatureType.STATE, (50,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))}, chunk_size=8, n_action_steps=8,
        device="cpu", pretrained_backbone_weights=None, dim_model=64, dim_feedforward=128, n_encoder_layers=1,
        n_decoder_layers=1, use_vae=False)
    policy = get_policy_class("act")(config)
    stats = {"observation.images.image": {"mean": np.full((3, 1, 1), 0.5, np.float32), "std": np.full((3, 1, 1), 0.25, np.float32)},
             "observation.state": {"mean": np.zeros(50, np.float32), "std": np.ones(50, np.float32)},
             "action": {"mean": np.zeros(7, np.float32), "std": np.full(7, 0.1, np.float32)}}
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    folder = sys.argv[1]
    for part in (policy, pre, post):
        part.save_pretrained(folder)
    # what the saved policy answers in process, through the same adapter the server uses
    loaded = LeRobotPolicy(folder)
    rng = np.random.default_rng(0)
    obs = {"image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "wrist_image": rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
           "proprio": rng.normal(size=50).astype(np.float32)}
    loaded.reset("lift the red cube")
    np.savez(folder + "/expected.npz", chunk=loaded.act(obs), **obs)
""")


@pytest.fixture(scope="module")
def act_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("act")
    made = subprocess.run([LEROBOT_PYTHON, "-c", MAKE_ACT, str(folder), str(CHECKOUT)], capture_output=True, text=True,
                          timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def server(act_folder, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe nobody reads: LeRobot's warnings would fill it
        proc = subprocess.Popen(
            [LEROBOT_PYTHON, "-m", "policies.serving.lerobot_policy", "serve", "--path", str(act_folder), "--port", "0"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=CHECKOUT,
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
        )
    lines = []
    for line in proc.stdout:  # LeRobot prints its own lines first
        lines.append(line)
        if line.startswith("serving "):
            break
    assert lines and lines[-1].startswith("serving act (LeRobotPolicy) at ws://127.0.0.1:"), "".join(lines) + log.read_text()
    yield lines[-1].split(" at ")[1].strip()
    proc.terminate()
    proc.wait(timeout=30)


def test_the_served_lerobot_policy_answers_what_it_computes_in_process(act_folder, server):
    from policies.serving.openpi_client import OpenPIPolicy

    expected = np.load(act_folder / "expected.npz")
    policy = OpenPIPolicy(server)
    assert (policy.action_dim, policy.chunk_size) == (7, 8) and policy.metadata["lerobot_policy"] == "act"
    policy.reset("lift the red cube")
    obs = {key: expected[key] for key in ("image", "wrist_image", "proprio")}
    got = policy.act(obs)
    assert got.shape == (8, 7) and got.tobytes() == expected["chunk"].tobytes()
    policy.close()


def test_a_served_lerobot_policy_is_evaluated_end_to_end(server, tmp_path):
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from cli.app import app

    config = tmp_path / "lerobot.yaml"
    config.write_text(textwrap.dedent(f"""\
        name: served act
        tasks: [Lift]
        seeds: [0, 1]
        env: {{obs_mode: rgb, image_size: 64, max_episode_steps: 20}}
        base:
          name: act
          policy: {{kind: openpi, url: "{server}"}}
        execution: {{schedule: open_loop, execute_steps: 4}}
        profile: {{enabled: false}}
        stats: {{bootstrap_resamples: 200}}
        """))
    result = CliRunner().invoke(app, ["eval", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    assert [r["n_steps"] for r in rows] == [20.0, 20.0] and all(r["inference_calls"] == 5 for r in rows)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"
