"""Build every task of LIBERO's suites, reset it to each standard initial state and step it:

    python -m vla_envs.libero.check_all [--suites libero_spatial libero_object ...] [--steps 5]

It uses LIBERO's own environment (``OffScreenRenderEnv`` without cameras) on this project's
stack (``vla_envs.libero.installation.prepare``), so it checks the installation and the
robosuite 1.5 fixes, not this project's environment. Prints one line per task and a total;
exits 1 when a task fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from vla_envs.libero.suites import STANDARD_SUITES, SUITES, load_init_states, suite_tasks


def check_task(task, steps: int) -> tuple[int, float]:
    """(init states that reset and stepped, wall seconds) for one task."""
    from libero.libero.envs import OffScreenRenderEnv

    start = time.perf_counter()
    env = OffScreenRenderEnv(bddl_file_name=str(task.bddl_file), has_offscreen_renderer=False, use_camera_obs=False)
    try:
        states = load_init_states(task.init_states_file)
        env.seed(0)
        env.reset()
        done = 0
        for state in states:
            env.set_init_state(state)
            for _ in range(steps):
                obs, *_ = env.step(np.zeros(7))
            if not np.isfinite(obs["robot0_eef_pos"]).all():
                raise RuntimeError("non-finite end-effector position after stepping")
            done += 1
    finally:
        env.close()
    return done, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(STANDARD_SUITES), choices=sorted(SUITES))
    parser.add_argument("--steps", type=int, default=5, help="zero actions after each initial state")
    args = parser.parse_args(argv)
    start, failures, total = time.perf_counter(), 0, 0
    for suite in args.suites:
        for task in suite_tasks(suite):
            try:
                done, wall = check_task(task, args.steps)
                print(f"{SUITES[suite].title} task {task.index}: {done} init states reset and stepped "
                      f"({wall:.1f} s) {task.instruction}", flush=True)
                total += 1
            except Exception as exc:  # noqa: BLE001 - report every task, then fail
                failures += 1
                print(f"{SUITES[suite].title} task {task.index}: FAILED {type(exc).__name__}: {exc}", flush=True)
    print(f"{total} tasks passed, {failures} failed in {time.perf_counter() - start:.0f} s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
