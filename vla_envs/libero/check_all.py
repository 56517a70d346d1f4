"""Build every task of LIBERO's suites, reset it to each standard initial state and step it:

    python -m vla_envs.libero.check_all [--suites libero_spatial ...] [--steps 5] [--env ours|libero]

``--env ours`` (the default) is this project's env, as ``gym.make("vla_envs/LIBERO-Spatial-v0",
task_id=k)`` builds it (no cameras, robosuite 1.4's stepping): each initial state is a
``reset(seed=i, options={"init_state": i})``, a hard reset as LIBERO's own, and the MuJoCo state
must then equal the file's row. ``--env libero`` is LIBERO's own ``OffScreenRenderEnv`` on this
project's stack, which checks the installation and the robosuite 1.5 fixes alone. Prints one line
per task under a progress bar with an ETA and a total; exits 1 when a task fails.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from vla_envs.libero.suites import STANDARD_SUITES, SUITES, load_init_states, suite_tasks

ZERO_ACTION = np.zeros(7)


def _check_ours(task, steps: int, limit: int | None = None) -> int:
    import gymnasium as gym

    import vla_envs  # noqa: F401  (registers the ids)

    env = gym.make(f"vla_envs/{SUITES[task.suite].title}-v0", task_id=task.index, obs_mode="state")
    try:
        states = env.unwrapped.init_states[:limit]
        for index, state in enumerate(states):
            env.reset(seed=index, options={"init_state": index})
            if not np.array_equal(env.unwrapped.robosuite_env.sim.get_state().flatten(), state):
                raise RuntimeError(f"init state {index}: the MuJoCo state differs from the file's row")
            for _ in range(steps):
                obs, *_ = env.step(ZERO_ACTION.astype(np.float32))
            if not np.isfinite(obs["state"]).all():
                raise RuntimeError(f"init state {index}: non-finite observation after stepping")
        return len(states)
    finally:
        env.close()


def _check_libero(task, steps: int, limit: int | None = None) -> int:
    from libero.libero.envs import OffScreenRenderEnv

    env = OffScreenRenderEnv(bddl_file_name=str(task.bddl_file), has_offscreen_renderer=False, use_camera_obs=False)
    try:
        states = load_init_states(task.init_states_file)[:limit]
        env.seed(0)
        env.reset()
        for index, state in enumerate(states):
            env.set_init_state(state)
            for _ in range(steps):
                obs, *_ = env.step(ZERO_ACTION)
            if not np.isfinite(obs["robot0_eef_pos"]).all():
                raise RuntimeError(f"init state {index}: non-finite end-effector position after stepping")
        return len(states)
    finally:
        env.close()


CHECKS = {"ours": _check_ours, "libero": _check_libero}


def check_task(task, steps: int, env: str = "ours", limit: int | None = None) -> tuple[int, float]:
    """(initial states that reset and stepped, wall seconds) for one task (its first ``limit``)."""
    start = time.perf_counter()
    done = CHECKS[env](task, steps, limit)
    return done, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from vla_envs.progress import progress_columns

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=list(STANDARD_SUITES), choices=sorted(SUITES))
    parser.add_argument("--steps", type=int, default=5, help="zero actions after each initial state")
    parser.add_argument("--env", choices=sorted(CHECKS), default="ours")
    args = parser.parse_args(argv)
    tasks = [task for suite in args.suites for task in suite_tasks(suite)]
    start, failures, states = time.perf_counter(), 0, 0
    console = Console()
    with Progress(*progress_columns("tasks"), console=console) as progress:
        bar = progress.add_task(f"LIBERO ({args.env} env)", total=len(tasks))
        for task in tasks:
            title = f"{SUITES[task.suite].title} task {task.index}"
            try:
                done, wall = check_task(task, args.steps, args.env)
                states += done
                progress.console.print(f"{title}: {done} init states reset and stepped ({wall:.1f} s) {task.instruction}")
            except Exception as exc:  # noqa: BLE001 - report every task, then fail
                failures += 1
                progress.console.print(f"{title}: FAILED {type(exc).__name__}: {exc}")
            progress.advance(bar)
    console.print(f"{len(tasks) - failures} tasks passed ({states} initial states), {failures} failed "
                  f"in {time.perf_counter() - start:.0f} s ({args.env} env)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
