"""Hostile or careless inputs from the security and data-loss probe: checkpoints, run folders and
configs that are not what they claim. Checkpoints and run folders are data and never run code; a
bad input exits 2 with one line naming the file, the field and what was expected, never a
traceback, and is never counted as something it is not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from cli.app import app
from evaluation.run.config import ExpertPolicySpec, FactoryPolicySpec, load_eval_config
from evaluation.run.record import RunFolderError, read_run
from policies.residual import RESIDUAL_METADATA_KEY
from vla_envs.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
SHIPPED_RESIDUAL = REPO / "policies" / "finetuned" / "lift_expert_residual.safetensors"


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    return " ".join(result.output.split())  # rich wraps long lines


# -- a residual checkpoint's header is data ---------------------------------------------------
def _residual_with_base(tmp_path: Path, base_policy) -> Path:
    with safe_open(str(SHIPPED_RESIDUAL), framework="pt") as handle:
        metadata = dict(handle.metadata())
    fields = json.loads(metadata[RESIDUAL_METADATA_KEY])
    fields["base_policy"] = base_policy
    path = tmp_path / "residual.safetensors"
    save_file(load_file(str(SHIPPED_RESIDUAL)), str(path), metadata={RESIDUAL_METADATA_KEY: json.dumps(fields)})
    return path


def _eval_config(tmp_path: Path, policy: dict) -> Path:
    """A one-episode Lift config whose base is ``policy``."""
    config = {"tasks": ["Lift"], "seeds": [0], "env": {"obs_mode": "state", "max_episode_steps": 5},
              "base": {"name": "base", "policy": policy}, "profile": {"enabled": False}}
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _residual_eval_config(tmp_path: Path, checkpoint: Path, base: dict | None = None) -> Path:
    return _eval_config(tmp_path, {"kind": "residual", "checkpoint": str(checkpoint), **({"base": base} if base else {})})


def test_a_residual_header_that_names_code_is_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    checkpoint = _residual_with_base(tmp_path, {"factory": "subprocess:getoutput", "kwargs": {"cmd": f"touch {marker}"}})
    config = _residual_eval_config(tmp_path, checkpoint)
    output = _one_line_error(_cli("eval", str(config), "--out", str(tmp_path / "run")))
    assert "a weights file never names code" in output and "subprocess:getoutput" in output
    assert not marker.exists()
    assert not (tmp_path / "run").exists()


def test_the_configs_base_is_used_and_the_headers_is_not(tmp_path):
    marker = tmp_path / "PWNED"
    checkpoint = _residual_with_base(tmp_path, {"factory": "subprocess:getoutput", "kwargs": {"cmd": f"touch {marker}"}})
    config = load_eval_config(_residual_eval_config(tmp_path, checkpoint, base={"kind": "expert"}))
    assert config.base.policy.base_spec() == ExpertPolicySpec(kind="expert")
    result = _cli("eval", str(_residual_eval_config(tmp_path, checkpoint, base={"kind": "expert"})),
                  "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert not marker.exists()


@pytest.mark.parametrize("base_policy, accepted", [
    ({"kind": "expert"}, True),
    ({"factory": "policies.tinyvla:load_reference", "kwargs": {}}, True),
    ({"factory": "policies.tinyvla:load_reference", "kwargs": {"name": "tinyvla_smooth"}}, True),
    # a path in the header would point the loader anywhere; the shipped names only
    ({"factory": "policies.tinyvla:load_reference", "kwargs": {"directory": "/tmp"}}, False),
    ({"factory": "policies.tinyvla:load_reference", "kwargs": {"name": "../../x"}}, False),
    ({"factory": "policies.demo:perturbed_expert", "kwargs": {}}, False),
    ({"kind": "expert", "extra": 1}, False),
    ("expert", False),
])
def test_only_declared_bases_are_rebuilt_from_a_header(tmp_path, base_policy, accepted):
    checkpoint = _residual_with_base(tmp_path, base_policy)
    path = _residual_eval_config(tmp_path, checkpoint)
    if accepted:
        spec = load_eval_config(path, check_imports=False).base.policy.base_spec()
        assert isinstance(spec, ExpertPolicySpec | FactoryPolicySpec)
    else:
        with pytest.raises(ConfigError, match="give the base in the config"):
            load_eval_config(path, check_imports=False)


def test_a_residual_that_is_not_safetensors_exits_2(tmp_path):
    checkpoint = tmp_path / "residual.safetensors"
    checkpoint.write_bytes(b"\x00garbage" * 10)
    output = _one_line_error(_cli("eval", str(_residual_eval_config(tmp_path, checkpoint)), "--out", str(tmp_path / "r")))
    assert "is not a safetensors file" in output and "base.policy.residual.checkpoint" in output


# -- eval configs that only fail once something runs ------------------------------------------
def test_a_factory_that_returns_no_policy_exits_2_naming_the_variant(tmp_path):
    config = _eval_config(tmp_path, {"factory": "builtins:dict"})
    output = _one_line_error(_cli("eval", str(config), "--out", str(tmp_path / "run")))
    assert "variant 'base' on Lift" in output and "returned a dict" in output


def test_an_openpi_server_that_is_not_there_exits_2(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _eval_config(tmp_path, {"kind": "openpi", "url": f"ws://127.0.0.1:{port}", "timeout_s": 5})
    output = _one_line_error(_cli("eval", str(config), "--out", str(tmp_path / "run")))
    assert "variant 'base' on Lift" in output


def test_a_binary_config_exits_2(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_bytes(b"tasks: [Lift]\n\xff\xfe\x00\x01")
    output = _one_line_error(_cli("eval", str(config)))
    assert "is not UTF-8 text" in output and str(config) in output


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(episodes=True), "episodes"),
    (lambda c: c.update(seeds={"start": True}), "seeds"),
    (lambda c: c["env"].update(image_size=True), "env.image_size"),
    (lambda c: c["profile"].update(repeats=2.0), "profile.repeats"),
])
def test_a_boolean_or_float_is_not_taken_for_a_count(tmp_path, edit, message):
    config = {"tasks": ["Lift"], "episodes": 2, "seeds": {"start": 0}, "env": {"obs_mode": "state"},
              "base": {"policy": {"kind": "expert"}}, "profile": {"enabled": False}}
    edit(config)
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=message):
        load_eval_config(path)


# -- finetune configs: values, not only names ---------------------------------------------------
def _finetune_config(tmp_path: Path, edit) -> Path:
    config = {"task": "Lift", "env": {"obs_mode": "state", "max_episode_steps": 40},
              "base": {"policy": {"kind": "expert"}}, "residual": {"scale": [0.5, 0.5, 0.5, 0, 0, 0, 0]},
              "reward": "finetune_smooth",
              "algorithm": {"name": "PPO", "hyperparameters": {"n_steps": 64, "batch_size": 32, "n_epochs": 1}},
              "training": {"total_steps": 128}}
    edit(config)
    path = tmp_path / "ft.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["algorithm"]["hyperparameters"].update(batch_size=0), "batch_size = 0: expected an integer >= 1"),
    (lambda c: c["algorithm"]["hyperparameters"].update(learning_rate=-1), "learning_rate = -1: expected a number > 0"),
    (lambda c: c["algorithm"]["hyperparameters"].update(n_steps="abc"), "n_steps = 'abc': expected an integer >= 2"),
    (lambda c: c["algorithm"]["hyperparameters"].update(gamma=5), "gamma = 5: expected a number from 0 to 1"),
    (lambda c: c["residual"].update(scale=[0.5, 0.5]), r"residual.scale lists 2 numbers, expected one number or 7"),
    (lambda c: c["env"].update(controller="JOINT_VELOCITY"), r"residual.scale lists 7 numbers, expected one number or 8"),
])
def test_finetune_values_are_checked_when_the_config_loads(tmp_path, edit, message):
    from finetuning.config import load_finetune_config

    with pytest.raises(ConfigError, match=message):
        load_finetune_config(_finetune_config(tmp_path, edit))


def test_finetune_on_a_cuda_device_this_machine_lacks_exits_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    config = _finetune_config(tmp_path, lambda c: c["training"].update(device="cuda"))
    output = _one_line_error(_cli("finetune", str(config), "--out", str(tmp_path / "ft")))
    assert "device 'cuda': this machine has 0 CUDA device(s)" in output
    assert not (tmp_path / "ft").exists()


# -- run folders are data --------------------------------------------------------------------
TINY_RUN = """\
name: tiny
tasks: [Lift]
seeds: [0, 1, 2]
env: {obs_mode: state, max_episode_steps: 40}
base: {name: expert, policy: {kind: expert}}
variants:
  - {name: noisy, policy: {factory: "policies.demo:noisy_expert", kwargs: {noise: 0.3}}}
