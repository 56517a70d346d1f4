"""LeRobot's LIBERO convention (policies.conventions.lerobot_libero) against LeRobot's own code,
in LeRobot's environment (skipped, saying so, when it is not set up; docs/integrations.md).

The inputs a served LeRobot policy gets from a `lerobot_libero` client equal, tensor for tensor,
what LeRobot's LIBERO evaluation makes of LIBERO's raw observation of the same state
(`LiberoEnv._format_raw_obs` layout -> `preprocess_observation` -> `LiberoProcessorStep`); and a
served ACT with LIBERO's features is evaluated end to end through `vla-envs eval`.
"""

from __future__ import annotations

import subprocess
import textwrap

import numpy as np
import pyarrow.parquet as pq

from tests.lerobot_env import CHECKOUT, LEROBOT_PYTHON, needs

pytestmark = needs("lerobot.policies.factory")

COMPARE = textwrap.dedent("""
    import sys, numpy as np, torch
    sys.path.insert(0, sys.argv[2])
    from lerobot.envs.utils import preprocess_observation
    from lerobot.processor.env_processor import LiberoProcessorStep
    from policies.serving.lerobot_policy import lerobot_inputs

    data = dict(np.load(sys.argv[1]))
    # LeRobot's LiberoEnv._format_raw_obs layout, batched as its vector envs give it
    raw = {"pixels": {"image": data["agentview_image"][None], "image2": data["robot0_eye_in_hand_image"][None]},
           "robot_state": {"eef": {"pos": data["robot0_eef_pos"][None], "quat": data["robot0_eef_quat"][None],
                                   "mat": np.eye(3)[None]},
                           "gripper": {"qpos": data["robot0_gripper_qpos"][None], "qvel": np.zeros((1, 2))},
                           "joints": {"pos": np.zeros((1, 7)), "vel": np.zeros((1, 7))}}}
    theirs = LiberoProcessorStep().observation(preprocess_observation(raw))
    features = frozenset(("observation.images.image", "observation.images.image2", "observation.state"))
    message = {key.removeprefix("msg:"): data[key] for key in data if key.startswith("msg:")}
    ours = lerobot_inputs(message, {}, features, {k for k in features if "images" in k})
    for key in sorted(features):
        a, b = ours[key], theirs[key][0]
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape, (key, a.dtype, b.dtype, a.shape, b.shape)
        print(key, tuple(a.shape), float((a - b).abs().mean()), float((a - b).abs().max()))
""")


