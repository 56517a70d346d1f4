"""Camera observations: shape, dtype, orientation, renderer reuse across hard resets."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from robosuite.utils import camera_utils

from vla_envs.rendering import CameraRenderer

SIZE = 96


@pytest.fixture(scope="module")
def rgb_env():
    env = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=SIZE)
    yield env
    env.close()


def _is_red(pixel):
    r, g, b = (int(c) for c in pixel)
    return r > 50 and r > 1.8 * g and r > 1.8 * b  # lit or shaded faces of the red cube


def test_image_shapes_and_dtypes(rgb_env):
    obs, _ = rgb_env.reset(seed=0)
    for key in ("image", "wrist_image"):
        assert obs[key].shape == (SIZE, SIZE, 3)
        assert obs[key].dtype == np.uint8
        assert obs[key].flags["C_CONTIGUOUS"]
        assert obs[key].std() > 5  # a picture, not a blank buffer
    obs, *_ = rgb_env.step(np.zeros(7, np.float32))
    assert obs["image"].shape == (SIZE, SIZE, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_is_upright_cube_where_the_camera_projects_it(rgb_env, seed):
    """The red cube appears at the pixel the agentview camera's projection puts it; upside down it would not."""
    obs, _ = rgb_env.reset(seed=seed)
    rs = rgb_env.unwrapped.robosuite_env
    cube = rs.sim.data.body_xpos[rs.cube_body_id]
    world_to_pixel = camera_utils.get_camera_transform_matrix(rs.sim, "agentview", SIZE, SIZE)
    row, col = camera_utils.project_points_from_world_to_camera(cube[None], world_to_pixel, SIZE, SIZE)[0]
    assert _is_red(obs["image"][row, col])
    assert not _is_red(obs["image"][SIZE - 1 - row, col])  # where a flipped image would put it


def test_image_matches_mujocos_own_renderer(rgb_env):
    obs, _ = rgb_env.reset(seed=3)
    rs = rgb_env.unwrapped.robosuite_env
    model, data = rs.sim.model._model, rs.sim.data._data
    option = mujoco.MjvOption()
    option.geomgroup[0] = 0
    with mujoco.Renderer(model, SIZE, SIZE) as reference:
        reference.update_scene(data, "agentview", scene_option=option)
        for flag in (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION, mujoco.mjtRndFlag.mjRND_SKYBOX):
            reference.scene.flags[flag] = 0
        expected = reference.render()
    upright = np.abs(obs["image"].astype(int) - expected).mean()
    flipped = np.abs(obs["image"][::-1].astype(int) - expected).mean()
    assert upright < 2.0
    assert flipped > 10 * max(upright, 1.0)


def test_renderer_reuses_its_context_across_hard_resets_with_identical_pixels(rgb_env):
    rgb_env.reset(seed=4)
    renderer = rgb_env.unwrapped._renderer
    builds = renderer.context_builds
    obs, _ = rgb_env.reset(seed=5)
    rs = rgb_env.unwrapped.robosuite_env
    assert renderer.context_builds == builds  # a new MjModel, but the same assets: no re-upload
    fresh = CameraRenderer("lean", SIZE, SIZE)
    try:
        fresh.bind(rs.sim.model._model)
        np.testing.assert_array_equal(fresh.render(rs.sim.data._data, "agentview", SIZE, SIZE), obs["image"])
    finally:
        fresh.close()


def test_full_quality_differs_from_lean():
    lean = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=64)
    full = gym.make("vla_envs/Lift-v0", obs_mode="rgb", image_size=64, render_quality="full")
    try:
        a, _ = lean.reset(seed=0)
        b, _ = full.reset(seed=0)
    finally:
        lean.close()
        full.close()
    assert a["image"].shape == b["image"].shape
    assert np.abs(a["image"].astype(int) - b["image"]).mean() > 1.0  # shadows, reflections, anti-aliasing


def test_unknown_camera_is_named():
    renderer = CameraRenderer("lean", 32, 32)
    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><camera name='c'/></worldbody></mujoco>")
    data = mujoco.MjData(model)
    try:
        renderer.bind(model)
        assert renderer.render(data, "c", 32, 32).shape == (32, 32, 3)
        with pytest.raises(ValueError, match=r"camera 'nope' does not exist.*\['c'\]"):
            renderer.render(data, "nope", 32, 32)
        with pytest.raises(ValueError, match="64x64"):
            renderer.render(data, "c", 64, 64)
    finally:
        renderer.close()


def test_rendering_works_when_mujoco_was_imported_first():
    """mujoco picks its GL backend at import; the suite must still render headless with EGL."""
    import subprocess
    import sys

    code = (
        "import os; os.environ.pop('MUJOCO_GL', None)\n"
        "import mujoco\n"  # decides GLFW, which has no display here
        "import gymnasium as gym, vla_envs\n"
        "env = gym.make('vla_envs/Lift-v0', obs_mode='rgb', image_size=32)\n"
        "obs, _ = env.reset(seed=0)\n"
        "print('std', float(obs['image'].std()))\n"
        "env.close()\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split("std")[-1]) > 5


_TEXTURED_BOX_XML = """
<mujoco>
  <visual><global offwidth="64" offheight="64"/></visual>
  <asset>
    <texture name="checker" type="2d" builtin="checker" rgb1="1 1 1" rgb2="0.8 0.1 0.1" width="64" height="64"/>
    <material name="checker" texture="checker" texrepeat="4 4"/>
  </asset>
  <worldbody>
    <light pos="0 0 2"/>
    <camera name="eye" pos="0 -1 0.6" xyaxes="1 0 0 0 0.5 1"/>
    <geom type="box" size="0.3 0.3 0.05" material="checker" group="1"/>
  </worldbody>
</mujoco>
"""


def test_closing_one_renderer_leaves_anothers_textures_and_images_alone():
    """A renderer frees its GL resources in its own context: freed from whichever context was
    current (the other renderer's, which had just drawn), the other lost its texture."""
    model = mujoco.MjModel.from_xml_string(_TEXTURED_BOX_XML)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    first, second = CameraRenderer("lean", 64, 64), CameraRenderer("lean", 64, 64)
    try:
        first.bind(model)
        second.bind(model)
        before = second.render(data, "eye", 64, 64)
        assert np.abs(before.astype(int) - before[:, ::-1]).mean() > 5  # the checker shows
        first.close()
        np.testing.assert_array_equal(second.render(data, "eye", 64, 64), before)
    finally:
        first.close()
        second.close()
