"""How often the scripted pick-and-place expert solves LIBERO tasks from their standard initial
states: one episode per (task, initial state), appended to a JSON-lines file as it finishes, so
an interrupted run resumes where it stopped and several shards can share the work.

    python -m vla_envs.libero.expert_success [--suites libero_spatial libero_object]
        [--init-states 0 ... 49] [--max-steps 300] [--shard 0/2] [--out runs/libero_expert/episodes.jsonl]
    python -m vla_envs.libero.expert_success --summary --out runs/libero_expert/episodes.jsonl

The expert is ``vla_envs.libero.parity.PickPlaceExpert`` (goals made of ``in``/``on``
predicates only), driven as the parity tool drives it: the env as shipped (robosuite 1.4's
stepping), ``SETTLE_STEPS`` no-ops, then the script for at most ``--max-steps`` steps. Each line
holds the suite, task, initial state, success, the step it first succeeded at and wall seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from vla_envs.libero.suites import STANDARD_SUITES, SUITES, suite_tasks

DEFAULT_OUT = Path("runs/libero_expert/episodes.jsonl")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", nargs="+", default=["libero_spatial", "libero_object"], choices=list(STANDARD_SUITES))
    parser.add_argument("--tasks", type=int, nargs="+", default=None, help="task indices (default: all)")
    parser.add_argument("--init-states", type=int, nargs="+", default=list(range(50)))
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--shard", type=_parse_shard, default=(0, 1), help="INDEX/COUNT of the (task, state) list")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--summary", action="store_true", help="print the table of what --out holds and exit")
    args = parser.parse_args(argv)
    if args.summary:
        print(summary_table(read_episodes(args.out)))
        return 0

    from vla_envs.libero.parity import AS_SHIPPED, make_env, run_ours
    from vla_envs.progress import episode_progress

    done = read_episodes(args.out)
    jobs = [(suite, task.index, state) for suite in args.suites for task in suite_tasks(suite)
            if args.tasks is None or task.index in args.tasks for state in args.init_states]
    index, count = args.shard
    todo = [job for position, job in enumerate(jobs) if position % count == index and job not in done]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    env, env_task = None, None
    with open(args.out, "a") as handle, episode_progress(True) as progress:
        bar = progress.add_task(f"expert episodes (shard {index}/{count})", total=len(todo), last="")
        for suite, task, state in todo:
            if env_task != (suite, task):
                if env is not None:
                    env.close()
                env, env_task = make_env(suite, task), (suite, task)
            start = time.perf_counter()
            episode = run_ours(env, state, None, AS_SHIPPED, expert_steps=args.max_steps)
            first = next((step for step, ok in enumerate(episode.success) if ok), None)
            row = {"suite": suite, "task": task, "init_state": state, "success": first is not None,
                   "success_step": first, "steps": len(episode.actions), "wall_s": round(time.perf_counter() - start, 2)}
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            progress.update(bar, advance=1,
                            last=f"{SUITES[suite].title} task {task}: {'ok' if first is not None else 'fail'}")
    if env is not None:
        env.close()
    print(summary_table(read_episodes(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
