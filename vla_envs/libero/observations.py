"""LIBERO's robot state as the ecosystem's LIBERO clients build it, from robosuite's observation.

openpi's LIBERO client (``examples/libero/main.py``) and LeRobot's LIBERO processor
(``LiberoProcessorStep``) both give a model the same 8 numbers::

    eef_pos (3, m) | eef_axis_angle (3, rad) | gripper_qpos (2, m)

``eef_axis_angle`` is robosuite's ``quat2axisangle`` of ``robot0_eef_quat`` (x, y, z, w), the
function openpi copies: the rotation vector, angle times unit axis, with the angle in [0, 2 pi].
LIBERO envs here carry it, in float64 as robosuite computes it, as ``obs["libero_state"]``; the
conventions of ``policies.conventions`` rename and cast it for each ecosystem.
"""

from __future__ import annotations

import math

import numpy as np

# (name, size) in order: the layout is declared here once
LIBERO_STATE_LAYOUT: tuple[tuple[str, int], ...] = (("eef_pos", 3), ("eef_axis_angle", 3), ("gripper_qpos", 2))
LIBERO_STATE_SIZE = sum(size for _, size in LIBERO_STATE_LAYOUT)
# robosuite's observation key of each part that is read as it is
_RAW_KEYS = {"eef_pos": "robot0_eef_pos", "gripper_qpos": "robot0_gripper_qpos"}
_RAW_QUAT_KEY = "robot0_eef_quat"


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """robosuite's ``quat2axisangle`` (openpi's ``_quat2axisangle``), without writing into its
    input as both of those do: ``w`` clipped to [-1, 1]; a rotation too small for its axis to be
    defined (``sqrt(1 - w^2)`` close to 0) is ``(0, 0, 0)``."""
    quat = np.array(quat_xyzw, dtype=np.float64)
    if quat.shape != (4,):
        raise ValueError(f"quaternion of shape {quat.shape}: expected (4,) in (x, y, z, w) order")
    quat[3] = min(max(quat[3], -1.0), 1.0)
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def libero_state(raw: dict[str, np.ndarray]) -> np.ndarray:
    """The 8-number LIBERO state (``LIBERO_STATE_LAYOUT``), float64, from robosuite's raw
    observation of ``robot0``."""
    missing = [key for key in (*_RAW_KEYS.values(), _RAW_QUAT_KEY) if key not in raw]
    if missing:
        raise KeyError(f"robosuite's observation lacks {missing}: expected the Panda's robot0 observables")
    parts = {name: np.asarray(raw[key], dtype=np.float64) for name, key in _RAW_KEYS.items()}
    parts["eef_axis_angle"] = quat_to_axis_angle(raw[_RAW_QUAT_KEY])
    return np.concatenate([parts[name] for name, _ in LIBERO_STATE_LAYOUT])
