"""The wrappers on MuJoCo suites built on other base classes: gymnasium-robotics (FrankaKitchen,
whose MujocoEnv sits in ``robot_env``; Fetch, which calls ``mujoco.mj_step`` itself) and
Meta-World (a MujocoEnv subclass), Adroit. Energy and effort are checked against an independent
substep replay on a copy of the simulation. Fetch's and Meta-World's arms follow a mocap weld and
Adroit's hand and FrankaKitchen's fingers have slide joints, so each is measured with the arm's
hinge joints, which the default refuses to guess (docs/metrics.md, "Arm joints")."""

import copy

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from wrappers import EmbodiedCost, JointStateRecorder, RobotNotFoundError, metrics

gymnasium_robotics = pytest.importorskip("gymnasium_robotics")
gym.register_envs(gymnasium_robotics)
pytest.importorskip("metaworld")

ORIGINAL_MJ_STEP = mujoco.mj_step
N_STEPS = 8

FETCH_ARM = [f"robot0:{name}_joint" for name in
             ("shoulder_pan", "shoulder_lift", "upperarm_roll", "elbow_flex", "forearm_roll", "wrist_flex", "wrist_roll")]
SAWYER_ARM = [f"right_j{k}" for k in range(7)]
KITCHEN_ARM = [f"robot:panda0_joint{k}" for k in range(1, 8)]
ADROIT_WRIST = ["ARRx", "ARRy", "ARRz", "WRJ1", "WRJ0"]  # the hand's rotation; ARTz (its lift) is a slide

# env id: (gym.make kwargs, wrapper kwargs, readout source, substeps, actuators drive the joints)
CASES = {
    "FrankaKitchen-v1": ({}, {"joint_names": KITCHEN_ARM}, "mujoco_env", 40, True),
    "FetchPickAndPlace-v4": ({}, {"joint_names": FETCH_ARM}, "mujoco", 20, False),
    "Meta-World/MT1": ({"env_name": "pick-place-v3"}, {"joint_names": SAWYER_ARM}, "mujoco_env", 5, False),
    "AdroitHandDoor-v1": ({}, {"joint_names": ADROIT_WRIST}, "mujoco_env", 5, True),
}


def _replayed_run(env_id):
    make_kwargs, wrapper_kwargs, source, substeps, _ = CASES[env_id]
    env = JointStateRecorder(EmbodiedCost(gym.make(env_id, **make_kwargs), **wrapper_kwargs), record_substeps=True)
    env.reset(seed=0)
    readout = env.get_wrapper_attr("embodied_probe").readout
    assert readout.source == source and readout.n_substeps == substeps
    model, data = readout.get_model_data()
    dofs = readout.dof_index
    rng = np.random.default_rng(0)
    torque, qvel = [], []
    for _ in range(N_STEPS):
        replica = copy.copy(data)  # the state before the step, stepped below by hand
        env.step(rng.uniform(-1, 1, env.action_space.shape).astype(env.action_space.dtype))
        replica.ctrl[:] = data.ctrl  # what the env's step commanded (motors and mocap targets)
        replica.mocap_pos[:], replica.mocap_quat[:] = data.mocap_pos, data.mocap_quat
        for _ in range(substeps):
            ORIGINAL_MJ_STEP(model, replica)
            torque.append(replica.qfrc_actuator[dofs].copy())
            qvel.append(replica.qvel[dofs].copy())
        np.testing.assert_array_equal(replica.qpos, data.qpos)  # the replay is the env's own physics
    episode = env.get_wrapper_attr("embodied_probe").episode_arrays()
    values = env.get_wrapper_attr("embodied_probe").values()
    env.close()
    return episode, values, np.array(torque), np.array(qvel), float(model.opt.timestep)


@pytest.mark.parametrize("env_id", list(CASES))
def test_energy_and_effort_equal_an_independent_substep_replay(env_id):
    episode, values, torque, qvel, dt = _replayed_run(env_id)
    n = torque.shape[1]
    np.testing.assert_array_equal(episode.substep_torque.reshape(-1, n), torque)
    np.testing.assert_array_equal(episode.substep_qvel.reshape(-1, n), qvel)
    assert values["energy_j"] == pytest.approx(metrics.energy_j(torque, qvel, dt), rel=1e-12)
    assert values["effort_nm2s"] == pytest.approx(metrics.effort_nm2s(torque, dt), rel=1e-12)
    assert values["n_steps"] == N_STEPS and values["joint_path_rad"] > 0
    if CASES[env_id][4]:
        assert values["energy_j"] > 0
    else:  # a mocap weld moves the arm: its joints carry no actuator torque, the replay's neither
        assert values["energy_j"] == values["effort_nm2s"] == 0.0 and not np.any(torque)
    assert values["joint_path_rad"] == pytest.approx(metrics.joint_path_rad(episode.qpos), rel=1e-12)
    assert values["ee_path_m"] == pytest.approx(metrics.ee_path_m(episode.ee_pos), rel=1e-12)


