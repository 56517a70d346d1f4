"""Control steps per second of vla_envs/Lift-v0 next to a bare robosuite env with the same settings,
and of lean rendering with decimated meshes next to lean rendering with robosuite's meshes.

Part 1, modes: state (no cameras), rgb with lean rendering, rgb with full rendering (agentview +
eye-in-hand at 128x128). The bare robosuite env renders its own camera observations (with
robosuite's meshes); for the lean mode it gets the same lean settings (no MSAA, shadows,
reflections, skybox).

Part 2, lean rendering before and after decimation: the suite's rgb lean env at 64 and 128 px
with robosuite's meshes and every geom drawn for every camera (``mesh_face_budget=None``, no
frustum culling: lean rendering as it was before them) and with the defaults (decimated visual
meshes, geoms outside a camera's view left out).

Rounds alternate between the two envs of a pair so machine noise hits both alike; the ratio is
of medians over rounds. Resets are timed separately (robosuite rebuilds the model and, with
cameras, its GL context).

    python benchmarks/env_throughput.py [--steps 100] [--rounds 5] [--only decimation]
"""

from __future__ import annotations

import argparse
import statistics
import time

import vla_envs  # noqa: F401,I001  (first: sets MUJOCO_GL before mujoco picks a GL backend)
import gymnasium as gym
import numpy as np

from vla_envs.controllers import controller_config
from vla_envs.lean_meshes import DEFAULT_FACE_BUDGET
from vla_envs.rendering import LEAN_OFF_FLAGS

CAMERAS = ["agentview", "robot0_eye_in_hand"]
SIZE = 128


