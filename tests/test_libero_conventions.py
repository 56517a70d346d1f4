"""The ecosystem's LIBERO conventions (policies.conventions) against the clients they mirror.

openpi's: a LIBERO evaluation through `vla-envs eval` against a server built the way openpi
builds its own (openpi-client's msgpack-numpy packer over websockets' asyncio server) records
every observation map it receives; each is compared, key by key, with the map openpi's
`examples/libero/main.py` builds from LIBERO's own `OffScreenRenderEnv` driven through the same
initial state, settle steps and actions. The served episode equals the in-process one.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from policies.conventions import CONVENTIONS, ConventionName, convention, resize_with_pad
from vla_envs.libero.observations import LIBERO_STATE_LAYOUT, quat_to_axis_angle


def test_the_declared_names_are_the_conventions():
    from typing import get_args

    assert set(get_args(ConventionName)) == set(CONVENTIONS)
    with pytest.raises(ValueError, match=r"observation convention 'octo': expected one of"):
        convention("octo")


def test_resize_with_pad_equals_openpi_clients():
    from openpi_client.image_tools import resize_with_pad as openpi_resize

    rng = np.random.default_rng(0)
    for height, width in ((256, 256), (128, 200), (300, 90), (224, 224)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ours = resize_with_pad(image, 224, 224)
        assert ours.shape == (224, 224, 3) and ours.dtype == np.uint8
        assert np.array_equal(ours, openpi_resize(image, 224, 224)), (height, width)


def _openpi_quat2axisangle(quat):
    """openpi's examples/libero/main.py `_quat2axisangle`, as written there."""
    if quat[3] > 1.0:
        quat[3] = 1.0
    elif quat[3] < -1.0:
        quat[3] = -1.0
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def test_axis_angle_equals_openpis_and_leaves_its_input_alone():
    rng = np.random.default_rng(1)
    quats = rng.normal(size=(200, 4))
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats = np.vstack([quats, [0, 0, 0, 1.0], [1e-9, 0, 0, 1.0 + 1e-12], [0, 0, 1.0, 0]])
    for quat in quats:
        kept = quat.copy()
        assert quat_to_axis_angle(quat).tobytes() == _openpi_quat2axisangle(quat.copy()).tobytes()
        assert quat.tobytes() == kept.tobytes()
    assert [name for name, _ in LIBERO_STATE_LAYOUT] == ["eef_pos", "eef_axis_angle", "gripper_qpos"]


def test_a_convention_refuses_observations_it_cannot_convert():
    openpi = convention("openpi_libero")
    with pytest.raises(KeyError, match=r"reads \['libero_state'\], which the observation lacks"):
        openpi.convert({"image": np.zeros((256, 256, 3), np.uint8), "wrist_image": np.zeros((256, 256, 3), np.uint8)})
    with pytest.raises(ValueError, match=r"obs\['image'\] is uint8 \(128, 128, 3\), expected uint8 \(256, 256, 3\).*image_size: 256"):
        openpi.convert({"image": np.zeros((128, 128, 3), np.uint8), "wrist_image": np.zeros((128, 128, 3), np.uint8),
                        "libero_state": np.zeros(8)})


# ---------------------------------------------------------------------------------------------
# openpi's client, end to end


OPENPI_EVAL = """\
name: openpi LIBERO client
tasks: [LIBERO-Spatial-0]
seeds: [3]                       # LIBERO's standard initial state 3
env: {obs_mode: rgb, image_size: 256, render_quality: full, max_episode_steps: 11}
base:
  name: local
  policy: {factory: "tests.libero_policies:in_process", kwargs: {convention_name: openpi_libero}}
variants:
  - {name: served, policy: {kind: openpi, url: "ws://127.0.0.1:PORT", convention: openpi_libero, chunk_size: 8}}
execution: {schedule: open_loop, execute_steps: 5}   # openpi's replan_steps
recording: {record_steps: true}
profile: {enabled: false}
stats: {bootstrap_resamples: 100}
"""


