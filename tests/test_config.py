from pathlib import Path

import pytest

from vla_envs.config import ConfigError, get_task_config, load_task_config, load_task_configs

GOOD = """\
name: Lift
robosuite_env: Lift
instruction: pick up the cube
max_episode_steps: 300
control_freq: 20
cameras: {image: agentview, wrist_image: robot0_eye_in_hand}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    return path


def test_shipped_configs_load():
    configs = load_task_configs()
    assert set(configs) == {"Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door"}
    for cfg in configs.values():
        assert cfg.instruction and cfg.max_episode_steps > 0 and cfg.control_freq == 20


def test_good_file_loads(tmp_path):
    cfg = load_task_config(write(tmp_path, GOOD))
    assert cfg.env_id == "vla_envs/Lift-v0"
    assert cfg.time_limit_s == 15.0
    assert cfg.robot == "Panda"


def test_a_task_file_names_any_supported_arm(tmp_path):
    from vla_envs.robots import SUPPORTED_ROBOTS

    for robot in SUPPORTED_ROBOTS:
        assert load_task_config(write(tmp_path, GOOD + f"robot: {robot}\n")).robot == robot
    message = str(pytest.raises(ConfigError, load_task_config, write(tmp_path, GOOD + "robot: panda\n")).value)
    assert "field 'robot' = 'panda'" in message and "expected one of ['Panda', 'UR5e'" in message


@pytest.mark.parametrize(
    "old, new, field, value_text",
    [
        ("max_episode_steps: 300", "max_episode_steps: -5", "max_episode_steps", "-5"),
        ("max_episode_steps: 300", "max_episode_steps: many", "max_episode_steps", "'many'"),
        ("control_freq: 20", "control_freq: 0", "control_freq", "0"),
        ("name: Lift", "name: lift task", "name", "'lift task'"),
        ("cameras: {image: agentview, wrist_image: robot0_eye_in_hand}", "cameras: {image: ''}", "cameras.image", "''"),
        ("name: Lift", "name: Lift\nrobot: Baxter", "robot", "'Baxter'"),
        ("control_freq: 20", 'control_freq: "20"', "control_freq", "'20'"),  # text, not a number
        ("max_episode_steps: 300", "max_episode_steps: 300.0", "max_episode_steps", "300.0"),
    ],
)
def test_bad_field_names_file_field_value(tmp_path, old, new, field, value_text):
    path = write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(ConfigError) as excinfo:
        load_task_config(path)
    message = str(excinfo.value)
    assert str(path) in message
    assert f"field '{field}' = {value_text}" in message
    assert "expected" in message


def test_missing_and_unknown_fields(tmp_path):
    path = write(tmp_path, GOOD.replace("instruction: pick up the cube\n", "") + "colour: red\n")
    message = str(pytest.raises(ConfigError, load_task_config, path).value)
    assert "field 'instruction' is missing" in message
    assert "field 'colour' = 'red'" in message


def test_not_yaml_and_not_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_task_config(write(tmp_path, "name: [unclosed"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_task_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_task_config(tmp_path / "absent.yaml")


def test_unknown_task_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown task 'Juggle'.*'Lift'"):
        get_task_config("Juggle")
