"""The embodied wrappers' recorder, reward and metrics on a LIBERO scene, mirroring
``test_wrappers_recorder.py``, ``test_wrappers_reward.py`` and ``test_wrappers_capture.py``.

LIBERO-Object is the floor scene: its robot is LIBERO's ``OnTheGroundPanda`` (no mount), a robot
class robosuite does not know. One short episode is run once for the module, through
``EfficiencyReward(JointStateRecorder(EmbodiedCost(...)))`` with all eight cost weights and a
success bonus, while the test reads the simulator itself after every step; the tests then check
what the wrappers recorded, wrote and paid against it.

The episode: LIBERO's standard initial state 0, random arm motions, and at step ``PLACED_AT``
the target object (the bbq sauce) is put into the basket by hand, so that LIBERO's own success
check fires and the success bonus is exercised; the arm's joints are not touched.
"""

from __future__ import annotations

import json

import gymnasium as gym
import mujoco
import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from test_wrappers_reward import SCALES, WEIGHTS, step_quantities  # noqa: E402
from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder, metrics, read_episode  # noqa: E402
from wrappers.parquet_io import METADATA_KEY  # noqa: E402
from wrappers.robot_readout import ARM_VELOCITY_LIMITS  # noqa: E402

N_STEPS = 20
PLACED_AT = 12  # after this many steps the target object is put into the basket
BONUS = 2.0
F_HZ = 20.0
ARM_JOINTS = [f"robot0_joint{i}" for i in range(1, 8)]
# wrappers.parquet_io's layout: episode keys, then the samples, then the step's inputs
COLUMNS = ["env_id", "seed", "episode", "step", "time_s", "qpos", "qvel", "qacc", "torque", "ee_pos", "action",
           "reward", "substep_torque", "substep_qvel"]


def _sim_sample(env: gym.Env) -> dict[str, np.ndarray]:
    """The arm's state read from the simulator itself, joints looked up by name (not through
    the wrappers' readout)."""
    sim = env.unwrapped.robosuite_env.sim
    model, data = sim.model._model, sim.data._data
    joints = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name) for name in ARM_JOINTS]
    qpos, dof = model.jnt_qposadr[joints], model.jnt_dofadr[joints]
    grip = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, "gripper0_right_grip_site")
    return {"qpos": data.qpos[qpos].copy(), "qvel": data.qvel[dof].copy(), "qacc": data.qacc[dof].copy(),
            "torque": data.qfrc_actuator[dof].copy(), "ee_pos": data.site_xpos[grip].copy()}


def _place_in_basket(env: gym.Env, target: str = "bbq_sauce_1", region: str = "basket_1_contain_region") -> None:
    """Put ``target`` 3 cm above the middle of the basket's contain region, at rest."""
    sim = env.unwrapped.robosuite_env.sim
    start, _ = sim.model.get_joint_qpos_addr(f"{target}_joint0")
    dof, _ = sim.model.get_joint_qvel_addr(f"{target}_joint0")
    sim.data.qpos[start:start + 3] = sim.data.get_site_xpos(region) + np.array([0.0, 0.0, 0.03])
    sim.data.qvel[dof:dof + 6] = 0.0
    sim.forward()


@pytest.fixture(scope="module")
def run(libero_envs, tmp_path_factory):
    """One episode of LIBERO-Object task 3 (N_STEPS, then truncated), the wrappers' view of it
    and the simulator's."""
    base = libero_envs.get("LIBERO-Object", 3)
    assert "bbq sauce" in base.unwrapped.instruction
    out_dir = tmp_path_factory.mktemp("libero_episodes")
    recorder = JointStateRecorder(EmbodiedCost(gym.wrappers.TimeLimit(base, N_STEPS)), out_dir=out_dir,
                                  record_substeps=True)
    env = EfficiencyReward(recorder, config={"weights": WEIGHTS, "scales": SCALES, "success_bonus": BONUS})
    rng = np.random.default_rng(5)
    _, info = env.reset(seed=2, options={"init_state": 0})
    steps = {"actions": [], "rewards": [], "infos": [], "sim": [_sim_sample(base)], "done": []}
    assert not info["is_success"] and info["init_state"] == 0
    for t in range(N_STEPS):
        if t == PLACED_AT:
            _place_in_basket(base)
        action = rng.uniform(-0.5, 0.5, 7).astype(np.float32)
        _, reward, terminated, truncated, info = env.step(action)
        steps["actions"].append(action)
        steps["rewards"].append(reward)
        steps["infos"].append(info)
        steps["sim"].append(_sim_sample(base))
        steps["done"].append((terminated, truncated))
    env.embodied_probe.close()  # not env.close(): the env is shared (conftest.LiberoEnvs)
    return steps, recorder


