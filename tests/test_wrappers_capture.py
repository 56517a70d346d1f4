"""Substep-exact capture on real robosuite Lift and gymnasium Pusher-v5, against independent loops."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from wrappers import EfficiencyReward, EmbodiedCost, JointStateRecorder, metrics, read_robot
from wrappers.metrics import STEP_TERM_KEYS

N_STEPS = 30
SEED = 3


def _actions(space, n=N_STEPS, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, *space.shape)).astype(np.float32)


def _robosuite_reference(actions, robot="Panda", env_id="vla_envs/Lift-v0", make_kwargs=None, reset_options=None):
    """Drive robosuite's substep loop by hand (environments/base.py), sampling after each substep."""
    env = gym.make(env_id, terminate_on_success=False, **({"robot": robot} if make_kwargs is None else make_kwargs))
    try:
        return substep_reference(env, actions, reset_options)
    finally:
        env.close()


def substep_reference(env, actions, reset_options=None):
    """(torque, qvel per substep; qpos, ee per control step; dt) of ``env`` reset to ``SEED``,
    then stepped by hand through robosuite's substep loop, not through ``env.step``."""
    env.reset(seed=SEED, options=reset_options)
    rs = env.unwrapped.robosuite_env
    robot = rs.robots[0]
    dofs = np.asarray(robot._ref_joint_vel_indexes)
    qidx = np.asarray(robot._ref_joint_pos_indexes)
    grip = rs.sim.model.site_name2id("gripper0_right_grip_site")
    n_sub = int(round(rs.control_timestep / rs.model_timestep))
    torque, qvel, qpos, ee = [], [], [rs.sim.data.qpos[qidx].copy()], [rs.sim.data.site_xpos[grip].copy()]
    for action in actions:
        for i in range(n_sub):
            rs.sim.step1()
            rs._pre_action(action.astype(np.float64), policy_step=(i == 0))
            rs.sim.step2()
            torque.append(rs.sim.data.qfrc_actuator[dofs].copy())
            qvel.append(rs.sim.data.qvel[dofs].copy())
        qpos.append(rs.sim.data.qpos[qidx].copy())
        ee.append(rs.sim.data.site_xpos[grip].copy())
    return np.array(torque), np.array(qvel), np.array(qpos), np.array(ee), rs.model_timestep


def _pusher_reference(actions):
    env = gym.make("Pusher-v5")
    env.reset(seed=SEED)
    base = env.unwrapped
    dofs = np.arange(7)
    tips = base.model.body("tips_arm").id
    torque, qvel, qpos, ee = [], [], [base.data.qpos[:7].copy()], [base.data.xpos[tips].copy()]
    for action in actions:
        base.data.ctrl[:] = action
        for _ in range(base.frame_skip):
            mujoco.mj_step(base.model, base.data)
            torque.append(base.data.qfrc_actuator[dofs].copy())
            qvel.append(base.data.qvel[dofs].copy())
        mujoco.mj_rnePostConstraint(base.model, base.data)
        qpos.append(base.data.qpos[:7].copy())
        ee.append(base.data.xpos[tips].copy())
    env.close()
    return np.array(torque), np.array(qvel), np.array(qpos), np.array(ee), base.model.opt.timestep


@pytest.mark.parametrize("env_id, reference", [("vla_envs/Lift-v0", _robosuite_reference), ("Pusher-v5", _pusher_reference)])
def test_energy_and_effort_equal_an_independent_substep_loop(env_id, reference):
    kwargs = {"terminate_on_success": False} if env_id.startswith("vla_envs") else {}
    env = JointStateRecorder(EmbodiedCost(gym.make(env_id, **kwargs)), record_substeps=True)
    actions = _actions(env.action_space)
    env.reset(seed=SEED)
    for action in actions:
        _, _, _, _, info = env.step(action)
    episode = env.embodied_probe.episode_arrays()
    readout = env.embodied_probe.readout
    env.close()

    ref_torque, ref_qvel, ref_qpos, ref_ee, dt = reference(actions)
    # the wrapped env followed exactly the same physics as the hand-driven loop
    np.testing.assert_array_equal(episode.qpos, ref_qpos)
    # ... and sampled the end effector named in the readout (grip site / last arm body)
    np.testing.assert_array_equal(episode.ee_pos, ref_ee)
    ee_path = np.linalg.norm(np.diff(ref_ee, axis=0), axis=1).sum()
    assert ee_path > 0.0 and info["embodied"]["ee_path_m"] == pytest.approx(ee_path, rel=1e-12)
    np.testing.assert_array_equal(episode.substep_torque.reshape(-1, 7), ref_torque)
    np.testing.assert_array_equal(episode.substep_qvel.reshape(-1, 7), ref_qvel)
    embodied = info["embodied"]
    assert embodied["energy_j"] == pytest.approx(np.abs(ref_torque * ref_qvel).sum() * dt, rel=1e-12)
    assert embodied["effort_nm2s"] == pytest.approx(np.square(ref_torque).sum() * dt, rel=1e-12)
    assert readout.n_substeps == len(ref_torque) // N_STEPS


