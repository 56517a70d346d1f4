"""Which geoms a camera can see: a conservative bounding-sphere test against its view frustum.

MuJoCo's renderer hands every geom of the scene to OpenGL, and a software rasteriser transforms
and clips all of their triangles, also for a camera that sees none of them (the wrist camera
sees the gripper and the table, not the arm behind it). Leaving out geoms whose bounding sphere
lies wholly outside the frustum changes no pixel when nothing outside the view can show up in it:
lean rendering draws no shadows or reflections, so there it holds (tests compare images bit for
bit). ``full`` rendering keeps every geom.
"""

from __future__ import annotations

import mujoco
import numpy as np

# Added to every bounding radius: decimated meshes may stray a little outside the original's
# sphere (vla_envs.lean_meshes.TOLERANCE_M), and a miss costs a wrong image while a spare costs
# nothing but time.
MARGIN_M = 0.05


def geoms_in_view(model: mujoco.MjModel, data: mujoco.MjData, camera_id: int, aspect: float,
                  margin_m: float = MARGIN_M) -> np.ndarray:
    """(ngeom,) bool: True for every geom whose bounding sphere may reach into the view of the
    fixed camera ``camera_id`` at ``aspect`` = width / height. Planes and other unbounded geoms
    (``geom_rbound == 0``) always count as in view.

    Camera frame (MuJoCo): x right, y up, looking along -z; ``cam_fovy`` is the vertical field
    of view in degrees. A sphere is out when it lies behind the camera or beyond one of the four
    side planes by more than its radius.
    """
    position = data.cam_xpos[camera_id]
    rotation = data.cam_xmat[camera_id].reshape(3, 3)  # columns: the camera's axes in the world
    local = (data.geom_xpos - position) @ rotation
    x, y, depth = local[:, 0], local[:, 1], -local[:, 2]
    radius = model.geom_rbound + margin_m
    tan_y = np.tan(np.radians(model.cam_fovy[camera_id]) / 2)
    tan_x = tan_y * aspect
    # signed distance outside the plane |y| = tan_y * depth (and likewise for x)
    beyond_y = (np.abs(y) - tan_y * depth) / np.hypot(1.0, tan_y)
    beyond_x = (np.abs(x) - tan_x * depth) / np.hypot(1.0, tan_x)
    inside = (depth > -radius) & (beyond_y <= radius) & (beyond_x <= radius)
    return inside | (model.geom_rbound == 0)