def test_recorded_joint_states_are_the_simulators_at_every_step_boundary(run):
    steps, recorder = run
    episode = recorder.last_episode
    assert steps["done"][-1] == (False, True) and not any(any(done) for done in steps["done"][:-1])
    assert episode.n_steps == N_STEPS
    for field in ("qpos", "qvel", "qacc", "torque", "ee_pos"):
        expected = np.array([sample[field] for sample in steps["sim"]])
        np.testing.assert_array_equal(getattr(episode, field), expected, err_msg=field)
    assert np.linalg.norm(episode.qpos[-1] - episode.qpos[0]) > 0.05  # the arm did move
    np.testing.assert_array_equal(episode.action, np.array(steps["actions"], np.float64))
    # the recorder sits below EfficiencyReward: it keeps the env's own (LIBERO's) reward
    np.testing.assert_array_equal(episode.reward, [info["task_reward"] for info in steps["infos"]])
    np.testing.assert_allclose(episode.time_s, np.arange(N_STEPS + 1) / F_HZ)
    assert episode.substep_torque.shape == episode.substep_qvel.shape == (N_STEPS, 25, 7)
    # the last substep of each step is the state the step ended in
    np.testing.assert_array_equal(episode.substep_torque[:, -1], episode.torque[1:])
    np.testing.assert_array_equal(episode.substep_qvel[:, -1], episode.qvel[1:])


def test_episode_metadata_names_liberos_task_and_the_panda(run):
    _, recorder = run
    meta = recorder.last_episode.metadata
    assert meta["env_id"] == "vla_envs/LIBERO-Object-v0" and meta["env_kwargs"]["task_id"] == 3
    assert meta["max_episode_steps"] == N_STEPS and meta["seed"] == 2 and meta["end_reason"] == "truncated"
    assert meta["instruction"] == "pick up the bbq sauce and place it in the basket"
    robot = meta["robot"]
    assert robot["joint_names"] == ARM_JOINTS and robot["ee"] == "site:gripper0_right_grip_site"
    assert robot["n_substeps"] == 25 and robot["control_freq_hz"] == F_HZ
    # LIBERO's OnTheGroundPanda is robosuite's Panda arm: its velocity limits apply (they were NaN)
    assert robot["robot_name"] == "Panda"
    assert meta["limits"]["velocity_rad_s"] == list(ARM_VELOCITY_LIMITS["Panda"])
    assert meta["limits"]["torque_nm"] == [80.0] * 5 + [12.0] * 2


def test_liberos_pandas_load_robosuites_panda_arm():
    """What ``robot_readout.SAME_ARM_AS`` rests on: LIBERO's robot models are built from the
    very file robosuite's Panda is."""
    from vla_envs.libero.installation import prepare

    prepare()
    from libero.libero.envs.robots import MountedPanda, OnTheGroundPanda
    from robosuite.models.robots import Panda

    for libero_robot in (MountedPanda, OnTheGroundPanda):
        assert libero_robot().file == Panda().file


