"""How much decimated visual meshes change the images, and what they buy, per face budget.

For every task and both observation cameras, the same states (seeded resets, then random
end-effector motions) are rendered lean with robosuite's meshes and lean with the meshes
decimated to each face budget, at 64 and 128 px. Printed per budget: the mean absolute pixel
difference (in 1/255 units), the fraction of pixels whose largest channel difference exceeds
8/255, and the frame-time ratio (robosuite meshes / decimated), measured side by side in one run.

    python benchmarks/render_fidelity.py [--budgets 2000 1000 500 250] [--states 6]
"""

from __future__ import annotations

import argparse
import time

import vla_envs  # noqa: F401,I001  (first: sets MUJOCO_GL before mujoco picks a GL backend)
import gymnasium as gym
import numpy as np

from vla_envs.config import get_task_config
from vla_envs.rendering import CameraRenderer

TASKS = ["Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door"]
SIZES = (64, 128)
# A pixel differs visibly when its largest channel difference exceeds this (1/255 units).
VISIBLE_DIFFERENCE = 8
# The fidelity bound the face budget was chosen by (docs/rendering.md), on the mean over a set
# of images: mean absolute difference under one level in 255, and under 2 % of pixels visibly
# different.
MAD_BOUND = 1.0
VISIBLE_FRACTION_BOUND = 0.02


def image_difference(reference: np.ndarray, image: np.ndarray) -> tuple[float, float]:
    """(mean absolute difference in 1/255 units, fraction of pixels whose largest channel
    difference exceeds ``VISIBLE_DIFFERENCE``) between two uint8 (H, W, 3) images."""
    if reference.shape != image.shape or reference.ndim != 3:
        raise ValueError(f"images of shapes {reference.shape} and {image.shape}: expected two equal (H, W, 3) shapes")
    diff = np.abs(reference.astype(np.int16) - image.astype(np.int16))
    return float(diff.mean()), float(np.mean(diff.max(axis=2) > VISIBLE_DIFFERENCE))


def within_bound(mad: float, visible_fraction: float) -> bool:
    """Whether a set of images' mean MAD and mean visible fraction meet ``docs/rendering.md``'s bound."""
    return mad < MAD_BOUND and visible_fraction < VISIBLE_FRACTION_BOUND


def task_states(task: str, n_states: int):
    """(model, data) pairs at ``n_states`` distinct states: seeded resets and random motions."""
    env = gym.make(f"vla_envs/{task}-v0", obs_mode="state", max_episode_steps=-1)
    rng = np.random.default_rng(0)
    try:
        for state in range(n_states):
            env.reset(seed=state)
            for _ in range(8 * state):  # later states further from the initial pose
                env.step(rng.uniform(-0.6, 0.6, 7).astype(np.float32))
            sim = env.unwrapped.robosuite_env.sim
            yield sim.model._model, sim.data._data
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[2000, 1000, 500, 250])
    parser.add_argument("--states", type=int, default=6, help="states per task")
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    args = parser.parse_args()

    size = max(SIZES)
    reference = CameraRenderer("lean", size, size, mesh_face_budget=None)
    lean = {budget: CameraRenderer("lean", size, size, mesh_face_budget=budget) for budget in args.budgets}
    # [budget][px] -> lists of per-image figures
    mad = {b: {s: [] for s in SIZES} for b in args.budgets}
    over8 = {b: {s: [] for s in SIZES} for b in args.budgets}
    seconds = {b: {s: 0.0 for s in SIZES} for b in [None, *args.budgets]}
    faces = {b: 0 for b in args.budgets}
    per_task = {}
    for task in args.tasks:
        cameras = get_task_config(task).cameras
        task_mad = {b: [] for b in args.budgets}
        for model, data in task_states(task, args.states):
            reference.bind(model)
            for renderer in lean.values():
                renderer.bind(model)
            for camera in (cameras.image, cameras.wrist_image):
                for px in SIZES:
                    start = time.perf_counter()
                    want = reference.render(data, camera, px, px)
                    seconds[None][px] += time.perf_counter() - start
                    for budget, renderer in lean.items():
                        start = time.perf_counter()
                        got = renderer.render(data, camera, px, px)
                        seconds[budget][px] += time.perf_counter() - start
                        difference, visible = image_difference(want, got)
                        mad[budget][px].append(difference)
                        over8[budget][px].append(visible)
                        task_mad[budget].append(difference)
        for budget, renderer in lean.items():
            faces[budget] = renderer.last_decimation.faces_after
        per_task[task] = {b: float(np.mean(v)) for b, v in task_mad.items()}
        print(f"{task}: " + ", ".join(f"budget {b}: MAD {v:.2f}/255" for b, v in per_task[task].items()), flush=True)
    reference.close()
    for renderer in lean.values():
        renderer.close()

    n_images = len(args.tasks) * args.states * 2
    print(f"\n{n_images} images per size ({len(args.tasks)} tasks x {args.states} states x 2 cameras); "
          f"lean rendering, decimated vs robosuite meshes")
    header = f"{'budget':>7} {'px':>4} {'MAD /255':>9} {'max MAD':>8} {'>8/255 px':>10} {'frame speed-up':>15}"
    print(header)
    print("-" * len(header))
    for budget in args.budgets:
        for px in SIZES:
            print(f"{budget:>7} {px:>4} {np.mean(mad[budget][px]):>9.2f} {np.max(mad[budget][px]):>8.2f} "
                  f"{100 * np.mean(over8[budget][px]):>9.2f}% {seconds[None][px] / seconds[budget][px]:>14.2f}x")
    print("decimated faces in the last task's scene: " + ", ".join(f"{b}: {f}" for b, f in faces.items()))


if __name__ == "__main__":
    main()
