"""Inputs that used to produce wrong numbers silently: each now fails at construction, make or
load time naming the field, the value and what was expected, or has documented behaviour."""

import gymnasium as gym
import numpy as np
import pytest

import vla_envs  # noqa: F401
from vla_envs.config import ConfigError, load_task_config
from vla_envs.timing import substeps_per_control_step
from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder, RewardConfig


# -- control frequency ---------------------------------------------------------------------------
@pytest.mark.parametrize("freq, substeps", [(500, 1), (250, 2), (100, 5), (20, 25), (10, 50), (0.5, 1000)])
def test_frequencies_that_divide_the_physics_rate(freq, substeps):
    assert substeps_per_control_step(freq) == substeps


@pytest.mark.parametrize("freq, message", [
    (1000, r"control_freq=1000: expected a frequency that divides the 500 Hz physics rate.*0 substeps \(0 ms\) per 1 ms step"),
    (30, r"control_freq=30: expected a frequency that divides the 500 Hz physics rate.*16 substeps \(32 ms\) per 33.3333 ms step"),
    (0, r"control_freq=0: expected a positive, finite frequency in Hz"),
    (float("nan"), r"control_freq=nan: expected a positive, finite frequency in Hz"),
])
def test_gym_make_refuses_a_frequency_the_physics_cannot_run(freq, message):
    with pytest.raises(ValueError, match=message):
        gym.make("vla_envs/Lift-v0", control_freq=freq)


def test_the_reported_time_is_the_simulated_time_at_a_valid_frequency():
    env = EmbodiedCost(gym.make("vla_envs/Lift-v0", control_freq=25))
    env.reset(seed=0)
    start = env.unwrapped.robosuite_env.sim.data.time
    for _ in range(10):
        _, _, _, _, info = env.step(np.zeros(7, np.float32))
    simulated = env.unwrapped.robosuite_env.sim.data.time - start
    env.close()
    assert info["embodied"]["completion_time_s"] == pytest.approx(0.4)
    assert simulated == pytest.approx(0.4, abs=1e-9)


def test_task_and_eval_configs_refuse_it_at_load(tmp_path):
    task = tmp_path / "lift30.yaml"
    task.write_text("name: Lift\nrobosuite_env: Lift\ninstruction: lift\nmax_episode_steps: 10\ncontrol_freq: 30\n")
    with pytest.raises(ConfigError, match=r"lift30.yaml: field 'control_freq' = 30.*divides the 500 Hz physics rate"):
        load_task_config(task)

    from evaluation.run.config import load_eval_config

    for field, value, message in (
        ("control_freq", "30", r"field 'env.control_freq' = 30.*divides the 500 Hz physics rate"),
        ("controller", "FLY", r"field 'env.controller' = 'FLY'.*controller='FLY' is not supported: expected one of"),
    ):
        config = tmp_path / f"eval_{field}.yaml"
        config.write_text(f"tasks: [Lift]\nseeds: [0]\nenv: {{{field}: {value}}}\nbase: {{policy: {{kind: expert}}}}\n")
        with pytest.raises(ConfigError, match=message):
            load_eval_config(config)


# -- actions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrapped", [False, True])
@pytest.mark.parametrize("action, dtype", [([None] * 7, "object"), (["0"] * 7, "<U1"), (np.zeros(7, complex), "complex128")])
def test_non_numeric_actions_are_refused(wrapped, action, dtype):
    env = gym.make("vla_envs/Lift-v0")
    env = EmbodiedCost(env) if wrapped else env
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"action has dtype {dtype} .*expected real numbers \(float or int\) for a Box of float32"):
        env.step(action)
    env.close()