def test_the_mj_step_hook_is_per_simulation_and_removed_on_close():
    def measured():
        return JointStateRecorder(EmbodiedCost(gym.make("FetchPickAndPlace-v4"), joint_names=FETCH_ARM),
                                  record_substeps=True)

    a, b = measured(), measured()
    plain = gym.make("FetchPickAndPlace-v4")  # not measured: its steps pass straight through
    for env in (a, b, plain):
        env.reset(seed=0)
    assert mujoco.mj_step is not ORIGINAL_MJ_STEP
    action = np.full(4, 0.5, np.float32)
    for _ in range(3):
        _, _, _, _, info_a = a.step(action)
        plain.step(action)
    _, _, _, _, info_b = b.step(action)
    assert info_a["embodied"]["n_steps"] == 3 and info_b["embodied"]["n_steps"] == 1
    # the arm has no actuator torque (a mocap weld moves it), so the hook shows in its substep
    # velocities: every substep of each env's own steps was captured, and the arm moved in each
    for env, steps in ((a, 3), (b, 1)):
        qvel = env.get_wrapper_attr("embodied_probe").episode_arrays().substep_qvel
        assert qvel.shape == (steps, 20, 7) and np.all(np.any(qvel != 0, axis=-1))
    a.close()
    assert mujoco.mj_step is not ORIGINAL_MJ_STEP  # b still needs it
    b.close()
    plain.close()
    assert mujoco.mj_step is ORIGINAL_MJ_STEP


def test_an_arm_moved_by_a_mocap_weld_has_kinematics_but_no_actuator_torque():
    env = EmbodiedCost(gym.make("FetchReach-v4"), joint_names=FETCH_ARM, ee_site="robot0:grip")
    env.reset(seed=0)
    for _ in range(5):
        _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0, 0.0], np.float32))
    env.close()
    assert info["embodied"]["ee_path_m"] > 0.01 and info["embodied"]["joint_path_rad"] > 0
    assert info["embodied"]["energy_j"] == 0.0  # the weld, not an actuator, moves the arm


def test_an_env_without_mujoco_is_refused_clearly():
    from wrappers import RobotNotFoundError

    with pytest.raises(RobotNotFoundError, match="cannot find a MuJoCo model"):
        EmbodiedCost(gym.make("CartPole-v1")).reset(seed=0)


@pytest.mark.parametrize("env_id, make_kwargs, arm", [
    ("FetchPickAndPlace-v4", {}, FETCH_ARM),
    ("FetchReach-v4", {}, FETCH_ARM),
    ("Meta-World/MT1", {"env_name": "pick-place-v3"}, SAWYER_ARM),
])
def test_a_mocap_moved_arm_is_refused_by_default_with_its_joints_to_pass(env_id, make_kwargs, arm):
    # the actuated joints there are the gripper's fingers (Fetch measured ~4,183 J in 2 s on them)
    env = EmbodiedCost(gym.make(env_id, **make_kwargs))
    with pytest.raises(RobotNotFoundError, match="moved by the mocap body") as refused:
        env.reset(seed=0)
    env.close()
    assert f"Expected joint_names= with the arm's hinge joints: joint_names={arm}" in str(refused.value)


def test_slide_joints_are_refused_in_radian_sums_by_default_and_by_choice():
    env = EmbodiedCost(gym.make("AdroitHandDoor-v1"))
    with pytest.raises(RobotNotFoundError, match=r"include the slide joints \['ARTz'\] \(metres\)") as refused:
        env.reset(seed=0)
    env.close()
    assert "Expected joint_names= with hinge joints only, e.g. joint_names=['ARRx', 'ARRy'" in str(refused.value)
    with pytest.raises(RobotNotFoundError, match=r"joint_names= has the slide joint 'robot:panda0_finger_joint1' "
                                                 r"\(metres\).*e\.g\. joint_names=\['robot:panda0_joint7'\]"):
        EmbodiedCost(gym.make("FrankaKitchen-v1"),
                     joint_names=["robot:panda0_joint7", "robot:panda0_finger_joint1"]).reset(seed=0)