profile: {enabled: false}
stats: {bootstrap_resamples: 200}
"""


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "tiny.yaml").write_text(TINY_RUN)
    result = _cli("eval", str(folder / "tiny.yaml"), "--out", str(folder / "run"))
    assert result.exit_code == 0, result.output
    return folder / "run"


def _copy(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    return copy


def test_an_episode_held_twice_is_refused_not_counted_twice(finished_run, tmp_path):
    copy = _copy(finished_run, tmp_path)
    table = pq.read_table(copy / "episodes.parquet")
    pq.write_table(pa.concat_tables([table, table.slice(0, 2)]), copy / "episodes.parquet")
    with pytest.raises(RunFolderError, match=r"holds 2 episode\(s\) more than once \(e.g. Lift/expert seed 0\)"):
        read_run(copy)
    for args in (["report", str(copy)], ["compare", str(finished_run), str(copy), "--out", str(tmp_path / "c")],
                 ["findings", str(copy), "--output", str(tmp_path / "f.md")]):
        assert "more than once" in _one_line_error(_cli(*args)), args
    assert not (tmp_path / "c").exists() and not (tmp_path / "f.md").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "run.json").write_bytes(b"\x89PNG not json"), "run.json is not JSON"),
    (lambda run: (run / "run.json").write_text("[1, 2]"), "holds no 'config' mapping"),
    (lambda run: (run / "run.json").write_text(json.dumps({"config": {"tasks": "Lift"}})), "its config is not valid"),
    (lambda run: (run / "episodes.parquet").write_bytes(b"PAR1 garbage PAR1"), "is not a readable Parquet file"),
    (lambda run: pq.write_table(pa.table({"task": ["Lift"]}), run / "episodes.parquet"), "has no column 'variant'"),
    (lambda run: pq.write_table(pq.read_table(run / "episodes.parquet").drop_columns(["seed"]).append_column(
        "seed", pa.array(["0"] * 6)), run / "episodes.parquet"), "column 'seed' is string, expected int64"),
])
def test_a_damaged_run_folder_exits_2_naming_the_file(finished_run, tmp_path, damage, message):
    copy = _copy(finished_run, tmp_path)
    damage(copy)
    for args in (["report", str(copy)], ["findings", str(copy), "--output", str(tmp_path / "f.md")],
                 ["export", str(copy), "--format", "minari", "--out", str(tmp_path / "m")]):
        assert message in _one_line_error(_cli(*args)), args


# -- export of a tampered run ----------------------------------------------------------------
def _set_actions(run: Path, change) -> None:
    table = pq.read_table(run / "steps.parquet")
    actions = [None if a is None else list(a) for a in table.column("action").to_pylist()]
    change(table, actions)
    index = table.schema.get_field_index("action")
    pq.write_table(table.set_column(index, "action", pa.array(actions, type=table.schema.field("action").type)),
                   run / "steps.parquet")


def _rows_of(table: pa.Table, variant: str, seed: int) -> list[int]:
    variants, seeds, steps = (table.column(c).to_pylist() for c in ("variant", "seed", "step"))
    rows = [i for i in range(table.num_rows) if variants[i] == variant and seeds[i] == seed]
    return sorted(rows, key=lambda i: steps[i])


def test_export_of_a_tampered_action_that_changes_the_end_exits_2(finished_run, tmp_path):
    """The expert lifts the cube before the time limit; with its recorded actions after step 2
    zeroed the replayed episode does not end where the record did."""
    copy = _copy(finished_run, tmp_path)
    episodes = {(r["variant"], r["seed"]): r for r in read_run(copy)[2]}
    assert episodes[("expert", 0)]["terminated"]

    def still(table, actions):
        for row in _rows_of(table, "expert", 0)[3:]:
            actions[row] = [0.0] * len(actions[row])

    _set_actions(copy, still)
    output = _one_line_error(_cli("export", str(copy), "--format", "minari", "--out", str(tmp_path / "m")))
    assert "Lift/expert/seed 0" in output and "the record says" in output


def test_export_of_a_nan_action_exits_2(finished_run, tmp_path):
    copy = _copy(finished_run, tmp_path)

    def nan(table, actions):
        actions[_rows_of(table, "expert", 0)[4]][0] = float("nan")

    _set_actions(copy, nan)
    output = _one_line_error(_cli("export", str(copy), "--format", "minari", "--out", str(tmp_path / "m")))
    assert "Lift/expert/seed 0" in output and "step 3 is refused by the env" in output


def test_export_into_an_existing_dataset_exits_2_and_keeps_it(finished_run, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "m"))
    out = tmp_path / "m"
    first = _cli("export", str(finished_run), "--format", "minari", "--out", str(out))
    assert first.exit_code == 0, first.output
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    output = _one_line_error(_cli("export", str(finished_run), "--format", "minari", "--out", str(out)))
    assert "exists" in output
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    np.testing.assert_equal(len(before) > 0, True)


def test_numbers_in_exponent_notation_are_numbers_in_every_config(tmp_path):
    """YAML 1.1 reads 3e-4 as text; the configs' strict number fields take it as the number meant."""
    from finetuning.config import load_finetune_config

    path = tmp_path / "eval.yaml"
    path.write_text("tasks: [Lift]\nepisodes: 1\nbase: {policy: {kind: expert}}\nlatency: {fixed_ms: 5e1}\n")
    assert load_eval_config(path).latency.fixed_ms == 50.0
    path = _finetune_config(tmp_path, lambda c: None)
    path.write_text(path.read_text().replace("n_epochs: 1", "n_epochs: 1\n    learning_rate: 3e-4"))
    assert load_finetune_config(path).algorithm.hyperparameters["learning_rate"] == 3e-4


@pytest.mark.parametrize("command", ["eval", "finetune"])
def test_an_out_that_is_a_file_exits_2_and_keeps_the_file(tmp_path, command):
    out = tmp_path / "notes.txt"
    out.write_text("my notes")
    config = (_eval_config(tmp_path, {"kind": "expert"}) if command == "eval"
              else _finetune_config(tmp_path, lambda c: None))
    output = _one_line_error(_cli(command, str(config), "--out", str(out)))
    assert f"{out} is a file: expected a folder for --out" in output
    assert out.read_text() == "my notes"