def _lean_xml(xml: str) -> str:
    """robosuite XML processor: no multi-sample anti-aliasing in the offscreen buffer."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    visual = root.find("visual")
    if visual is None:
        visual = ET.SubElement(root, "visual")
    quality = visual.find("quality")
    if quality is None:
        quality = ET.SubElement(visual, "quality")
    quality.set("offsamples", "0")
    return ET.tostring(root, encoding="unicode")


class BareRobosuite:
    """robosuite.make with the settings vla_envs uses, rendering its own camera observations."""

    def __init__(self, rgb: bool, lean: bool):
        import robosuite

        self.lean = rgb and lean
        self.env = robosuite.make(
            "Lift",
            robots="Panda",
            controller_configs=controller_config("OSC_POSE"),
            control_freq=20,
            has_renderer=False,
            has_offscreen_renderer=rgb,
            use_camera_obs=rgb,
            camera_names=CAMERAS,
            camera_heights=SIZE,
            camera_widths=SIZE,
            use_object_obs=True,
            ignore_done=True,
            hard_reset=True,
            renderer="mujoco",
        )
        if self.lean:
            self.env._xml_processors.append(_lean_xml)

    def reset(self, seed: int) -> None:
        self.env.rng = np.random.default_rng(seed)
        self._make_current()  # robosuite frees its old MjrContext in whatever context is current
        self.env.reset()
        if self.lean:
            flags = self.env.sim._render_context_offscreen.scn.flags
            for flag in LEAN_OFF_FLAGS:
                flags[flag] = 0

    def step(self, action: np.ndarray) -> None:
        self._make_current()  # robosuite renders into whatever GL context is current
        self.env.step(action)

    def _make_current(self) -> None:
        # robosuite makes its GL context current only when creating it; the suite's renderer
        # in this same process makes its own current on every frame.
        context = getattr(self.env.sim, "_render_context_offscreen", None)
        if context is not None:
            context.gl_ctx.make_current()

    def close(self) -> None:
        self.env.close()


class Suite:
    def __init__(self, rgb: bool, lean: bool, size: int = SIZE, mesh_face_budget: int | None = None,
                 cull: bool = False):
        obs_mode = "rgb" if rgb else "state"
        # Part 1 compares against robosuite drawing its own meshes, all of them: the same here.
        self.env = gym.make("vla_envs/Lift-v0", obs_mode=obs_mode, image_size=size,
                            render_quality="lean" if lean else "full", mesh_face_budget=mesh_face_budget,
                            max_episode_steps=-1)
        if rgb:
            self.env.unwrapped._renderer.cull_outside_view = cull and lean

    def reset(self, seed: int) -> None:
        self.env.reset(seed=seed)

    def step(self, action: np.ndarray) -> None:
        self.env.step(action)

    def close(self) -> None:
        self.env.close()


def _time_round(env, seed: int, actions: np.ndarray) -> tuple[float, float]:
    start = time.perf_counter()
    env.reset(seed)
    reset_s = time.perf_counter() - start
    start = time.perf_counter()
    for action in actions:
        env.step(action)
    return reset_s, len(actions) / (time.perf_counter() - start)


def measure(rgb: bool, lean: bool, steps: int, rounds: int) -> dict[str, float]:
    return measure_pair(BareRobosuite(rgb, lean), Suite(rgb, lean), steps, rounds)


def measure_pair(bare, ours, steps: int, rounds: int) -> dict[str, float]:
    """``bare`` is the baseline, ``ours`` the candidate; ratios are ours / bare."""
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 7))
    results = {"bare": ([], []), "ours": ([], [])}
    try:
        _time_round(bare, 0, actions[:5])  # warm-up: numba JIT, GL contexts
        _time_round(ours, 0, actions[:5])
        for r in range(rounds):
            order = [("bare", bare), ("ours", ours)] if r % 2 == 0 else [("ours", ours), ("bare", bare)]
            for name, env in order:
                reset_s, rate = _time_round(env, r, actions)
                results[name][0].append(reset_s)
                results[name][1].append(rate)
    finally:
        bare.close()
        ours.close()
    med = {f"{name}_{kind}": statistics.median(values[i])
           for name, values in results.items() for i, kind in enumerate(("reset_s", "steps_per_s"))}
    med["step_ratio"] = med["ours_steps_per_s"] / med["bare_steps_per_s"]
    med["reset_ratio"] = med["ours_reset_s"] / med["bare_reset_s"]
    return med


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="control steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per mode")
    parser.add_argument("--only", choices=["suite", "decimation"], help="run one part")
    args = parser.parse_args()
    if args.only != "decimation":
        compare_with_robosuite(args)
    if args.only != "suite":
        compare_decimation(args)


def compare_decimation(args) -> None:
    print(f"\nvla_envs/Lift-v0 rgb lean: before (robosuite's meshes, every geom drawn) vs after (decimated, "
          f"mesh_face_budget={DEFAULT_FACE_BUDGET}, geoms outside the view left out), "
          f"{args.rounds} rounds x {args.steps} steps; medians over rounds")
    header = f"{'size':<6} {'before steps/s':>15} {'after steps/s':>14} {'ratio':>7} {'before reset s':>15} {'after reset s':>14}"
    print(header)
    print("-" * len(header))
    for size in (64, 128):
        before = Suite(True, True, size, mesh_face_budget=None, cull=False)
        after = Suite(True, True, size, mesh_face_budget=DEFAULT_FACE_BUDGET, cull=True)
        m = measure_pair(before, after, args.steps, args.rounds)
        print(f"{size:>3} px {m['bare_steps_per_s']:>15.1f} {m['ours_steps_per_s']:>14.1f} {m['step_ratio']:>6.2f}x "
              f"{m['bare_reset_s']:>15.3f} {m['ours_reset_s']:>14.3f}", flush=True)


def compare_with_robosuite(args) -> None:
    modes = [("state", False, True), ("rgb lean", True, True), ("rgb full", True, False)]
    print(f"vla_envs/Lift-v0 vs bare robosuite Lift, OSC_POSE, 20 Hz, {args.rounds} rounds x {args.steps} steps, "
          f"cameras {CAMERAS} at {SIZE}x{SIZE}; medians over rounds")
    header = f"{'mode':<10} {'bare steps/s':>13} {'ours steps/s':>13} {'ratio':>7} {'bare reset s':>13} {'ours reset s':>13} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    rows = {}
    for label, rgb, lean in modes:
        m = measure(rgb, lean, args.steps, args.rounds)
        rows[label] = m
        print(f"{label:<10} {m['bare_steps_per_s']:>13.1f} {m['ours_steps_per_s']:>13.1f} {m['step_ratio']:>7.3f} "
              f"{m['bare_reset_s']:>13.3f} {m['ours_reset_s']:>13.3f} {m['reset_ratio']:>7.3f}", flush=True)
    print(f"ours rgb lean / ours rgb full steps/s: {rows['rgb lean']['ours_steps_per_s'] / rows['rgb full']['ours_steps_per_s']:.2f}")
    print(f"ours state / ours rgb lean steps/s:   {rows['state']['ours_steps_per_s'] / rows['rgb lean']['ours_steps_per_s']:.2f}")


if __name__ == "__main__":
    main()