def test_the_parquet_file_has_the_documented_layout_and_round_trips(run):
    _, recorder = run
    episode = recorder.last_episode
    [path] = recorder.written_paths
    assert path.name == "episode_000000.parquet" and path.parent.is_dir()
    schema = pq.read_schema(path)
    assert schema.names == COLUMNS
    doubles = pa.list_(pa.float64())
    for name in ("qpos", "qvel", "qacc", "torque", "ee_pos", "action"):
        assert schema.field(name).type == doubles, name
    for name in ("substep_torque", "substep_qvel"):
        assert schema.field(name).type == pa.list_(doubles), name
    assert schema.field("env_id").type == pa.dictionary(pa.int32(), pa.string())
    assert (schema.field("seed").type, schema.field("step").type, schema.field("time_s").type) == \
        (pa.int64(), pa.int32(), pa.float64())
    assert json.loads(schema.metadata[METADATA_KEY]) == json.loads(json.dumps(episode.metadata))

    import pandas as pd

    frame = pd.read_parquet(path)
    assert len(frame) == N_STEPS + 1 and list(frame["step"]) == list(range(N_STEPS + 1))
    assert frame["action"].iloc[0] is None and np.isnan(frame["reward"].iloc[0])
    assert set(frame["env_id"]) == {"vla_envs/LIBERO-Object-v0"} and set(frame["seed"]) == {2}
    np.testing.assert_array_equal(np.stack(frame["qpos"]), episode.qpos)
    back = read_episode(path)
    for field in ("time_s", "qpos", "qvel", "qacc", "torque", "ee_pos", "action", "reward", "substep_torque",
                  "substep_qvel"):
        np.testing.assert_array_equal(getattr(back, field), getattr(episode, field), err_msg=field)


def test_the_reward_is_the_documented_formula_of_the_recorded_quantities(run):
    """Each step's terms recomputed from the recorded arrays (positions, velocities, actions,
    every substep's torque and velocity), as ``test_wrappers_reward`` does on Lift; LIBERO's
    sparse task reward passes through, and the bonus is paid on the first success step only."""
    steps, recorder = run
    episode = recorder.last_episode
    dt = episode.metadata["robot"]["physics_dt_s"]
    success = [info["is_success"] for info in steps["infos"]]
    assert not any(success[:PLACED_AT]) and any(success[PLACED_AT:])  # LIBERO's own check saw the placement
    first_success = success.index(True)
    for t in range(1, N_STEPS + 1):  # control step t moves samples t - 1 -> t
        info = steps["infos"][t - 1]
        expected = step_quantities(episode, t, F_HZ, dt)
        terms = info["reward_terms"]
        for key, quantity in expected.items():
            assert terms[key] == pytest.approx(-WEIGHTS[key] * quantity / SCALES[key], rel=1e-9, abs=1e-15), (t, key)
        assert terms["success_bonus"] == (BONUS if t - 1 == first_success else 0.0)
        assert info["task_reward"] == (1.0 if success[t - 1] else 0.0)  # LIBERO's sparse reward
        assert steps["rewards"][t - 1] == pytest.approx(info["task_reward"] + sum(terms.values()), rel=1e-12, abs=1e-15)
    for key in WEIGHTS:  # every term was exercised
        assert sum(steps["infos"][t]["reward_terms"][key] < 0 for t in range(N_STEPS)) >= N_STEPS - 2, key


def test_kinematic_and_ledger_metrics_equal_the_functions_on_the_recorded_trajectory(run):
    steps, recorder = run
    episode = recorder.last_episode
    limits = episode.metadata["limits"]
    robot = episode.metadata["robot"]
    expected = metrics.episode_metrics(
        episode.qpos, episode.qvel, episode.ee_pos, episode.action,
        episode.substep_torque.reshape(-1, 7), episode.substep_qvel.reshape(-1, 7),
        robot["control_freq_hz"], robot["physics_dt_s"],
    )
    expected.update(metrics.actuator_ledger(
        episode.substep_torque.reshape(-1, 7), episode.substep_qvel.reshape(-1, 7), robot["physics_dt_s"],
        np.array(limits["torque_nm"]), np.array(limits["velocity_rad_s"]),
    ))
    final = steps["infos"][-1]["embodied"]
    assert list(final) == list(metrics.METRIC_KEYS) and set(expected) == set(final)
    for key, value in expected.items():
        assert np.isfinite(value), key  # peak_joint_speed_frac was NaN on LIBERO
        assert final[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert final["n_steps"] == N_STEPS and final["completion_time_s"] == pytest.approx(N_STEPS / F_HZ)
    assert final["ee_path_m"] == pytest.approx(metrics.ee_path_m(np.array([s["ee_pos"] for s in steps["sim"]])),
                                               rel=1e-12)
    assert episode.metadata["metrics"] == final
