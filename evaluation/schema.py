"""The Parquet contracts of a run folder, declared once: ``episodes.parquet`` (one row per
episode) and the columns ``steps.parquet`` adds to the recorder's per-step table.

The episode writer (``evaluation.run.parts``), the readers (summary, report, compare) and the tests
take their columns from here; ``episode_record`` refuses a row that does not match, naming the
fields, so a renamed key fails when the first episode is written rather than at the end of a run.
"""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from policies.base import EPISODE_COUNTERS
from wrappers.metrics import METRIC_KEYS


@dataclasses.dataclass(frozen=True)
class StepSource:
    """Where a control step's action came from (one row of ``steps.parquet``: its
    ``STEP_SOURCE_COLUMNS``); the latency executors (``evaluation.run.latency``) return one per step."""

    queried: bool  # a policy query started on this step's observation
    waiting: bool  # synchronous: a query was in flight; async: no planned action was left (on_empty)
    chunk_start: bool = False  # the step executed the first action run from a newly arrived chunk


# (task, variant, seed) names an episode; ``episode`` is the seed's index in the config's list
KEY_FIELDS: tuple[pa.Field, ...] = (
    pa.field("task", pa.string()),
    pa.field("variant", pa.string()),
    pa.field("seed", pa.int64()),
    pa.field("episode", pa.int64()),
)

# jerk_ms and action_rate split at chunk seams (wrappers.metrics.*_parts): <metric>_seam + <metric>_within = <metric>
SEAM_COLUMNS: tuple[str, ...] = ("jerk_ms_seam", "jerk_ms_within", "action_rate_seam", "action_rate_within")

# One entry per variant compared with this episode's variant: that variant's policy queried on this
# episode's observations at this episode's query steps (evaluation.analysis.divergence).
TEACHER_FORCED_TYPE = pa.list_(pa.struct([
    pa.field("variant", pa.string()),
    pa.field("queries", pa.int64()),
    pa.field("action_distance", pa.float64()),  # mean over queries of the mean L2 distance over the plan
    pa.field("first_action_distance", pa.float64()),  # the same for the action executed next
]))

EPISODE_SCHEMA = pa.schema([
    *KEY_FIELDS,
    pa.field("success", pa.bool_()),
    pa.field("terminated", pa.bool_()),
    pa.field("truncated", pa.bool_()),
    pa.field("sim_unstable", pa.bool_()),
    *(pa.field(key, pa.float64()) for key in METRIC_KEYS),  # units: wrappers.metrics.METRIC_LABELS
    pa.field("episode_return", pa.float64()),
    pa.field("inference_calls", pa.int64()),
    pa.field("waiting_steps", pa.int64()),  # control steps spent waiting for a chunk (evaluation.run.latency)
    pa.field("stale_actions", pa.int64()),  # async: actions of arrived chunks dropped as out of date
    *(pa.field(counter, pa.int64()) for counter in EPISODE_COUNTERS),  # the policy's (Policy.episode_counters)
    pa.field("latency_model", pa.string()),
    pa.field("latency_mean_ms", pa.float64()),  # measured compute time per call (wall clock)
    pa.field("latency_p90_ms", pa.float64()),
    pa.field("initial_state", pa.string()),  # hash of qpos/qvel after reset: paired episodes match
    pa.field("wall_s", pa.float64()),
    *(pa.field(column, pa.float64()) for column in SEAM_COLUMNS),
    pa.field("teacher_forced", TEACHER_FORCED_TYPE),
])

# Columns of episodes.parquet that depend on wall-clock time (differ between identical runs).
TIMING_COLUMNS: tuple[str, ...] = ("latency_mean_ms", "latency_p90_ms", "wall_s")

# What steps.parquet adds to the recorder's table (wrappers.parquet_io.episode_table): the
# episode keys first, then each metric's running value, then where the step's action came from.
RUNNING_COLUMNS: tuple[str, ...] = tuple(f"running_{key}" for key in METRIC_KEYS if key != "n_steps")
STEP_SOURCE_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(StepSource))
# ... and last, short hashes (16 hex characters, string; null on the reset row) of what each step
# acted on: the observation (all arrays, its camera arrays, the others), the simulator's qpos/qvel,
# and the policy's chunk on the rows where it was queried (else null). evaluation.analysis.reproducibility
# computes them and finds the first step where two runs part (`vla-envs compare`).
HASH_COLUMNS: tuple[str, ...] = ("obs_hash", "image_hash", "state_hash", "sim_hash", "action_hash")


def episode_record(row: dict) -> pa.Table:
    """A one-row table of ``EPISODE_SCHEMA``; ``ValueError`` naming missing or unknown fields."""
    expected = set(EPISODE_SCHEMA.names)
    missing, unknown = sorted(expected - set(row)), sorted(set(row) - expected)
    if missing or unknown:
        raise ValueError(f"episode row for {row.get('task')}/{row.get('variant')}/seed {row.get('seed')}: "
                         f"missing fields {missing}, unknown fields {unknown}; expected evaluation.schema.EPISODE_SCHEMA")
    return pa.Table.from_pylist([row], schema=EPISODE_SCHEMA)
