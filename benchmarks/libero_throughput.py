"""Control steps per second on LIBERO-Spatial with two 128 px cameras (agentview + eye-in-hand):
LIBERO's own ``OffScreenRenderEnv`` next to ``vla_envs/LIBERO-Spatial-v0`` with lean rendering
(decimated visual meshes, frustum culling, no shadows, reflections or anti-aliasing) and with
full rendering (robosuite's look and meshes).

Every env starts from the same standard initial state and executes the same random actions.
Rounds alternate between the envs so machine noise hits all alike; the ratios are of medians over
rounds. Building and resetting are not timed.

    python benchmarks/libero_throughput.py [--task 0] [--steps 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import vla_envs  # noqa: F401,I001  (first: sets MUJOCO_GL before mujoco picks a GL backend)
import gymnasium as gym
import numpy as np

from vla_envs.libero.suites import load_init_states, task

SIZE = 128


class LiberosOwn:
    """LIBERO's ``OffScreenRenderEnv`` as its users evaluate with (cameras rendered by robosuite)."""

    def __init__(self, task_id: int):
        from vla_envs.libero.installation import prepare

        prepare()
        from libero.libero.envs import OffScreenRenderEnv

        self.task = task("libero_spatial", task_id)
        self.env = OffScreenRenderEnv(bddl_file_name=str(self.task.bddl_file), camera_heights=SIZE, camera_widths=SIZE)
        self.env.seed(0)
        self.env.reset()
        self.env.set_init_state(load_init_states(self.task.init_states_file)[0])

    def step(self, action):
        self.env.step(action)

    def close(self):
        self.env.close()


class Ours:
    def __init__(self, task_id: int, quality: str):
        self.env = gym.make("vla_envs/LIBERO-Spatial-v0", task_id=task_id, obs_mode="rgb", image_size=SIZE,
                            render_quality=quality, terminate_on_success=False, max_episode_steps=10**6)
        self.env.reset(seed=0, options={"init_state": 0})

    def step(self, action):
        self.env.step(action.astype(np.float32))

    def close(self):
        self.env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    envs = {"LIBERO OffScreenRenderEnv": LiberosOwn(args.task), "vla_envs lean": Ours(args.task, "lean"),
            "vla_envs full": Ours(args.task, "full")}
    actions = np.random.default_rng(0).uniform(-1, 1, (args.steps, 7))
    rates: dict[str, list[float]] = {name: [] for name in envs}
    for _ in range(args.rounds):
        for name, env in envs.items():
            start = time.perf_counter()
            for action in actions:
                env.step(action)
            rates[name].append(args.steps / (time.perf_counter() - start))
    base = statistics.median(rates["LIBERO OffScreenRenderEnv"])
    print(f"LIBERO-Spatial task {args.task}, two {SIZE} px cameras, {args.steps} steps x {args.rounds} rounds")
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"  {name:28s} {median:7.1f} steps/s   x{median / base:.2f} vs LIBERO's own")
    for env in envs.values():
        env.close()


if __name__ == "__main__":
    main()