@pytest.mark.parametrize("env_id, bound", [("Pusher-v5", 2.0), ("vla_envs/Lift-v0", 1.0)])
def test_action_rate_counts_the_applied_clipped_action(env_id, bound):
    """A +-1e9 command moves the arm exactly as +-bound: the metrics and the reward term agree."""

    def run(amplitude):
        env = EfficiencyReward(JointStateRecorder(EmbodiedCost(gym.make(env_id))),
                               config={"weights": {"action_change": 1.0}})
        env.reset(seed=0)
        terms = []
        for t in range(6):
            sign = 1.0 if t % 2 == 0 else -1.0
            _, _, _, _, info = env.step(np.full(env.action_space.shape, sign * amplitude, np.float32))
            terms.append(info["reward_terms"]["action_change"])
        env.close()
        return info["embodied"], terms, env.get_wrapper_attr("embodied_probe").episode_arrays().action

    huge, huge_terms, huge_actions = run(1e9)
    exact, exact_terms, exact_actions = run(bound)
    assert list(huge) == list(exact) and huge_terms == exact_terms
    assert np.array_equal(list(huge.values()), list(exact.values()), equal_nan=True)  # NaN: no velocity limits
    np.testing.assert_array_equal(huge_actions, exact_actions)
    n = huge_actions.shape[1]
    assert huge["action_rate"] == pytest.approx(2 * bound * np.sqrt(n))


# -- reward configs -----------------------------------------------------------------------------
@pytest.mark.parametrize("config, message", [
    ({"weights": {"time_s": float("nan")}}, r"weight of 'time_s' is nan: expected a finite number"),
    ({"weights": {"energy_j": float("inf")}}, r"weight of 'energy_j' is inf: expected a finite number"),
    ({"scales": {"jerk_sq": float("inf")}}, r"scale of 'jerk_sq' is inf: expected a finite number"),
    ({"scales": {"jerk_sq": float("nan")}}, r"scale of 'jerk_sq' is nan: expected a finite number"),
    ({"success_bonus": float("inf")}, r"success_bonus\n.*finite number"),
])
def test_reward_weights_scales_and_bonus_must_be_finite(config, message):
    with pytest.raises(ValueError, match=message):
        RewardConfig(**config)


# -- episodes -----------------------------------------------------------------------------------
def test_stepping_after_the_episode_ended_raises_and_keeps_the_file(tmp_path):
    env = JointStateRecorder(EmbodiedCost(gym.make("vla_envs/Lift-v0", max_episode_steps=5)), out_dir=tmp_path)
    env.reset(seed=0)
    truncated = False
    while not truncated:
        _, _, _, truncated, info = env.step(np.zeros(7, np.float32))
    (path,) = env.written_paths
    written, metrics = path.read_bytes(), dict(info["embodied"])
    with pytest.raises(gym.error.ResetNeeded, match="after the episode ended"):
        env.step(np.zeros(7, np.float32))
    assert path.read_bytes() == written and env.get_wrapper_attr("embodied_probe").values() == metrics
    env.reset(seed=1)  # and a reset starts the next one
    _, _, _, _, info = env.step(np.zeros(7, np.float32))
    assert info["embodied"]["n_steps"] == 1.0
    env.close()


@pytest.mark.parametrize("env_id", ["vla_envs/Lift-v0", "Pusher-v5"])
def test_a_reset_below_the_wrappers_is_detected(env_id):
    env = EmbodiedCost(gym.make(env_id))
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    env.unwrapped.reset(seed=1)
    with pytest.raises(RuntimeError, match=r"reset or replaced below the embodied wrappers .*env.unwrapped.reset\(\)"):
        env.step(env.action_space.sample())
    env.reset(seed=2)  # the wrappers' own reset re-binds
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["embodied"]["n_steps"] == 1.0 and info["embodied"]["energy_j"] > 0
    env.close()


def test_out_dir_is_checked_when_the_recorder_is_built(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match=rf"out_dir='{blocker}/episodes': cannot create the folder"):
        JointStateRecorder(gym.make("Pusher-v5"), out_dir=blocker / "episodes")
    nested = tmp_path / "new" / "episodes"
    JointStateRecorder(gym.make("Pusher-v5"), out_dir=nested).close()
    assert nested.is_dir()


