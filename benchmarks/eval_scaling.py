"""Throughput of ``vla-envs eval``: episodes per second with 1 and 2 local workers, and the cost
of the recording options, measured in one run and printed side by side.

The work: Lift in state mode, the scripted expert, a perturbed expert (a torch MLP on top, chunks
of 4) and the expert under 100 ms of simulated latency, on paired seeds. Times are wall clock
for the episodes only (``run_episodes``: process start-up and environment construction
included, the summary and report excluded), into fresh temporary folders.

    python benchmarks/eval_scaling.py [--seeds 8] [--recording-seeds 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import vla_envs  # noqa: F401  (first: sets MUJOCO_GL before mujoco picks a GL backend)
from evaluation.run.config import EvalConfig
from evaluation.runner import run_episodes

BASE = {
    "name": "eval scaling benchmark",
    "tasks": ["Lift"],
    "env": {"obs_mode": "state"},
    "base": {"name": "expert", "policy": {"kind": "expert"}},
    "variants": [
        {
            "name": "perturbed",
            "policy": {"factory": "policies.demo:perturbed_expert", "kwargs": {"chunk_size": 4, "scale": 0.2}},
            "execution": {"schedule": "open_loop", "execute_steps": 2},
        },
        {"name": "expert_100ms", "latency": {"fixed_ms": 100}},
    ],
    "profile": {"enabled": False},
}

RECORDING = {
    "metrics only": {"record_steps": False},
    "steps (default)": {"record_steps": True},
    "steps + substeps": {"record_steps": True, "record_substeps": True},
    "steps + 1 video/variant": {"record_steps": True, "videos": {"seeds": [0], "size": 128}},
}


def config(seeds: int, recording: dict | None = None) -> EvalConfig:
    data = {**BASE, "seeds": list(range(seeds))}
    if recording is not None:
        data["recording"] = recording
    return EvalConfig.model_validate(data)


def timed(cfg: EvalConfig, workers: int) -> tuple[int, float, float, int]:
    """(episodes, wall seconds, steady-state episodes/s, bytes written).

    Steady state: from each worker's first finished episode to the last one (the parts' write
    times), which leaves out process start-up, imports and environment construction.
    """
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        units, ran = run_episodes(cfg, out, workers=workers, progress=False)
        seconds = time.perf_counter() - start
        files = [p for p in Path(out).rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        done = sorted(p.stat().st_mtime for p in (Path(out) / "parts" / "episodes").glob("*.parquet"))
    assert ran == len(units)
    steady = (len(done) - workers) / (done[-1] - done[workers - 1]) if len(done) > workers else float("nan")
    return ran, seconds, steady, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=16, help="seeds for the worker scaling (3 variants each)")
    parser.add_argument("--recording-seeds", type=int, default=4, help="seeds per recording option")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")

    print(f"\nWorker scaling: {3 * args.seeds} episodes (Lift, 3 variants x {args.seeds} seeds), recording steps")
    print(f"{'workers':>8} {'episodes':>9} {'wall (s)':>9} {'episodes/s':>11} {'speed-up':>9} "
          f"{'steady episodes/s':>18} {'steady speed-up':>16}")
    rates, steady = {}, {}
    for workers in (1, 2):
        n, seconds, steady[workers], _ = timed(config(args.seeds), workers)
        rates[workers] = n / seconds
        print(f"{workers:>8} {n:>9} {seconds:>9.1f} {rates[workers]:>11.2f} {rates[workers] / rates[1]:>8.2f}x "
              f"{steady[workers]:>18.2f} {steady[workers] / steady[1]:>15.2f}x")

    if not _video_ok():
        RECORDING.pop("steps + 1 video/variant")
        print("\n(imageio-ffmpeg is not installed: the video option is skipped)")
    print(f"\nRecording options: {3 * args.recording_seeds} episodes each, 1 worker")
    print(f"{'recording':<26} {'wall (s)':>9} {'episodes/s':>11} {'vs metrics only':>16} {'written (MB)':>13}")
    reference = None
    for label, recording in RECORDING.items():
        n, seconds, _, size = timed(config(args.recording_seeds, recording), 1)
        rate = n / seconds
        reference = reference or rate
        print(f"{label:<26} {seconds:>9.1f} {rate:>11.2f} {100 * (reference / rate - 1):>+15.0f}% {size / 2**20:>13.2f}")


def _video_ok() -> bool:
    from evaluation.run.video import check_video_support

    try:
        check_video_support()
    except RuntimeError:
        return False
    return True


if __name__ == "__main__":
    main()
