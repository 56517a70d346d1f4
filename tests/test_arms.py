"""Every arm in ``vla_envs.robots.SUPPORTED_ROBOTS``: it builds, passes both Gymnasium env
checkers, every controller drives it with the action size its joint count says, and the
wrappers measure its own joints, with energy equal to an independent substep replay."""

import warnings

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.wrappers.common import PassiveEnvChecker

from vla_envs.config import get_task_config
from vla_envs.controllers import CONTROLLERS, arm_action_dims, hold_position_action
from vla_envs.robots import DEFAULT_ROBOT, SUPPORTED_ROBOTS, check_robot
from wrappers import EmbodiedCost, JointStateRecorder

from test_wrappers_capture import SEED, _actions, _robosuite_reference

ARMS = list(SUPPORTED_ROBOTS)
UNBOUNDED_STATE_NOTES = ("minimum value is -infinity", "maximum value is infinity")


def _arm_joints_in_the_model(model: mujoco.MjModel) -> list[str]:
    """The robot's hinge joints read straight from the MuJoCo model (robosuite prefixes the arm's
    joints ``robot0_`` and the gripper's ``gripper0_``), independent of robosuite's indexes."""
    return [
        model.joint(j).name
        for j in range(model.njnt)
        if model.joint(j).name.startswith("robot0_") and model.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE
    ]


@pytest.mark.parametrize("robot", ARMS)
def test_each_arm_passes_both_env_checkers(robot):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env = gym.make("vla_envs/Lift-v0", robot=robot)
        try:
            # gym.make's passive checker wraps the env and checks its spaces, reset and step
            wrapper, passive = env, False
            while wrapper is not wrapper.unwrapped:
                passive = passive or isinstance(wrapper, PassiveEnvChecker)
                wrapper = wrapper.env
            assert passive
            obs, _ = env.reset(seed=0)
            env.step(env.action_space.sample())
            gym_check_env(env.unwrapped, skip_render_check=True)
            base = env.unwrapped
            rs = base.robosuite_env
            assert base.robot == robot and rs.robots[0].name == robot
            assert env.observation_space.contains(obs)
            spec = SUPPORTED_ROBOTS[robot]
            # the declared facts are robosuite's
            assert len(rs.robots[0].robot_joints) == spec.n_joints
            assert type(rs.robots[0].gripper[rs.robots[0].arms[0]]).__name__ == spec.gripper
            assert env.action_space.shape == (7,)  # OSC_POSE: 6 + gripper on every arm
            # the task files' wrist camera is mounted on every arm
            assert base.task_config.cameras.wrist_image in rs.sim.model.camera_names
        finally:
            env.close()
    # gymnasium's checkers report problems as "WARN: ..." warnings; the state is unbounded on
    # every arm by design (joint velocities, object positions), which they note and nothing else
    problems = [str(w.message) for w in caught if "WARN" in str(w.message)]
    assert [m for m in problems if not any(note in m for note in UNBOUNDED_STATE_NOTES)] == []


@pytest.mark.parametrize("controller", list(CONTROLLERS))
@pytest.mark.parametrize("robot", ARMS)
def test_every_controller_drives_every_arm(robot, controller):
    env = gym.make("vla_envs/Lift-v0", robot=robot, controller=controller, terminate_on_success=False)
    try:
        arm = arm_action_dims(controller, robot)
        assert env.action_space.shape == (arm + 1,)
        rs = env.unwrapped.robosuite_env
        assert rs.robots[0].composite_controller.part_controllers["right"].name == controller
        env.reset(seed=0)
        qidx = rs.robots[0]._ref_joint_pos_indexes
        q0 = rs.sim.data.qpos[qidx].copy()
        action = np.zeros(env.action_space.shape, np.float32)
        # +x for the task-space controllers, the first joint for the others (the Sawyer's was held
        # still by a contact with its base until vla_envs.robosuite_fixes excluded it)
        action[0] = 0.5
        for _ in range(5):
            obs, *_ = env.step(action)
        assert np.isfinite(obs["state"]).all()
        if controller == "JOINT_TORQUE":
            # robosuite scales torque commands to +-0.1 N m (on every arm), too little to move
            # a link against friction: the commanded torque reaches the first joint, on top of
            # the controller's gravity compensation
            part = rs.robots[0].composite_controller.part_controllers["right"]
            dof = rs.robots[0]._ref_joint_vel_indexes[0]
            commanded = 0.5 * part.output_max[0] + rs.sim.data.qfrc_bias[dof]
            assert rs.sim.data.qfrc_actuator[dof] == pytest.approx(commanded, abs=5e-3)
        else:
            assert np.abs(rs.sim.data.qpos[qidx] - q0).max() > 1e-3
    finally:
        env.close()


