"""Lean rendering's image fidelity on LIBERO's scenes, against docs/rendering.md's bound.

docs/rendering.md chose the face budget of lean rendering on the suite's five robosuite tasks:
over a set of images, decimated meshes must change the mean absolute pixel difference (MAD) by
less than one level in 255 and leave under 2 % of pixels visibly different (largest channel
difference over 8/255), both against lean rendering of the scenes' own meshes. LIBERO's scenes
hold other meshes (furniture, kitchens, scanned objects), so the bound is measured here on them,
with the same metric (``render_fidelity.image_difference``) and bound (``within_bound``).

For each chosen task of LIBERO-Spatial, -Object, -Goal and -10: standard initial states, each
rendered as set and after random end-effector motions from it; both observation cameras
(agentview, eye-in-hand), at 64 and 128 px. Every state is drawn from the env's own (model,
data) by four renderers:

- ``reference``: lean, the scene's own meshes (``mesh_face_budget=None``);
- ``lean``: the default (meshes decimated to 1000 faces, frustum culling): the bound applies to
  ``lean`` against ``reference``;
- ``lean, no culling``: must equal ``lean`` bit for bit (culling may only drop what is not seen);
- ``full``: robosuite's look; shadows, reflections and anti-aliasing differ by design, so its
  difference from ``lean`` is printed for information only, with no bound.

    python benchmarks/libero_render_fidelity.py [--suites libero_spatial ...] [--init-states 0 1 2]
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass, field

import vla_envs  # noqa: F401,I001  (first: sets MUJOCO_GL before mujoco picks a GL backend)
import gymnasium as gym
import numpy as np

from render_fidelity import MAD_BOUND, SIZES, VISIBLE_FRACTION_BOUND, image_difference, within_bound
from vla_envs.libero.suites import STANDARD_SUITES, SUITES
from vla_envs.rendering import CameraRenderer

# Two tasks per suite, of different scenes where the suite has them (LIBERO-10: a kitchen and a
# study); the first of each is the one tests/test_libero_rendering.py checks.
TASKS: dict[str, tuple[int, ...]] = {
    "libero_spatial": (0, 4),
    "libero_object": (3, 7),
    "libero_goal": (5, 9),
    "libero_10": (2, 5),
}
CAMERAS = ("agentview", "robot0_eye_in_hand")


def env_id(suite: str) -> str:
    return f"vla_envs/{SUITES[suite].title}-v0"


def libero_states(env: gym.Env, init_states: tuple[int, ...], motions: tuple[int, ...],
                  seed: int = 0) -> Iterator[tuple[str, object, object]]:
    """(label, model, data) at each standard initial state as set, then after ``motions[k]``
    further random end-effector steps from it (cumulative). Actions are drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    for index in init_states:
        env.reset(seed=seed, options={"init_state": index})
        done = 0
        for steps in (0, *motions):
            for _ in range(steps - done):
                env.step(rng.uniform(-0.6, 0.6, 7).astype(np.float32))
            done = steps
            sim = env.unwrapped.robosuite_env.sim
            yield f"init {index} + {steps} steps", sim.model._model, sim.data._data


@dataclass
class Renderers:
    """The renderers compared, each keeping its GL context across the scenes' rebuilds; ``full``
    only with ``with_full`` (binding a LIBERO scene costs about 1.5 s per renderer here)."""

    size: int
    with_full: bool = True
    reference: CameraRenderer = field(init=False)
    lean: CameraRenderer = field(init=False)
    uncut: CameraRenderer = field(init=False)
    full: CameraRenderer | None = field(init=False)

    def __post_init__(self) -> None:
        self.reference = CameraRenderer("lean", self.size, self.size, mesh_face_budget=None)
        self.lean = CameraRenderer("lean", self.size, self.size)
        self.uncut = CameraRenderer("lean", self.size, self.size, cull_outside_view=False)
        self.full = CameraRenderer("full", self.size, self.size) if self.with_full else None

    def all(self) -> tuple[CameraRenderer, ...]:
        return tuple(r for r in (self.reference, self.lean, self.uncut, self.full) if r is not None)

    def bind(self, model) -> None:
        for renderer in self.all():
            renderer.bind(model)

    def close(self) -> None:
        for renderer in self.all():
            renderer.close()