@pytest.mark.parametrize("env_id", ["vla_envs/Lift-v0", "Pusher-v5", "Reacher-v5"])
def test_kinematic_metrics_equal_the_functions_on_recorded_arrays(env_id):
    env = EmbodiedCost(JointStateRecorder(gym.make(env_id), record_substeps=True))
    env.reset(seed=0)
    for action in _actions(env.action_space, 25, seed=1):
        _, _, terminated, truncated, info = env.step(action)
        assert list(info["embodied"]) == list(metrics.METRIC_KEYS)
    episode = env.embodied_probe.episode_arrays()
    readout = env.embodied_probe.readout
    env.close()
    n = readout.n_joints
    expected = metrics.episode_metrics(
        episode.qpos, episode.qvel, episode.ee_pos, episode.action,
        episode.substep_torque.reshape(-1, n), episode.substep_qvel.reshape(-1, n),
        readout.control_freq_hz, readout.physics_dt_s,
    )
    for key, value in expected.items():
        assert info["embodied"][key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert info["embodied"]["n_steps"] == 25.0
    assert info["embodied"]["completion_time_s"] == pytest.approx(25 / readout.control_freq_hz)


def test_substep_energy_differs_from_a_once_per_control_step_estimate():
    """Sampling torque and velocity once per control step misestimates energy; report by how much."""
    env = JointStateRecorder(EmbodiedCost(gym.make("vla_envs/Lift-v0", terminate_on_success=False)))
    env.reset(seed=0)
    for action in _actions(env.action_space, 100, seed=2):
        _, _, _, _, info = env.step(action)
    episode = env.embodied_probe.episode_arrays()
    control_dt = 1.0 / env.embodied_probe.readout.control_freq_hz
    env.close()
    exact = info["embodied"]["energy_j"]
    # end-of-step torque and velocity held over the whole control step
    per_step = float(np.abs(episode.torque[1:] * episode.qvel[1:]).sum() * control_dt)
    relative = per_step / exact - 1.0
    print(f"Lift, 100 random steps: substep-exact {exact:.1f} J, once per control step {per_step:.1f} J ({relative:+.1%})")
    assert abs(relative) > 0.05


def test_robot_readout_of_each_supported_env():
    lift = gym.make("vla_envs/Lift-v0")
    lift.reset(seed=0)
    r = read_robot(lift)
    assert (r.source, r.n_joints, r.ee_kind, r.n_substeps, r.control_freq_hz) == ("robosuite", 7, "site", 25, 20.0)
    assert r.ee_name == "gripper0_right_grip_site"
    lift.close()
    pusher = gym.make("Pusher-v5")
    r = read_robot(pusher)
    assert r.joint_names[0] == "r_shoulder_pan_joint" and r.n_joints == 7
    assert (r.ee_name, r.n_substeps, r.control_freq_hz) == ("tips_arm", 5, pytest.approx(20.0))
    reacher = gym.make("Reacher-v5")
    r = read_robot(reacher)
    assert (r.joint_names, r.ee_name, r.control_freq_hz) == (("joint0", "joint1"), "fingertip", pytest.approx(50.0))
    r = read_robot(reacher, joint_names=["joint1"], ee_body="body1")
    assert (r.joint_names, r.ee_name) == (("joint1",), "body1")


def test_robot_readout_errors_are_clear():
    from wrappers import RobotNotFoundError

    reacher = gym.make("Reacher-v5")
    with pytest.raises(RobotNotFoundError, match=r"joint 'elbow' does not exist: expected one of \['joint0'"):
        read_robot(reacher, joint_names=["elbow"])
    with pytest.raises(RobotNotFoundError, match=r"ee_site 'tip' does not exist"):
        read_robot(reacher, ee_site="tip")
    with pytest.raises(RobotNotFoundError, match="cannot find a MuJoCo model"):
        read_robot(gym.make("CartPole-v1"))


@pytest.mark.parametrize("env_id, reference", [("vla_envs/Lift-v0", _robosuite_reference), ("Pusher-v5", _pusher_reference)])
def test_the_recorded_ledger_equals_an_independent_substep_loop(env_id, reference):
    kwargs = {"terminate_on_success": False} if env_id.startswith("vla_envs") else {}
    env = JointStateRecorder(EmbodiedCost(gym.make(env_id, **kwargs)), record_substeps=True)
    env.reset(seed=SEED)
    actions = _actions(env.action_space, seed=5)
    for action in actions:
        env.step(action)
    env.close()
    ledger, limits = env.last_episode.metadata["metrics"], env.last_episode.metadata["limits"]
    torque, qvel, _, _, dt = reference(actions)
    power = torque * qvel
    torque_limit = np.array(limits["torque_nm"])
    expected_torque_limit = {"vla_envs/Lift-v0": [80.0] * 5 + [12.0] * 2, "Pusher-v5": [2.0] * 7}[env_id]
    np.testing.assert_array_equal(torque_limit, expected_torque_limit)
    assert ledger["positive_work_j"] == pytest.approx(power[power > 0].sum() * dt, rel=1e-12)
    assert ledger["negative_work_j"] == pytest.approx(power[power < 0].sum() * dt, rel=1e-12)
    fractions = np.abs(torque) / torque_limit
    assert ledger["peak_torque_frac"] == pytest.approx(fractions.max(), rel=1e-12)
    assert ledger["torque_saturation_frac"] == pytest.approx(np.mean(fractions >= 0.98), abs=1e-12)
    if env_id == "Pusher-v5":  # no velocity limits in the model
        assert all(np.isnan(limits["velocity_rad_s"])) and np.isnan(ledger["peak_joint_speed_frac"])
    else:  # the Panda's datasheet limits
        speed = np.abs(qvel) / np.array([2.175] * 4 + [2.61] * 3)
        assert ledger["peak_joint_speed_frac"] == pytest.approx(speed.max(), rel=1e-12)
    # random actions both drive and brake the arm
    assert ledger["positive_work_j"] > 0 > ledger["negative_work_j"]


@pytest.mark.parametrize("env_id", ["Pusher-v5", "Reacher-v5", "vla_envs/Lift-v0"])
def test_the_compiled_accounting_equals_its_plain_python_bit_for_bit(env_id):
    """The wrappers' numbers (numba) against ``account_step.py_func`` (plain Python) fed with the
    recorded arrays of the same episode: every metric and step term, the same bits."""
    from wrappers.accounting import RunningMetrics

    kwargs = {"terminate_on_success": False} if env_id.startswith("vla_envs") else {}
    env = EfficiencyReward(JointStateRecorder(EmbodiedCost(gym.make(env_id, **kwargs)), record_substeps=True),
                           config={"weights": dict.fromkeys(STEP_TERM_KEYS, 1.0)})
    env.reset(seed=SEED)
    readout = env.get_wrapper_attr("embodied_probe").readout
    torque_limit, velocity_limit = readout.limits()
    infos = []
    for action in _actions(env.action_space, seed=9):
        infos.append(env.step(action)[-1])
    episode = env.get_wrapper_attr("embodied_probe").episode_arrays()
    env.close()
    plain = RunningMetrics(readout.control_freq_hz, readout.n_joints, episode.action.shape[1],
                           torque_limit, velocity_limit, compiled=False)
    plain.reset(episode.qpos[0], episode.qvel[0], episode.ee_pos[0])
    for t, info in enumerate(infos):
        terms = plain.update(episode.qpos[t + 1], episode.qvel[t + 1], episode.ee_pos[t + 1], episode.action[t],
                             episode.substep_torque[t], episode.substep_qvel[t], readout.physics_dt_s)
        assert [-v for v in terms.values()] == [info["reward_terms"][k] for k in STEP_TERM_KEYS], t
        got, expected = plain.values(), info["embodied"]
        assert np.array_equal(np.array(list(got.values())), np.array(list(expected.values())), equal_nan=True), t