@pytest.mark.parametrize("robot", ARMS)
def test_hold_position_zeroes_the_arms_own_dimensions(robot):
    for controller in CONTROLLERS:
        arm = arm_action_dims(controller, robot)
        expected = SUPPORTED_ROBOTS[robot].n_joints if controller.startswith("JOINT") else {"OSC_POSE": 6, "OSC_POSITION": 3}[controller]
        assert arm == expected
        last = np.arange(1.0, arm + 2.0, dtype=np.float32)  # arm dims + a gripper
        held = hold_position_action(controller, last, robot)
        assert (held[:arm] == 0).all() and held[arm] == last[arm]


@pytest.mark.parametrize("robot", ARMS)
def test_energy_of_each_arm_equals_an_independent_substep_replay(robot):
    """The wrappers measure the arm's own joints (6 on the UR5e) and integrate |tau qd| over
    every substep exactly as a hand-driven robosuite substep loop does."""
    n_steps = 10
    env = JointStateRecorder(
        EmbodiedCost(gym.make("vla_envs/Lift-v0", robot=robot, terminate_on_success=False)), record_substeps=True
    )
    actions = _actions(env.action_space, n_steps)
    env.reset(seed=SEED)
    for action in actions:
        _, _, _, _, info = env.step(action)
    episode = env.embodied_probe.episode_arrays()
    readout = env.embodied_probe.readout
    model = readout.model
    env.close()

    n = SUPPORTED_ROBOTS[robot].n_joints
    assert readout.n_joints == n and list(readout.joint_names) == _arm_joints_in_the_model(model)
    assert readout.settings()["robot_name"] == robot and readout.settings()["n_joints"] == n
    assert env.last_episode.metadata["robot"]["n_joints"] == n

    ref_torque, ref_qvel, ref_qpos, ref_ee, dt = _robosuite_reference(actions, robot)
    np.testing.assert_array_equal(episode.qpos, ref_qpos)
    np.testing.assert_array_equal(episode.ee_pos, ref_ee)
    np.testing.assert_array_equal(episode.substep_torque.reshape(-1, n), ref_torque)
    np.testing.assert_array_equal(episode.substep_qvel.reshape(-1, n), ref_qvel)
    embodied = info["embodied"]
    assert embodied["energy_j"] > 0.0
    assert embodied["energy_j"] == pytest.approx(np.abs(ref_torque * ref_qvel).sum() * dt, rel=1e-12)
    assert embodied["effort_nm2s"] == pytest.approx(np.square(ref_torque).sum() * dt, rel=1e-12)
    joint_path = np.linalg.norm(np.diff(ref_qpos, axis=0), axis=1).sum()
    assert embodied["joint_path_rad"] == pytest.approx(joint_path, rel=1e-12)


def test_the_arm_defaults_to_the_task_configs_and_gym_make_overrides_it():
    from vla_envs.robosuite_env import RobosuiteEnv

    lift = get_task_config("Lift")
    assert lift.robot == DEFAULT_ROBOT
    env = RobosuiteEnv(lift.model_copy(update={"robot": "UR5e"}))
    try:
        assert env.robot == "UR5e" and env.robosuite_env.robots[0].name == "UR5e"
    finally:
        env.close()


def test_an_unsupported_arm_is_named_with_the_choices():
    with pytest.raises(ValueError, match=r"robot='Baxter' is not a supported arm: expected one of \['Panda', 'UR5e'"):
        gym.make("vla_envs/Lift-v0", robot="Baxter")
    with pytest.raises(ValueError, match=r"robot='ur5e'"):
        check_robot("ur5e")
    with pytest.raises(ValueError, match=r"robot='Baxter'"):
        hold_position_action("JOINT_POSITION", np.zeros(8), "Baxter")