def _openpi_elements(actions: np.ndarray, init_state: int, instruction: str, frames: list) -> list[dict]:
    """What openpi's examples/libero/main.py sends, from LIBERO's own OffScreenRenderEnv: 10
    no-op steps, then a query every 5 steps (replan_steps) while it steps ``actions``."""
    import gymnasium as gym
    from libero.libero.envs import OffScreenRenderEnv
    from openpi_client import image_tools

    import vla_envs  # noqa: F401
    from vla_envs.libero.suites import load_init_states, task
    from vla_envs.robosuite_fixes import step_like_robosuite_14

    libero_task = task("libero_spatial", 0)
    # LIBERO draws its fixtures' places (the cabinet, the stove: bodies without joints, so not in
    # the initial-state files) at every reset; they are put where the eval's env drew them
    ours = gym.make("vla_envs/LIBERO-Spatial-v0", task_id=0, init_state_from_seed=True)
    ours.reset(seed=init_state)
    ours_model = ours.unwrapped.robosuite_env.sim.model._model
    env = OffScreenRenderEnv(bddl_file_name=str(libero_task.bddl_file), camera_heights=256, camera_widths=256)
    try:
        env.seed(7)
        env.reset()
        step_like_robosuite_14(env.env)  # as this suite's LIBERO envs step (robosuite_controller="1.4")
        model = env.env.sim.model._model
        fixtures = ours_model.body_dofnum == 0
        assert (model.body_dofnum == ours_model.body_dofnum).all()
        model.body_pos[fixtures], model.body_quat[fixtures] = ours_model.body_pos[fixtures], ours_model.body_quat[fixtures]
        ours.close()
        obs = env.set_init_state(load_init_states(libero_task.init_states_file)[init_state])
        for _ in range(10):
            obs, _, _, _ = env.step([0.0] * 6 + [-1.0])
        elements = []
        for t, action in enumerate(actions):
            if t % 5 == 0:
                frames.append({key: obs[key] for key in ("agentview_image", "robot0_eye_in_hand_image")})
                img = np.ascontiguousarray(obs["agentview_image"][::-1, ::-1])
                wrist_img = np.ascontiguousarray(obs["robot0_eye_in_hand_image"][::-1, ::-1])
                elements.append({
                    "observation/image": image_tools.convert_to_uint8(image_tools.resize_with_pad(img, 224, 224)),
                    "observation/wrist_image": image_tools.convert_to_uint8(
                        image_tools.resize_with_pad(wrist_img, 224, 224)),
                    "observation/state": np.concatenate((obs["robot0_eef_pos"], _openpi_quat2axisangle(
                        obs["robot0_eef_quat"]), obs["robot0_gripper_qpos"])),
                    "prompt": str(instruction),
                })
            obs, _, _, _ = env.step(action.tolist())
        return elements
    finally:
        env.close()


def test_an_openpi_libero_eval_sends_what_openpis_client_sends(tmp_path):
    from openpi_client.image_tools import resize_with_pad as openpi_resize
    from typer.testing import CliRunner

    from cli.app import app
    from tests.libero_policies import ObservationEcho
    from tests.test_serving_openpi import _openpi_style_server

    received, replies, ports, stop = [], [], [], threading.Event()
    thread = threading.Thread(target=_openpi_style_server, args=(ObservationEcho(), ports, stop, received, replies),
                              daemon=True)
    thread.start()
    while not ports:
        thread.join(0.05)
    try:
        config = tmp_path / "openpi_libero.yaml"
        config.write_text(OPENPI_EVAL.replace("PORT", str(ports[0])))
        result = CliRunner().invoke(app, ["eval", str(config), "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
    finally:
        stop.set()

    rows = {r["variant"]: r for r in pq.read_table(tmp_path / "run" / "episodes.parquet").to_pylist()}
    from wrappers.metrics import METRIC_KEYS

    for key in (*METRIC_KEYS, "success", "inference_calls", "initial_state"):
        local, served = rows["local"][key], rows["served"][key]
        assert local == served or (local != local and served != served), key  # NaN equals NaN here
    # the served policy was also queried on the local episode's observations (teacher forcing,
    # evaluation.run.teacher_forcing): the same episode, so the same three maps
    assert rows["served"]["n_steps"] == 11 and rows["served"]["inference_calls"] == 3 and len(received) == 6
    for forced, own in zip(received[:3], received[3:]):
        assert all(np.array_equal(forced[k], own[k]) for k in own)
    received, replies = received[3:], replies[3:]

    steps = pq.read_table(tmp_path / "run" / "steps.parquet", filters=[("variant", "=", "served")]).sort_by("step")
    actions = np.asarray(steps.column("action").to_pylist()[1:], dtype=np.float32)
    assert np.array_equal(actions[:5], replies[0][:5]) and np.array_equal(actions[5:10], replies[1][:5])

    instruction = "pick up the black bowl between the plate and the ramekin and place it on the plate"
    frames: list[dict] = []
    expected = _openpi_elements(actions, init_state=3, instruction=instruction, frames=frames)
    raw_keys = {"observation/image": "agentview_image", "observation/wrist_image": "robot0_eye_in_hand_image"}
    assert len(expected) == len(received) == 3
    for index, (got, want) in enumerate(zip(received, expected)):
        assert sorted(got) == sorted(want), index
        assert got["prompt"] == want["prompt"]
        for key in ("observation/image", "observation/wrist_image"):
            assert got[key].dtype == want[key].dtype == np.uint8 and got[key].shape == want[key].shape == (224, 224, 3)
            # LIBERO's own frame (rendered at robosuite's sampling instant, as this suite's are):
            # the renderers differ at a few anti-aliased edges
            diff = np.abs(got[key].astype(int) - want[key]).max(-1)
            assert diff.mean() < 0.05 and (diff > 8).mean() < 1e-3, (index, key, diff.mean(), (diff > 8).mean())
            rotated = np.ascontiguousarray(frames[index][raw_keys[key]][::-1, ::-1])
            for wrong in (rotated[::-1], rotated[:, ::-1], rotated[::-1, ::-1]):  # any other orientation is far off
                assert np.abs(got[key].astype(int) - openpi_resize(np.ascontiguousarray(wrong), 224, 224)).mean() > 20
        state, want_state = got["observation/state"], want["observation/state"]
        assert state.dtype == want_state.dtype == np.float64 and state.shape == want_state.shape == (8,)
        np.testing.assert_array_equal(state, want_state)
