"""Lean rendering on LIBERO's scenes keeps docs/rendering.md's fidelity bound, one task per
standard suite, and frustum culling changes no pixel there.

The metric and the bound are the benchmark's own (``benchmarks/render_fidelity.py``;
``benchmarks/libero_render_fidelity.py`` prints the full per-suite table): the env's own camera
observations (lean: decimated meshes, culling), at standard initial state 0 as set and after 8
random end-effector steps, both cameras, against lean rendering of the scene's own meshes;
mean absolute difference under 1/255 and under 2 % of pixels visibly different, over each
suite's images. The images are the shared envs' 64 px observations (``libero_envs``), so only
the two comparison renderers upload each scene.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

from vla_envs.rendering import CameraRenderer  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
PX = 64  # conftest.LIBERO_ENV_KWARGS["image_size"]


@pytest.fixture(scope="module")
def bench():
    """``benchmarks/libero_render_fidelity.py`` (which imports its sibling ``render_fidelity``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(BENCHMARKS))
        import libero_render_fidelity
    return libero_render_fidelity


@pytest.fixture(scope="module")
def renderers():
    """The scene's own meshes (the bound's reference), and lean without culling."""
    reference = CameraRenderer("lean", PX, PX, mesh_face_budget=None)
    uncut = CameraRenderer("lean", PX, PX, cull_outside_view=False)
    yield reference, uncut
    reference.close()
    uncut.close()


@pytest.mark.parametrize("suite", ["libero_spatial", "libero_object", "libero_goal", "libero_10"])
def test_lean_images_of_each_suite_are_within_the_fidelity_bound(bench, renderers, libero_envs, suite):
    from conftest import LIBERO_ENV_KWARGS
    from vla_envs.libero.suites import SUITES

    assert LIBERO_ENV_KWARGS["image_size"] == PX
    reference, uncut = renderers
    task_id = bench.TASKS[suite][0]
    env = libero_envs.get(SUITES[suite].title, task_id)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0, options={"init_state": 0})
    differences = []
    for steps in (0, 8):
        for _ in range(steps):
            obs, *_ = env.step(rng.uniform(-0.6, 0.6, 7).astype(np.float32))
        sim = env.unwrapped.robosuite_env.sim
        reference.bind(sim.model._model)
        uncut.bind(sim.model._model)
        data = env.unwrapped._camera_data()  # what the observation was rendered from (robosuite's sample instant)
        for key, camera in (("image", "agentview"), ("wrist_image", "robot0_eye_in_hand")):
            # culling may only leave out what the camera cannot see
            np.testing.assert_array_equal(obs[key], uncut.render(data, camera, PX, PX), err_msg=camera)
            differences.append(bench.image_difference(reference.render(data, camera, PX, PX), obs[key]))
    assert env.unwrapped._renderer.last_decimation.meshes_decimated > 0  # the observations use decimated meshes
    mad, visible = np.mean(differences, axis=0)
    print(f"{SUITES[suite].title} task {task_id}: MAD {mad:.2f}/255, {100 * visible:.2f} % of pixels > 8/255")
    assert bench.within_bound(mad, visible), (mad, visible)
    assert all(difference[0] > 0 for difference in differences)  # decimation shows at all: the check can fail


def test_the_metric_and_the_bound_on_images_with_known_differences(bench):
    """MAD is in 1/255 per channel; a pixel counts as visibly different when its largest channel
    moves more than 8 levels; the bound is strict on both."""
    render_fidelity = bench.image_difference.__module__
    assert render_fidelity == "render_fidelity"  # the benchmark reuses the one metric, not a copy
    reference = np.zeros((10, 10, 3), np.uint8)
    image = reference.copy()
    image[0, :, 0] = 9  # 10 pixels, one channel each, 9 levels: visibly different
    image[1, :, :] = 8  # 10 pixels, all channels, 8 levels: not visibly different
    mad, visible = bench.image_difference(reference, image)
    assert mad == pytest.approx((10 * 9 + 30 * 8) / 300) and visible == pytest.approx(0.10)
    assert bench.within_bound(0.99, 0.0199) and not bench.within_bound(1.0, 0.0) and not bench.within_bound(0.0, 0.02)
    with pytest.raises(ValueError, match="expected two equal"):
        bench.image_difference(reference, image[:5])
