"""How often the scripted pick-and-place expert solves LIBERO tasks from their standard initial
states: one episode per (task, initial state), appended to a JSON-lines file as it finishes, so
an interrupted run resumes where it stopped and several shards can share the work.

    python -m policies.libero_expert_success [--suites libero_spatial libero_object libero_goal]
        [--init-states 0 ... 49] [--shard 0/2] [--out runs/libero_expert/pick_place.jsonl]
    python -m policies.libero_expert_success --summary --out runs/libero_expert/pick_place.jsonl

The expert is ``policies.libero_expert.LiberoPickPlaceExpert``, in the env as shipped
(``obs_mode="state"``, LIBERO's ``SETTLE_STEPS`` no-op steps after the initial state) and
within the suite's time limit, as a policy would be evaluated. Tasks whose goal it cannot
achieve (opening a drawer, turning on a stove) are skipped, and listed. Each line holds the
suite, task, initial state, success, the step it first succeeded at, the steps run and wall
seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from policies.libero_expert import UnsupportedGoal
from vla_envs.libero.suites import SETTLE_STEPS, STANDARD_SUITES, SUITES, suite_tasks

DEFAULT_OUT = Path("runs/libero_expert/pick_place.jsonl")


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected INDEX/COUNT, e.g. 0/2") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text!r}: expected 0 <= INDEX < COUNT")
    return index, count


def read_episodes(path: Path) -> dict[tuple[str, int, int], dict]:
    """The episodes recorded so far, by (suite, task, initial state); a torn last line (a run
    killed mid-write) is skipped."""
    episodes: dict[tuple[str, int, int], dict] = {}
    if not path.exists():
        return episodes
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        episodes[(row["suite"], row["task"], row["init_state"])] = row
    return episodes


def summary_table(episodes: dict[tuple[str, int, int], dict]) -> str:
    by_task: dict[tuple[str, int], list[dict]] = {}
    for (suite, task, _), row in sorted(episodes.items()):
        by_task.setdefault((suite, task), []).append(row)
    lines = ["| suite | task | episodes | successes | rate | median steps to success |", "| --- | --- | --- | --- | --- | --- |"]
    for (suite, task), rows in by_task.items():
        wins = [row["success_step"] for row in rows if row["success"]]
        median = f"{statistics.median(wins):g}" if wins else "-"
        lines.append(f"| {SUITES[suite].title} | {task} | {len(rows)} | {len(wins)} | {len(wins) / len(rows):.0%} | {median} |")
    return "\n".join(lines)


def make_env(suite: str, task: int):
    """The env the expert is measured in: the task as shipped, state observations."""
    import gymnasium as gym

    import vla_envs  # noqa: F401 - registers the ids

    return gym.make(f"vla_envs/{SUITES[suite].title}-v0", task_id=task, obs_mode="state", settle_steps=SETTLE_STEPS)


def run_episode(env, init_state: int) -> dict:
    """One expert episode from standard ``init_state``, until success or the time limit."""
    from policies.libero_expert import LiberoPickPlaceExpert

    start = time.perf_counter()
    obs, info = env.reset(seed=0, options={"init_state": init_state})
    expert = LiberoPickPlaceExpert(env)
    expert.reset(info["instruction"])
    steps, success = 0, False
    while True:
        obs, _, terminated, truncated, info = env.step(expert.act(obs)[0])
        steps += 1
        if terminated or truncated:
            success = bool(terminated)
            break
    return {"success": success, "success_step": steps if success else None, "steps": steps,
            "wall_s": round(time.perf_counter() - start, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["libero_spatial", "libero_object", "libero_goal"], choices=list(STANDARD_SUITES))
    parser.add_argument("--tasks", type=int, nargs="+", default=None, help="task indices (default: all)")
    parser.add_argument("--init-states", type=int, nargs="+", default=list(range(50)))
    parser.add_argument("--shard", type=_parse_shard, default=(0, 1), help="INDEX/COUNT of the (task, state) list")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--summary", action="store_true", help="print the table of what --out holds and exit")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary_table(read_episodes(args.out)))
        return 0

    from vla_envs.progress import episode_progress

    done = read_episodes(args.out)
    jobs = [(suite, task.index, state) for suite in args.suites for task in suite_tasks(suite)
            if args.tasks is None or task.index in args.tasks for state in args.init_states]
    index, count = args.shard
    todo = [job for position, job in enumerate(jobs) if position % count == index and job not in done]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env, env_task, unsupported = None, None, set()
    with open(args.out, "a") as handle, episode_progress(True) as progress:
        bar = progress.add_task(f"expert episodes (shard {index}/{count})", total=len(todo), last="")
        for suite, task, state in todo:
            if (suite, task) in unsupported:
                progress.update(bar, advance=1)
                continue
            if env_task != (suite, task):
                if env is not None:
                    env.close()
                env, env_task = make_env(suite, task), (suite, task)
            try:
                row = run_episode(env, state)
            except UnsupportedGoal as error:
                unsupported.add((suite, task))
                print(f"{SUITES[suite].title} task {task}: skipped, {error}", file=sys.stderr)
                progress.update(bar, advance=1)
                continue
            handle.write(json.dumps({"suite": suite, "task": task, "init_state": state, **row}) + "\n")
            handle.flush()
            progress.update(bar, advance=1,
                            last=f"{SUITES[suite].title} task {task}: {'ok' if row['success'] else 'fail'}")
    if env is not None:
        env.close()
    print(summary_table(read_episodes(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
