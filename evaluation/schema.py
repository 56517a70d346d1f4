"""The contracts of a run folder, declared once: ``episodes.parquet`` (one row per episode, as
``EpisodeRow``), the columns ``steps.parquet`` adds to the recorder's per-step table, and
``run.json`` (``RunRecord``).

The episode writer (``evaluation.run.parts``), the readers (summary, report, compare) and the tests
take their columns from here; ``episode_record`` refuses a row that does not match, naming the
fields, so a renamed key fails when the first episode is written rather than at the end of a run.
The runner fills one ``RunRecord`` as the run goes; readers get it back typed
(``evaluation.run.record.read_run_record``), also from a run.json written before a field existed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
from pydantic import ConfigDict

from policies.base import EPISODE_COUNTERS
from vla_envs.strict_config import StrictConfig
from wrappers.metrics import METRIC_KEYS


@dataclasses.dataclass(frozen=True)
class StepSource:
    """Where a control step's action came from (one row of ``steps.parquet``: its
    ``STEP_SOURCE_COLUMNS``); the latency executors (``evaluation.run.latency``) return one per step."""

    queried: bool  # a policy query started on this step's observation
    waiting: bool  # synchronous: a query was in flight; async: no planned action was left (on_empty)
    chunk_start: bool = False  # the step executed the first action run from a newly arrived chunk


# jerk_ms and action_rate split at chunk seams (wrappers.metrics.*_parts): <metric>_seam + <metric>_within = <metric>
SEAM_COLUMNS: tuple[str, ...] = ("jerk_ms_seam", "jerk_ms_within", "action_rate_seam", "action_rate_within")

# One entry per variant compared with this episode's variant: that variant's policy queried on this
# episode's observations at this episode's query steps (evaluation.run.teacher_forcing).
TEACHER_FORCED_TYPE = pa.list_(pa.struct([
    pa.field("variant", pa.string()),
    pa.field("queries", pa.int64()),
    pa.field("action_distance", pa.float64()),  # mean over queries of the mean L2 distance over the plan
    pa.field("first_action_distance", pa.float64()),  # the same for the action executed next
]))


def _columns(names: tuple[str, ...], type_: pa.DataType) -> dict:
    """A field of ``EpisodeRow`` that holds several columns: a mapping with exactly these keys."""
    return {"columns": names, "type": type_}


@dataclasses.dataclass(frozen=True)
class EpisodeRow:
    """One row of ``episodes.parquet``, as an episode makes it (``evaluation.run.episode``).

    The table's columns are this record's fields in order, the mappings spread out into their
    columns (``metrics`` -> ``wrappers.METRIC_KEYS``, ``counters`` -> the policy's
    ``EPISODE_COUNTERS``, ``seams`` -> ``SEAM_COLUMNS``): ``EPISODE_SCHEMA`` is derived from it.
    Readers get the flat rows (``to_record``), as Parquet gives them.
    """

    # (task, variant, seed) names an episode; ``episode`` is the seed's index in the config's list
    task: str
    variant: str
    seed: int
    episode: int
    success: bool
    terminated: bool
    truncated: bool
    sim_unstable: bool
    # info["embodied"] at the episode's end; units: wrappers.metrics.METRIC_LABELS
    metrics: Mapping[str, float] = dataclasses.field(metadata=_columns(METRIC_KEYS, pa.float64()))
    episode_return: float
    inference_calls: int
    waiting_steps: int  # control steps spent waiting for a chunk (evaluation.run.latency)
    stale_actions: int  # async: actions of arrived chunks dropped as out of date
    # the policy's own (Policy.episode_counters)
    counters: Mapping[str, int] = dataclasses.field(metadata=_columns(EPISODE_COUNTERS, pa.int64()))
    latency_model: str
    latency_mean_ms: float  # measured compute time per call (wall clock)
    latency_p90_ms: float
    initial_state: str  # hash of qpos/qvel after reset: paired episodes match
    wall_s: float
    seams: Mapping[str, float] = dataclasses.field(metadata=_columns(SEAM_COLUMNS, pa.float64()))
    teacher_forced: list[dict] = dataclasses.field(metadata={"type": TEACHER_FORCED_TYPE})

    def to_record(self) -> dict:
        """The flat row, in ``EPISODE_SCHEMA``'s order; ``ValueError`` naming a mapping whose keys
        are not its columns."""
        record = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            columns = field.metadata.get("columns")
            if columns is None:
                record[field.name] = value
                continue
            if set(value) != set(columns):
                raise ValueError(f"episode {self.task}/{self.variant}/seed {self.seed}: field {field.name!r} has keys "
                                 f"{sorted(value)}, expected {list(columns)} (evaluation.schema.EpisodeRow)")
            record.update((column, value[column]) for column in columns)
        return record


_ARROW_TYPES = {"str": pa.string(), "int": pa.int64(), "bool": pa.bool_(), "float": pa.float64()}


def _episode_fields() -> list[pa.Field]:
    fields = []
    for field in dataclasses.fields(EpisodeRow):
        type_ = field.metadata.get("type") or _ARROW_TYPES[field.type]
        fields += [pa.field(column, type_) for column in field.metadata.get("columns", (field.name,))]
    return fields


EPISODE_SCHEMA = pa.schema(_episode_fields())
KEY_FIELDS: tuple[pa.Field, ...] = tuple(EPISODE_SCHEMA.field(name) for name in ("task", "variant", "seed", "episode"))

# Columns of episodes.parquet that depend on wall-clock time (differ between identical runs).
TIMING_COLUMNS: tuple[str, ...] = ("latency_mean_ms", "latency_p90_ms", "wall_s")

# What steps.parquet adds to the recorder's table (wrappers.parquet_io.episode_table): the
# episode keys first, then each metric's running value, then where the step's action came from.
RUNNING_COLUMNS: tuple[str, ...] = tuple(f"running_{key}" for key in METRIC_KEYS if key != "n_steps")
STEP_SOURCE_COLUMNS: tuple[str, ...] = tuple(field.name for field in dataclasses.fields(StepSource))
# ... and last, short hashes (16 hex characters, string; null on the reset row) of what each step
# acted on: the observation (all arrays, its camera arrays, the others), the simulator's qpos/qvel,
# and the policy's chunk on the rows where it was queried (else null). evaluation.run.step_hashes
# computes them, evaluation.analysis.reproducibility finds the first step where two runs part (`vla-envs compare`).
HASH_COLUMNS: tuple[str, ...] = ("obs_hash", "image_hash", "state_hash", "sim_hash", "action_hash")


# The bootstrap intervals a summary can use (``stats.interval``; ``evaluation.analysis.stats.bootstrap_ci``),
# with the words the findings page uses for each
INTERVAL_METHODS: dict[str, str] = {
    "expanded_bca": "BCa (bias-corrected and accelerated) at the small-sample expanded level",
    "bca": "BCa (bias-corrected and accelerated)",
    "percentile": "percentile",
}


def episode_record(row: dict) -> pa.Table:
    """A one-row table of ``EPISODE_SCHEMA``; ``ValueError`` naming missing or unknown fields."""
    expected = set(EPISODE_SCHEMA.names)
    missing, unknown = sorted(expected - set(row)), sorted(set(row) - expected)
    if missing or unknown:
        raise ValueError(f"episode row for {row.get('task')}/{row.get('variant')}/seed {row.get('seed')}: "
                         f"missing fields {missing}, unknown fields {unknown}; expected evaluation.schema.EPISODE_SCHEMA")
    return pa.Table.from_pylist([row], schema=EPISODE_SCHEMA)


# -- run.json -------------------------------------------------------------------------------------
# A record is filled as the run goes (so it is not frozen), read back from files of every version
# (so a key it does not declare is kept, not refused, and JSON numbers are not held to Python's
# int/float split), and written back with exactly the keys that were set: a field no run set yet
# stays out of the file, as it was out of the file it was read from.
_RECORD = ConfigDict(extra="allow", frozen=False, strict=False, validate_assignment=True)


class GitRecord(StrictConfig):
    """The checkout that ran: its commit and whether it had uncommitted changes (None: no git)."""

    model_config = _RECORD
    commit: str | None = None
    dirty: bool | None = None


class MachineRecord(StrictConfig):
    model_config = _RECORD
    hostname: str | None = None
    platform: str | None = None
    processor: str | None = None
    cpu_count: int | None = None
    python: str | None = None


class RendererRecord(StrictConfig):
    """How images were made (``used``: whether the run rendered at all)."""

    model_config = _RECORD
    MUJOCO_GL: str | None = None
    PYOPENGL_PLATFORM: str | None = None
    used: bool | None = None
    render_quality: str | None = None
    image_size: int | None = None


class CallRecord(StrictConfig):
    """One ``vla-envs eval`` call on the folder: a run filled over several ``--resume`` calls (or
    machines) can say how long it took and where."""

    model_config = _RECORD
    started: str | None = None  # %Y-%m-%dT%H:%M:%S%z
    backend: str | None = None
    workers: int | None = None
    hostname: str | None = None
    cpu_count: int | None = None
    episodes_run: int = 0
    episodes_wall_s: float = 0.0
    status: str | None = None  # set only when the call failed or was interrupted
    # with ``serving``: the servers' settings, and each server's final GET /stats (``servers``)
    serving: dict[str, Any] | None = None


class RunRecord(StrictConfig):
    """``run.json``: what is needed to reproduce or audit a run, and how far it got.

    Written when a call starts (``status: running``), when its episodes end (``episodes
    complete``, ``partial``, ``interrupted`` or ``failed: ...``) and when the run is finalized
    (``complete``, with ``profiles``, ``finished`` and ``step_rows``). Every field is optional, as
    run.json files from earlier versions lack some (``calls``, ``episode_settings``, ``renderer``).
    """

    model_config = _RECORD
    config_path: str | None = None
    config: dict[str, Any]  # EvalConfig.model_dump(mode="json"), resolved latencies included
    seeds: dict[str, list[int]] | None = None  # task -> seeds
    variants: list[str] | None = None
    backend: str | None = None
    workers: int | None = None
    packages: dict[str, str | None] | None = None  # distribution -> version (None: not installed)
    git: GitRecord | None = None
    renderer: RendererRecord | None = None
    machine: MachineRecord | None = None
    episode_settings: dict[str, Any] | None = None  # EvalConfig.episode_settings(): --resume must match
    status: str | None = None
    started: str | None = None  # the last call's start, %Y-%m-%dT%H:%M:%S%z
    episodes_planned: int | None = None
    calls: list[CallRecord] = []
    episodes_done: int | None = None
    episodes_wall_s: float | None = None  # the last call's
    profiles: dict[str, dict[str, Any]] | None = None  # "task/variant" -> policies.profiling.InferenceProfile
    finished: str | None = None
    step_rows: int | None = None

    def profiles_by_key(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The inference profiles keyed by (task, variant)."""
        return {tuple(key.split("/", 1)): value for key, value in (self.profiles or {}).items()}

    def resolved_latency_ms(self) -> dict[str, float]:
        """The run's ``profiled`` and ``{device: NAME}`` latencies, "task/variant" -> ms."""
        return dict(self.config.get("resolved_latency_ms") or {})

    def to_json(self) -> str:
        """The file's text: the keys that were set (or read), in the declared order, then any the
        record does not declare."""
        return json.dumps(self.model_dump(exclude_unset=True), indent=2, default=str) + "\n"
