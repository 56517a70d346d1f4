"""Evaluation configs are validated when loaded: errors name the file, the field and the value."""

import re
from pathlib import Path

import pytest

from evaluation.run.config import load_eval_config
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
        ("env: {obs_mode: state}", "env: {obs_mode: state, robot: Baxter}", "env.robot", "'Baxter'"),
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


def test_the_env_robot_goes_to_gym_make(tmp_path):
    cfg = load_eval_config(write(tmp_path, GOOD))
    assert "robot" not in cfg.env.make_kwargs()  # each task's own arm (the Panda)
    assert "robot" not in cfg.episode_settings()["env"]  # as in runs made before env.robot existed
    cfg = load_eval_config(write(tmp_path, GOOD.replace("env: {obs_mode: state}", "env: {obs_mode: state, robot: UR5e}")))
    assert cfg.env.robot == "UR5e" and cfg.env.make_kwargs()["robot"] == "UR5e"
    assert cfg.env.make_kwargs("rgb")["robot"] == "UR5e"
    assert cfg.episode_settings()["env"]["robot"] == "UR5e"  # a resumed run must use the same arm


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

    from cli.app import app

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


def test_compare_to_names_another_variant(tmp_path):
    text = GOOD + "  - {name: slower, latency: {fixed_ms: 200}, compare_to: slow}\n"
    cfg = load_eval_config(write(tmp_path, text))
    assert cfg.reference_of("slower") == "slow" and cfg.reference_of("slow") == "expert"
    assert cfg.reference_of("expert") == "expert"
    for target, expected in (("nope", "compare_to = 'nope', expected one of"), ("slower", "compare_to names itself")):
        bad = GOOD + f"  - {{name: slower, latency: {{fixed_ms: 200}}, compare_to: {target}}}\n"
        message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, bad)).value)
        assert expected in message


def test_summary_compares_a_variant_with_its_reference():
    """c is compared with b (compare_to), not with the base a: the paired difference and the
    % change are c - b, over the seeds both solved."""
    from evaluation.analysis.summary import SUMMARY_METRICS, summarize

    def episode(variant, seed, energy, success=True):
        row = {m: 1.0 for m in SUMMARY_METRICS}
        row.update(task="Lift", variant=variant, seed=seed, success=success, energy_j=energy, latency_model="frozen",
                   inference_calls=1, waiting_steps=0, latency_mean_ms=0.0)
        return row

    episodes = [episode("a", s, 10.0) for s in range(3)]
    episodes += [episode("b", 0, 20.0), episode("b", 1, 30.0), episode("b", 2, 99.0, success=False)]
    episodes += [episode("c", 0, 18.0), episode("c", 1, 24.0), episode("c", 2, 5.0)]
    rows = summarize(episodes, "a", ["Lift"], ["a", "b", "c"], resamples=200, references={"c": "b"})
    by_name = {r["variant"]: r for r in rows}
    c, b = by_name["c"], by_name["b"]
    assert c["compared_to"] == "b" and b["compared_to"] == "a" and by_name["a"]["compared_to"] == "a"
    assert c["paired_n"] == 2  # seed 2: b failed
    assert c["energy_j_paired_diff"] == pytest.approx(((18 - 20) + (24 - 30)) / 2)
    assert c["energy_j_paired_pct"] == pytest.approx(100 * (21 / 25 - 1))
    assert c["energy_j_pct_vs_base"] == pytest.approx(100 * ((18 + 24 + 5) / 3 / 25 - 1))
    assert b["energy_j_paired_diff"] == pytest.approx(((20 - 10) + (30 - 10)) / 2)


def test_a_residual_policy_names_its_checkpoint_problems(tmp_path):
    text = GOOD + "  - {name: res, policy: {kind: residual, checkpoint: no/such/file.safetensors}}\n"
    message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, text)).value)
    assert "variants.1.policy" in message and "no/such/file.safetensors" in message and "does not exist" in message
    not_residual = Path(__file__).resolve().parents[1] / "policies" / "tinyvla" / "weights" / "tinyvla.safetensors"
    text = GOOD + f"  - {{name: res, policy: {{kind: residual, checkpoint: {not_residual}}}}}\n"
    message = str(pytest.raises(ConfigError, load_eval_config, write(tmp_path, text)).value)
    assert "not a residual checkpoint" in message


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("episodes: 2", "seeds: [0, 4294967296]", "expected distinct integers from 0 to 4294967295"),
        ("episodes: 2", "episodes: 2\nseeds: {start: 4294967295}", "reaches seed 4294967296"),
        ("{fixed_ms: 100}", "{fixed_ms: .inf}", "variants.0.latency"),
    ],
)
def test_values_that_used_to_fail_mid_run_fail_at_load(tmp_path, old, new, message):
    assert old in GOOD
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_eval_config(write(tmp_path, GOOD.replace(old, new)))


def test_an_expert_on_a_task_without_one_fails_at_load(tmp_path, monkeypatch):
    """Every shipped task has a scripted expert; a task added without one must fail at load."""
    from policies import experts

    monkeypatch.setattr(experts, "EXPERTS", {k: v for k, v in experts.EXPERTS.items() if k != "Door"})
    assert "{kind: expert}" in GOOD
    with pytest.raises(ConfigError, match=re.escape("no scripted expert for ['Door']")):
        load_eval_config(write(tmp_path, GOOD.replace("tasks: [Lift]", "tasks: [Door]")))


def test_libero_tasks_by_name_or_suite_with_their_env_settings(tmp_path):
    from vla_envs.registration import task_env

    base = "name: l\nepisodes: 2\nseeds: {start: 0}\nbase: {policy: {factory: 'policies.demo:perturbed_expert'}}\n"
    path = tmp_path / "l.yaml"
    path.write_text(base + "tasks: [LIBERO-10, LIBERO-Goal-9]\nenv: {obs_mode: rgb, libero: {settle_steps: 3}}\n")
    config = load_eval_config(path)
    assert config.tasks == [f"LIBERO-10-{k}" for k in range(10)] + ["LIBERO-Goal-9"]
    assert config.env.env_for("LIBERO-Goal-9") == ("vla_envs/LIBERO-Goal-v0", {
        "task_id": 9, "settle_steps": 3, "init_state_from_seed": True, "robosuite_controller": "1.4", "obs_mode": "rgb", "image_size": 128,
        "controller": "OSC_POSE", "render_quality": "lean"})
    assert config.env.env_for("Lift")[0] == "vla_envs/Lift-v0" and "settle_steps" not in config.env.env_for("Lift")[1]
    assert task_env("LIBERO-90-89") == ("vla_envs/LIBERO-90-v0", {"task_id": 89})
    for tasks, message in (("[LIBERO-Spatial-10]", r"LIBERO-Spatial has tasks 0 to 9"),
                           ("[LIBERO-Spatial-03]", r"unknown task 'LIBERO-Spatial-03'"),
                           ("[LIBERO-Spatial, LIBERO-Spatial-2]", r"repeat a task"),
                           ("[Lift]\nenv: {libero: {settle_steps: 5}}", r"'env.libero' applies to LIBERO tasks")):
        path.write_text(base + f"tasks: {tasks}\n")
        with pytest.raises(ConfigError, match=message):
            load_eval_config(path)