def test_lerobot_libero_inputs_equal_lerobots_own_processing_of_libero(tmp_path):
    import gymnasium as gym
    from libero.libero.envs import OffScreenRenderEnv

    import vla_envs  # noqa: F401
    from policies.conventions import convention
    from vla_envs.libero.suites import load_init_states, task
    from vla_envs.robosuite_fixes import step_like_robosuite_14

    ours = gym.make("vla_envs/LIBERO-Object-v0", task_id=1, obs_mode="rgb", image_size=256, render_quality="full",
                    settle_steps=10, init_state_from_seed=True)
    obs, _ = ours.reset(seed=4)
    ours_model = ours.unwrapped.robosuite_env.sim.model._model
    libero_task = task("libero_object", 1)
    env = OffScreenRenderEnv(bddl_file_name=str(libero_task.bddl_file), camera_heights=256, camera_widths=256)
    try:
        env.seed(0)
        env.reset()
        step_like_robosuite_14(env.env)  # as this suite's LIBERO envs step (robosuite_controller="1.4")
        fixtures = ours_model.body_dofnum == 0  # where the eval's env drew LIBERO's fixtures
        model = env.env.sim.model._model
        model.body_pos[fixtures], model.body_quat[fixtures] = ours_model.body_pos[fixtures], ours_model.body_quat[fixtures]
        raw = env.set_init_state(load_init_states(libero_task.init_states_file)[4])
        for _ in range(10):
            raw, _, _, _ = env.step([0.0] * 6 + [-1.0])
    finally:
        env.close()
        ours.close()
    message = convention("lerobot_libero").convert(obs)
    assert sorted(message) == ["observation.images.image", "observation.images.image2", "observation.state"]
    assert message["observation.state"].dtype == np.float32 and message["observation.images.image"].dtype == np.uint8
    path = tmp_path / "raw.npz"
    np.savez(path, **{k: np.asarray(raw[k]) for k in ("agentview_image", "robot0_eye_in_hand_image", "robot0_eef_pos",
                                                      "robot0_eef_quat", "robot0_gripper_qpos")},
             **{f"msg:{k}": v for k, v in message.items()})
    done = subprocess.run([LEROBOT_PYTHON, "-c", COMPARE, str(path), str(CHECKOUT)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split()[0]: [float(x) for x in line.split()[-2:]] for line in done.stdout.splitlines()}
    assert set(rows) == {"observation.images.image", "observation.images.image2", "observation.state"}
    assert rows["observation.state"][1] < 1e-6  # float32 axis-angle from float64 vs from a float32 quaternion
    for key in ("observation.images.image", "observation.images.image2"):
        mean, _ = rows[key]
        assert mean < 0.05 / 255, (key, rows[key])  # the same frames, rotated the same way


MAKE_ACT = textwrap.dedent("""
    import sys, numpy as np, torch
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    torch.manual_seed(0)
    image = PolicyFeature(FeatureType.VISUAL, (3, 256, 256))
    config = ACTConfig(
        input_features={"observation.images.image": image, "observation.images.image2": image,
                        "observation.state": PolicyFeature(FeatureType.STATE, (8,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))}, chunk_size=8, n_action_steps=8,
        device="cpu", pretrained_backbone_weights=None, dim_model=32, dim_feedforward=64, n_encoder_layers=1,
        n_decoder_layers=1, use_vae=False)
    policy = get_policy_class("act")(config)
    half = {"mean": np.full((3, 1, 1), 0.5, np.float32), "std": np.full((3, 1, 1), 0.25, np.float32)}
    stats = {"observation.images.image": half, "observation.images.image2": half,
             "observation.state": {"mean": np.zeros(8, np.float32), "std": np.ones(8, np.float32)},
             "action": {"mean": np.zeros(7, np.float32), "std": np.full(7, 0.1, np.float32)}}
    pre, post = make_pre_post_processors(config, dataset_stats=stats)
    for part in (policy, pre, post):
        part.save_pretrained(sys.argv[1])
""")

LEROBOT_EVAL = """\
name: a LeRobot policy on LIBERO
tasks: [LIBERO-Object-1]
seeds: [4]
env: {obs_mode: rgb, image_size: 256, max_episode_steps: 10}
base:
  name: act
  policy: {kind: openpi, url: "URL", convention: lerobot_libero}
execution: {schedule: open_loop, execute_steps: 8}
recording: {record_steps: true}
profile: {enabled: false}
stats: {bootstrap_resamples: 100}
"""


def test_a_served_lerobot_policy_is_evaluated_on_libero(tmp_path):
    import os

    from typer.testing import CliRunner

    from cli.app import app

    folder = tmp_path / "act"
    made = subprocess.run([LEROBOT_PYTHON, "-c", MAKE_ACT, str(folder)], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    with open(tmp_path / "server.log", "w") as stderr:
        proc = subprocess.Popen(
            [LEROBOT_PYTHON, "-m", "policies.serving.lerobot_policy", "serve", "--path", str(folder), "--port", "0"],
            stdout=subprocess.PIPE, stderr=stderr, text=True, cwd=CHECKOUT, env={**os.environ, "PYTHONPATH": str(CHECKOUT)})
    try:
        url = next(line for line in proc.stdout if line.startswith("serving ")).split(" at ")[1].strip()
        config = tmp_path / "lerobot_libero.yaml"
        config.write_text(LEROBOT_EVAL.replace("URL", url))
        result = CliRunner().invoke(app, ["eval", str(config), "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output + (tmp_path / "server.log").read_text()[-3000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    (row,) = pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()
    assert row["task"] == "LIBERO-Object-1" and row["n_steps"] == 10 and row["inference_calls"] == 2
    steps = pq.read_table(tmp_path / "run" / "steps.parquet")
    actions = np.asarray(steps.column("action").to_pylist()[1:])
    assert actions.shape == (10, 7) and np.isfinite(actions).all() and np.abs(actions).max() > 0
