"""The robosuite 1.4 side of the LIBERO parity check: runs INSIDE the separate robosuite 1.4
environment (``.venv-libero14``: ``hf-libero`` 0.1.4, robosuite 1.4.0), never in the project's.

Every LIBERO checkpoint was trained on demonstrations recorded with robosuite 1.4, so
``vla_envs.libero.parity`` replays the same initial states and actions here and in the
project's robosuite 1.5 LIBERO and compares what a policy would see. This file imports only
LIBERO, robosuite 1.4, numpy and the standard library (the project itself is not installed
in that environment), and uses LIBERO's own ``OffScreenRenderEnv`` exactly as published
evaluations do: ``reset()``, then ``set_init_state(state)``, then ``step(action)``.

    python parity_reference.py REQUEST.npz RESULT.npz

``REQUEST.npz`` holds ``meta`` (a JSON string: ``bddl_file``, ``assets``, ``image_size``,
``episodes``) and, per episode ``e``, ``init_state_e`` (S,) and ``actions_e`` (T, 7).
``RESULT.npz`` holds ``meta`` (a JSON string: versions, the controller configuration in use,
the robot base pose, state sizes) and, per episode, the per-step arrays (T+1 rows: after
``set_init_state`` and after each action) ``eef_pos_e``, ``eef_quat_e``, ``gripper_qpos_e``,
``joint_pos_e``, ``success_e``, ``state_e``; and the raw camera frames LIBERO returns right
after episode 0's ``set_init_state`` (``image_agentview``, ``image_robot0_eye_in_hand``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np

CAMERAS = ("agentview", "robot0_eye_in_hand")
RECORDED = ("robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos")


def _point_libero_at_assets(assets: str) -> None:
    """hf-libero looks for its assets inside its package folder, else downloads them from a
    hub; the project's asset wheels are used instead (nothing downloaded, nothing copied)."""
    import libero.libero as libero_root

    if not os.path.isdir(os.path.join(assets, "scenes")):
        raise ValueError(f"assets={assets!r}: expected LIBERO's assets folder holding scenes/")
    libero_root._assets_path_cache = assets


def _as_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def controller_config(env) -> dict[str, Any]:
    """The arm and gripper controller settings actually in use (read from the live objects)."""
    robot = env.env.robots[0]
    arm = robot.controller
    gripper = robot.gripper
    return {
        "type": arm.name,
        "kp": _as_list(arm.kp), "kd": _as_list(arm.kd),
        "input_max": _as_list(arm.input_max), "input_min": _as_list(arm.input_min),
        "output_max": _as_list(arm.output_max), "output_min": _as_list(arm.output_min),
        "control_delta": bool(arm.use_delta), "input_ref_frame": "world",
        "uncouple_pos_ori": bool(arm.uncoupling),
        "interpolator": None if arm.interpolator_pos is None else type(arm.interpolator_pos).__name__,
        "impedance_mode": arm.impedance_mode,
        "control_freq_hz": float(env.env.control_freq),
        "model_timestep_s": float(env.env.model_timestep),
        "gripper": type(gripper).__name__, "gripper_speed": float(gripper.speed),
        "gripper_format_action": "every physics substep",
        "lite_physics": None,
        "torque_limits": [_as_list(limit) for limit in robot.torque_limits],
    }


def base_pose(env) -> dict[str, list[float]]:
    """World pose of the robot's base body (``robot0_base``) and first link."""
    sim = env.env.sim
    out = {}
    for name in ("robot0_base", "robot0_link0"):
        body = sim.model.body_name2id(name)
        out[name] = {"pos": sim.data.xpos[body].tolist(), "quat_wxyz": sim.data.xquat[body].tolist()}
    return out


def run(request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    meta = json.loads(str(request["meta"]))
    _point_libero_at_assets(meta["assets"])
    import mujoco
    import robosuite
    from libero.libero.envs import OffScreenRenderEnv

    size = int(meta["image_size"])
    env = OffScreenRenderEnv(bddl_file_name=meta["bddl_file"], camera_heights=size, camera_widths=size,
                             camera_names=list(CAMERAS))
    result: dict[str, np.ndarray] = {}
    try:
        env.seed(0)
        info: dict[str, Any] = {"robosuite": robosuite.__version__, "mujoco": mujoco.__version__,
                                "numpy": np.__version__, "controller": controller_config(env)}
        for episode in range(int(meta["episodes"])):
            env.reset()
            init_state = np.asarray(request[f"init_state_{episode}"], dtype=np.float64)
            obs = env.set_init_state(init_state)
            if episode == 0:
                for camera in CAMERAS:
                    result[f"image_{camera}"] = np.asarray(obs[f"{camera}_image"])
                info["base"] = base_pose(env)
                info["state_size"] = int(env.get_sim_state().size)
                info["init_state_size"] = int(init_state.size)
                info["nq"], info["nv"] = int(env.env.sim.model.nq), int(env.env.sim.model.nv)
                info["obs_shapes"] = {key: list(np.shape(value)) for key, value in obs.items()}
                # the trajectory itself needs no pixels: stop rendering them (3 steps/s otherwise)
                for camera in CAMERAS:
                    env.env.modify_observable(f"{camera}_image", "enabled", False)
            rows: dict[str, list[np.ndarray]] = {key: [np.asarray(obs[key], dtype=np.float64)] for key in RECORDED}
            success = [bool(env.check_success())]
            states = [env.get_sim_state().copy()]
            for action in np.asarray(request[f"actions_{episode}"], dtype=np.float64):
                obs, _, _, _ = env.step(action)
                for key in RECORDED:
                    rows[key].append(np.asarray(obs[key], dtype=np.float64))
                success.append(bool(env.check_success()))
                states.append(env.get_sim_state().copy())
            for key in RECORDED:
                result[f"{key.removeprefix('robot0_')}_{episode}"] = np.stack(rows[key])
            result[f"success_{episode}"] = np.asarray(success)
            result[f"state_{episode}"] = np.stack(states)
    finally:
        env.close()
    result["meta"] = np.asarray(json.dumps(info))
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with np.load(argv[0], allow_pickle=False) as loaded:
        request = {key: loaded[key] for key in loaded.files}
    result = run(request)
    tmp = argv[1] + ".tmp.npz"
    np.savez(tmp, **result)
    os.replace(tmp, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
