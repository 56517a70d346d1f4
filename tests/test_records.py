"""The run folder's typed records (``evaluation.schema``). run.json (``RunRecord``): files of earlier
versions load and are written back unchanged, keys the record does not declare are kept, and a
value of the wrong type is refused naming the file and the field. An episode row (``EpisodeRow``):
the Parquet schema is its fields with the mappings spread into their columns."""

import json

import pyarrow as pa
import pytest

from evaluation.run.record import RunFolderError, read_run_record, write_run_record
from evaluation.schema import EPISODE_SCHEMA, SEAM_COLUMNS, CallRecord, EpisodeRow, RunRecord
from policies.base import EPISODE_COUNTERS
from wrappers.metrics import METRIC_KEYS

# a run.json of a version before calls, episode_settings and renderer were recorded, with a key
# this version does not know
OLD = {
    "config_path": None,
    "config": {"name": "old", "tasks": ["Lift"], "resolved_latency_ms": {"Lift/int8": 12.5}},
    "seeds": {"Lift": [0, 1]},
    "variants": ["base", "int8"],
    "backend": "local",
    "workers": 2,
    "packages": {"mujoco": "3.3.0", "ray": None},
    "git": {"commit": "abc123", "dirty": False},
    "machine": {"hostname": "h", "platform": "Linux", "processor": "x86_64", "cpu_count": 2, "python": "3.11.9"},
    "status": "complete",
    "started": "2026-01-02T03:04:05+0000",
    "episodes_planned": 4,
    "episodes_done": 4,
    "episodes_wall_s": 12,
    "profiles": {"Lift/base": {"flops_per_call": 1.0e6}, "Lift/int8": {"flops_per_call": 2.5e5}},
    "finished": "2026-01-02T03:05:00+0000",
    "step_rows": 404,
    "an_old_key": [1, 2],
}


def _write(path, data) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def test_a_run_json_of_an_earlier_version_loads_and_is_written_back_unchanged(tmp_path):
    _write(tmp_path / "run.json", OLD)
    record = read_run_record(tmp_path / "run.json")
    assert record.calls == [] and record.renderer is None and record.episode_settings is None
    assert record.git.commit == "abc123" and record.machine.cpu_count == 2 and record.episodes_wall_s == 12.0
    assert record.profiles_by_key()[("Lift", "int8")] == {"flops_per_call": 2.5e5}
    assert record.resolved_latency_ms() == {"Lift/int8": 12.5}
    assert record.model_extra == {"an_old_key": [1, 2]}
    write_run_record(record, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == OLD
    assert list(json.loads((tmp_path / "again.json").read_text())) == list(OLD)  # and in the same order


def test_a_record_writes_only_what_was_set():
    record = RunRecord(config={"name": "x"}, status="running")
    record.calls = [CallRecord(started="t", backend="local", workers=1, hostname="h", cpu_count=2)]
    record.calls[0].episodes_run = 3
    assert json.loads(record.to_json()) == {
        "config": {"name": "x"}, "status": "running",
        "calls": [{"started": "t", "backend": "local", "workers": 1, "hostname": "h", "cpu_count": 2, "episodes_run": 3}],
    }


@pytest.mark.parametrize("change, field", [
    ({"workers": "two"}, "'workers'"),
    ({"calls": [{"episodes_run": "many"}]}, "'calls.0.episodes_run'"),
    ({"git": "abc"}, "'git'"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(tmp_path, change, field):
    _write(tmp_path / "run.json", {**OLD, **change})
    with pytest.raises(RunFolderError, match=rf"invalid run record .*run.json:\n  .*run.json: field {field} = .*: expected "):
        read_run_record(tmp_path / "run.json")


def test_assigning_a_value_of_the_wrong_type_fails_where_it_is_assigned():
    record = RunRecord(config={})
    with pytest.raises(ValueError, match="episodes_done"):
        record.episodes_done = "four"


def _row(**change) -> EpisodeRow:
    fields = dict(task="Lift", variant="int4", seed=3, episode=1, success=True, terminated=True, truncated=False,
                  sim_unstable=False, metrics={key: float(i) for i, key in enumerate(METRIC_KEYS)}, episode_return=1.5,
                  inference_calls=7, waiting_steps=2, stale_actions=0,
                  counters={counter: 1 for counter in EPISODE_COUNTERS}, latency_model="frozen",
                  latency_mean_ms=3.0, latency_p90_ms=4.0, initial_state="ab" * 8, wall_s=0.5,
                  seams={column: 0.25 for column in SEAM_COLUMNS},
                  teacher_forced=[{"variant": "base", "queries": 7, "action_distance": 0.1, "first_action_distance": 0.2}])
    return EpisodeRow(**{**fields, **change})


def test_an_episode_row_is_the_schema_with_its_mappings_spread_into_columns():
    record = _row().to_record()
    assert list(record) == EPISODE_SCHEMA.names
    assert [record[key] for key in METRIC_KEYS] == [float(i) for i in range(len(METRIC_KEYS))]
    assert record["seed"] == 3 and record["jerk_ms_seam"] == 0.25 and record["teacher_forced"][0]["queries"] == 7
    assert EPISODE_SCHEMA.field("inference_calls").type == pa.int64() and EPISODE_SCHEMA.field("energy_j").type == pa.float64()
    table = pa.Table.from_pylist([record], schema=EPISODE_SCHEMA)
    assert table.to_pylist() == [record]


def test_an_episode_row_whose_mapping_lacks_a_column_is_refused_naming_it():
    metrics = {key: 0.0 for key in METRIC_KEYS if key != "energy_j"} | {"energy": 0.0}
    with pytest.raises(ValueError, match=r"Lift/int4/seed 3: field 'metrics' has keys .*'energy'.*expected .*'energy_j'"):
        _row(metrics=metrics).to_record()


def test_the_episodes_file_keeps_its_column_order():
    """The on-disk order of episodes.parquet, pinned: reordering EpisodeRow's fields would change
    every file written after it (readers of older files index by name, other tools may not)."""
    expected = ["task", "variant", "seed", "episode", "success", "terminated", "truncated", "sim_unstable",
                *METRIC_KEYS, "episode_return", "inference_calls", "waiting_steps", "stale_actions",
                *EPISODE_COUNTERS, "latency_model", "latency_mean_ms", "latency_p90_ms", "initial_state", "wall_s",
                *SEAM_COLUMNS, "teacher_forced"]
    assert EPISODE_SCHEMA.names == expected