# -- keyword types ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"control_freq": "20"}, r"control_freq='20': expected a positive, finite frequency in Hz \(a number\)"),
    ({"control_freq": True}, r"control_freq=True: expected a positive, finite frequency in Hz \(a number\)"),
    ({"terminate_on_success": "no"}, r"terminate_on_success='no': expected True or False"),
    ({"terminate_on_success": 1}, r"terminate_on_success=1: expected True or False"),
    ({"reward_shaping": "False"}, r"reward_shaping='False': expected True or False"),
    ({"image_size": True}, r"image_size=True: expected an integer number of pixels in \[8, 1024\]"),
    ({"image_size": 64.0}, r"image_size=64.0: expected an integer number of pixels in \[8, 1024\]"),
    ({"render_size": "256"}, r"render_size='256': expected an integer number of pixels in \[8, 1024\]"),
    ({"mesh_face_budget": "1000"}, r"mesh_face_budget='1000': expected None \(robosuite's meshes\) or an integer >= 16"),
    ({"mesh_face_budget": True}, r"mesh_face_budget=True: expected None"),
    ({"render_quality": 1}, r"render_quality=1 is not supported: expected one of \('lean', 'full'\)"),
    ({"controller": ["OSC_POSE"]}, r"controller=\['OSC_POSE'\] is not supported: expected one of"),
    ({"robot": 1}, r"robot=1 is not a supported arm: expected one of"),
    ({"task": 3}, r"task=3: expected a task name \(one of \[.*'Lift'.*\]\), a task YAML path or a TaskConfig"),
])
def test_make_refuses_keywords_of_the_wrong_type(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("vla_envs/Lift-v0", **kwargs)


def test_numbers_of_numpy_types_and_task_paths_are_still_accepted():
    from vla_envs.config import config_dir

    env = gym.make("vla_envs/Lift-v0", control_freq=np.float32(25), image_size=np.int64(64),
                   terminate_on_success=np.bool_(False), task=config_dir() / "tasks" / "lift.yaml")
    assert env.unwrapped.control_freq == 25.0 and env.unwrapped.terminate_on_success is False
    env.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"settle_steps": "10"}, r"settle_steps='10': expected an integer number of control steps in \[0, 1000\]"),
    ({"settle_steps": True}, r"settle_steps=True: expected an integer number of control steps"),
    ({"init_state_from_seed": 1}, r"init_state_from_seed=1: expected True or False"),
    ({"robosuite_controller": 1.4}, r"robosuite_controller=1.4: expected one of \('1.4', '1.5'\)"),
    ({"task_id": "3"}, r"task index '3' of LIBERO-Spatial: expected an integer from 0 to 9"),
    ({"suite": ["libero_spatial"]}, r"LIBERO suite \['libero_spatial'\]: expected one of"),
    ({"terminate_on_success": "no"}, r"terminate_on_success='no': expected True or False"),
    ({"control_freq": "20"}, r"control_freq='20': expected a positive, finite frequency in Hz"),
])
def test_libero_refuses_keywords_of_the_wrong_type(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make("vla_envs/LIBERO-Spatial-v0", **kwargs)


# -- closed envs and reset options ---------------------------------------------------------------
@pytest.mark.parametrize("wrapped", [False, True])
def test_an_env_used_after_close_says_it_is_closed(wrapped):
    from vla_envs.robosuite_env import EnvClosedError

    env = gym.make("vla_envs/Lift-v0", render_mode="rgb_array", render_size=64)
    env = EmbodiedCost(env) if wrapped else env
    env.reset(seed=0)
    env.close()
    env.close()  # twice: still fine
    for call, run in (("step", lambda: env.step(np.zeros(7, np.float32))), ("reset", lambda: env.reset(seed=0)),
                      ("render", env.render)):
        with pytest.raises(EnvClosedError, match=rf"env.{call}\(\) after env.close\(\): vla_envs/Lift-v0 is closed "
                                                 r"\(close\(\) released its simulation\); make a new env with gym.make"):
            run()
    assert issubclass(EnvClosedError, RuntimeError) and issubclass(EnvClosedError, gym.error.ClosedEnvironmentError)


def test_unknown_reset_options_are_refused(lift_env):
    lift_env.reset(seed=0)  # the shared env's checker sees a good first reset (test_libero_env: why)
    with pytest.raises(ValueError, match=r"reset options \['x'\] are not known: this env accepts no reset options "
                                         r"\(accepted keys: \[\]\), expected None or \{\}"):
        lift_env.reset(seed=0, options={"x": 1})
    with pytest.raises(ValueError, match=r"reset options=5: expected None or a dict with keys among \[\]"):
        lift_env.reset(seed=0, options=5)
    for options in (None, {}):
        lift_env.reset(seed=0, options=options)


def test_libero_reset_options_and_close():
    """``init_state`` still works, anything else is refused; after close, a clear error."""
    from vla_envs.robosuite_env import EnvClosedError

    env = gym.make("vla_envs/LIBERO-Spatial-v0", task_id=0)
    _, info = env.reset(seed=0, options={"init_state": 3})
    assert info["init_state"] == 3
    with pytest.raises(ValueError, match=r"reset options \['x'\] are not known: expected some of \['init_state'\]"):
        env.reset(seed=0, options={"init_state": 3, "x": 1})
    env.close()
    env.close()
    with pytest.raises(EnvClosedError, match=r"env.reset\(\) after env.close\(\): vla_envs/LIBERO-Spatial-v0 is closed"):
        env.reset(seed=0, options={"init_state": 3})
    with pytest.raises(EnvClosedError, match=r"env.step\(\) after env.close\(\): vla_envs/LIBERO-Spatial-v0 is closed"):
        env.step(np.zeros(7, np.float32))


# -- recorders ----------------------------------------------------------------------------------
def test_two_recorders_on_one_folder_are_refused_and_the_first_keeps_its_episodes(tmp_path, monkeypatch):
    inner = JointStateRecorder(gym.make("Pusher-v5"), out_dir=tmp_path / "episodes")
    inner.reset(seed=0)
    inner.step(inner.action_space.sample())
    monkeypatch.chdir(tmp_path)
    for spelling in ("episodes", "other/../episodes"):  # the same folder however written
        with pytest.raises(ValueError, match=rf"out_dir='{spelling}': a JointStateRecorder below in this wrapper stack "
                                             rf"already writes to '{tmp_path / 'episodes'}'; expected another folder"):
            JointStateRecorder(EmbodiedCost(inner), out_dir=spelling)
    inner.step(inner.action_space.sample())
    inner.close()
    (path,) = inner.written_paths
    assert inner.last_episode.metadata["n_steps"] == 2 and path.parent == tmp_path / "episodes"
    JointStateRecorder(JointStateRecorder(gym.make("Pusher-v5"), out_dir=tmp_path / "a"), out_dir=tmp_path / "b").close()


# -- LeRobot's interpreter ----------------------------------------------------------------------
def test_a_missing_lerobot_python_skips_the_lerobot_tests_naming_it(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    missing = tmp_path / "no-venv" / "bin" / "python"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(root / "tests" / "test_serving_lerobot.py")], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "VLA_ENVS_LEROBOT_PYTHON": str(missing)}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr  # skipped, not a collection error
    assert f"VLA_ENVS_LEROBOT_PYTHON={missing}: no such executable file" in done.stdout
    assert "FileNotFoundError" not in done.stdout + done.stderr


@pytest.mark.parametrize("from_env", [False, True])
def test_export_names_the_lerobot_python_it_tried(tmp_path, monkeypatch, from_env):
    from typer.testing import CliRunner

    from cli.app import app

    missing = tmp_path / "no-venv" / "bin" / "python"
    monkeypatch.setenv("VLA_ENVS_LEROBOT_PYTHON", str(missing)) if from_env else monkeypatch.delenv(
        "VLA_ENVS_LEROBOT_PYTHON", raising=False)
    result = CliRunner().invoke(app, ["export", str(tmp_path / "run"), "--format", "lerobot", "--out", str(tmp_path / "x"),
                                      *([] if from_env else ["--lerobot-python", str(missing)])])
    source = "$VLA_ENVS_LEROBOT_PYTHON" if from_env else "--lerobot-python"
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 2, result.output
    assert f"{source}={missing}: no such executable file; expected the Python of an environment with lerobot installed" in output
    assert "uv venv --python 3.12 --seed .venv-lerobot" in output and "Traceback" not in output