@dataclass(frozen=True)
class Comparison:
    """One image: lean against the reference (the bound's metric), culling's pixel changes, and
    lean against full (information; NaN without a full renderer)."""

    mad: float  # 1/255
    visible_fraction: float
    culling_changed_pixels: int
    mad_vs_full: float


def compare(renderers: Renderers, data, camera: str, px: int) -> Comparison:
    reference = renderers.reference.render(data, camera, px, px)
    lean = renderers.lean.render(data, camera, px, px)
    uncut = renderers.uncut.render(data, camera, px, px)
    mad, visible = image_difference(reference, lean)
    vs_full = float("nan")
    if renderers.full is not None:
        vs_full = image_difference(renderers.full.render(data, camera, px, px), lean)[0]
    return Comparison(mad, visible, int(np.any(lean != uncut, axis=2).sum()), vs_full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(STANDARD_SUITES), choices=list(STANDARD_SUITES))
    parser.add_argument("--tasks-per-suite", type=int, default=2, choices=(1, 2))
    parser.add_argument("--init-states", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--motions", type=int, nargs="+", default=[8, 16],
                        help="random steps after each initial state at which it is rendered again (cumulative)")
    args = parser.parse_args()

    renderers = Renderers(max(SIZES))
    rows = []  # (suite, task, camera, px, [Comparison])
    decimated = {}
    try:
        for suite in args.suites:
            for task_id in TASKS[suite][:args.tasks_per_suite]:
                env = gym.make(env_id(suite), task_id=task_id, obs_mode="state", max_episode_steps=-1,
                               terminate_on_success=False)
                found: dict[tuple[str, int], list[Comparison]] = {(c, px): [] for c in CAMERAS for px in SIZES}
                try:
                    for _, model, data in libero_states(env, tuple(args.init_states), tuple(args.motions)):
                        renderers.bind(model)
                        for camera in CAMERAS:
                            for px in SIZES:
                                found[camera, px].append(compare(renderers, data, camera, px))
                    stats = renderers.lean.last_decimation
                    decimated[suite, task_id] = (stats.meshes_decimated, stats.faces_before, stats.faces_after)
                finally:
                    env.close()
                for (camera, px), comparisons in found.items():
                    rows.append((suite, task_id, camera, px, comparisons))
                    mad = np.mean([c.mad for c in comparisons])
                    print(f"{SUITES[suite].title} task {task_id} {camera} {px}px: MAD {mad:.2f}/255", flush=True)
    finally:
        renderers.close()

    n_states = len(args.init_states) * (1 + len(args.motions))
    print(f"\nlean (decimated meshes, culling) vs lean with the scenes' own meshes; {n_states} states per task; "
          f"bound: mean MAD < {MAD_BOUND}/255 and mean pixels > 8/255 < {100 * VISIBLE_FRACTION_BOUND:.0f} %")
    header = (f"| suite | task | camera | px | MAD (1/255) | worst image MAD | pixels > 8/255 | pass | "
              f"culling: pixels changed | MAD vs full (info) |")
    print(header)
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for suite, task_id, camera, px, comparisons in rows:
        mad = float(np.mean([c.mad for c in comparisons]))
        visible = float(np.mean([c.visible_fraction for c in comparisons]))
        print(f"| {SUITES[suite].title} | {task_id} | {camera} | {px} | {mad:.2f} | "
              f"{max(c.mad for c in comparisons):.2f} | {100 * visible:.2f} % | "
              f"{'yes' if within_bound(mad, visible) else '**no**'} | "
              f"{sum(c.culling_changed_pixels for c in comparisons)} | "
              f"{np.mean([c.mad_vs_full for c in comparisons]):.2f} |")
    print("\nper suite (all its images, both cameras and sizes):")
    for suite in args.suites:
        chosen = [c for s, _, _, _, comparisons in rows if s == suite for c in comparisons]
        mad = float(np.mean([c.mad for c in chosen]))
        visible = float(np.mean([c.visible_fraction for c in chosen]))
        print(f"| {SUITES[suite].title} | {len(chosen)} images | MAD {mad:.2f} | pixels > 8/255 {100 * visible:.2f} % | "
              f"{'pass' if within_bound(mad, visible) else 'FAIL'} |")
    print("\nmeshes decimated (count, faces before -> after): "
          + "; ".join(f"{SUITES[s].title} {t}: {n}, {b} -> {a}" for (s, t), (n, b, a) in decimated.items()))


if __name__ == "__main__":
    main()
