"""Shared by the tests/test_eval_*.py files: a small, fast evaluation config."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from evaluation.run.config import load_eval_config
from evaluation.schema import TIMING_COLUMNS

# Lift in state mode: the expert solves it in ~31 steps, the perturbed expert (a torch MLP on
# top, chunks of 4) in ~38; the int4 variant waits 2 steps per inference (100 ms at 20 Hz).
SMALL = """\
name: small test evaluation
tasks: [Lift]
seeds: [0, 1]
env: {obs_mode: state, max_episode_steps: 80}
base:
  name: perturbed
  policy: {factory: "policies.demo:perturbed_expert", kwargs: {chunk_size: 4, scale: 0.2}}
variants:
  - {name: int4_100ms, compression: {quantization: {method: fake, bits: 4}}, latency: {fixed_ms: 100}}
  - {name: expert, policy: {kind: expert}}
execution: {schedule: open_loop, execute_steps: 2}
profile: {repeats: 3, warmup: 1}
stats: {bootstrap_resamples: 500}
"""


def small_config(directory: Path, text: str = SMALL, name: str = "small.yaml"):
    path = directory / name
    path.write_text(text)
    return path, load_eval_config(path)


def deterministic_episodes(path: Path) -> list[dict]:
    """episodes.parquet rows without the wall-clock columns."""
    return pq.read_table(path).drop_columns(list(TIMING_COLUMNS)).to_pylist()
