"""Evaluation configs are validated when loaded: errors name the file, the field and the value."""

from pathlib import Path

import pytest

from evaluation.config import load_eval_config
from vla_envs.config import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "eval"

GOOD = """\
tasks: [Lift]
episodes: 2
env: {obs_mode: state}
base: {name: expert, policy: {kind: expert}}
variants:
  - {name: slow, latency: {fixed_ms: 100}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "eval.yaml"
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path):
    cfg = load_eval_config(write(tmp_path, GOOD))
    assert cfg.seed_list == [0, 1]
    assert cfg.variant_names == ["expert", "slow"]
    assert cfg.latency_for("slow").fixed_ms == 100 and cfg.latency_for("expert") == "frozen"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_validate(name):
    # factories are not imported: the reference VLA may need a checkpoint that is built separately
    cfg = load_eval_config(CONFIGS / name, check_imports=False)
    assert cfg.tasks and cfg.seed_list


@pytest.mark.parametrize(
    "old, new, field, value_text",
    [
        ("episodes: 2", "episodes: 0", "episodes", "0"),
        ("tasks: [Lift]", "tasks: [Lfit]", "tasks", "['Lfit']"),
        ("obs_mode: state", "obs_mode: depth", "env.obs_mode", "'depth'"),
        ("{fixed_ms: 100}", "{fixed_ms: -5}", "variants.0.latency", ""),
        ("{name: slow,", "{name: 'bad name',", "variants.0.name", "'bad name'"),
        ("{kind: expert}", "{kind: oracle}", "base.policy", ""),
        ("{fixed_ms: 100}}", "{fixed_ms: 100}, compression: {pruning: {fraction: 1.5}}}", "variants.0.compression", ""),
        ("env: {obs_mode: state}", "env: {obs_mode: state, colour: red}", "env.colour", "'red'"),
    ],
)
def test_bad_field_is_named(tmp_path, old, new, field, value_text):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as excinfo:
        load_eval_config(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert f"field '{field}" in message
    assert value_text in message and "expected" in message


def test_cross_field_errors_name_the_fields(tmp_path):
    text = GOOD.replace("episodes: 2", "episodes: 3\nseeds: [4, 5]")
    message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, text)).value)
    assert "'episodes' = 3" in message and "'seeds'" in message
    text = GOOD + "  - {name: slow, latency: measured}\n"
    message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, text)).value)
    assert "variants" in message and "slow" in message and "unique" in message


def test_unimportable_factory_is_named(tmp_path):
    text = GOOD.replace("{kind: expert}", "{factory: 'no_such_module:make'}")
    message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, text)).value)
    assert "base.policy" in message and "no_such_module" in message


def test_cli_reports_a_bad_config(tmp_path):
    from typer.testing import CliRunner

    from vla_envs.cli import app

    path = write(tmp_path, GOOD.replace("episodes: 2", "episodes: -1"))
    result = CliRunner().invoke(app, ["eval", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "field 'episodes' = -1" in result.output
    assert not (tmp_path / "out").exists()


def test_shipped_eval_configs_load_and_name_importable_policies():
    import importlib
    from pathlib import Path

    from evaluation import load_eval_config

    paths = sorted((Path(__file__).parents[1] / "configs" / "eval").glob("*.yaml"))
    assert {p.name for p in paths} >= {"quickstart.yaml", "paper_study.yaml", "experts.yaml"}
    for path in paths:
        config = load_eval_config(path)
        factories = [config.base.policy] + [v.policy for v in config.variants if getattr(v, "policy", None)]
        for spec in factories:
            factory = getattr(spec, "factory", None)
            if factory:
                module, name = factory.split(":")
                assert callable(getattr(importlib.import_module(module), name)), (path.name, factory)
    quickstart = load_eval_config(paths[[p.name for p in paths].index("quickstart.yaml")])
    methods = {key for v in quickstart.variants if getattr(v, "compression", None)
               for key, value in v.compression.items() if value}
    assert methods >= {"quantization", "pruning", "token_sparsification", "action_codec"}
