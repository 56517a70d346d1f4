"""Offscreen camera rendering for MuJoCo scenes that are rebuilt on every reset.

robosuite's hard reset compiles a new ``MjModel`` each episode, and its own offscreen renderer
then builds a new GL context and uploads every mesh and texture again: about 0.65 s per reset
with Mesa's software EGL here, more than the rest of the reset. The scene's assets do not change
between episodes (only object sizes and poses do, which the scene, not the GL context, carries),
so ``CameraRenderer`` keeps one GL context and reuses the uploaded assets while a checksum of
them is unchanged, rebuilding only when they differ.

Quality presets:

- ``"lean"`` (default): no multi-sample anti-aliasing, no shadows, reflections or skybox,
  visual-only meshes decimated to ``mesh_face_budget`` faces each (``vla_envs.lean_meshes``),
  and geoms outside a camera's view left out of its frame (``vla_envs.frustum``); all of it in a
  copy of the model that only the renderer uses, never the physics model. Several times the
  frame rate of ``"full"`` under software rendering (``benchmarks/env_throughput.py``).
- ``"full"``: the model's own visual settings and meshes (robosuite's look).

Images come out upright (row 0 is the top of the picture), uint8, H x W x 3.

One caveat when mixing renderers in one process: robosuite makes its GL context current only
when it creates it, and frees it on a hard reset without making it current, so its renders and
deletions land in whichever context is current. This renderer makes its own context current
for every frame; the suite's environments never create robosuite render contexts. Code that
also steps robosuite camera envs in the same process should make robosuite's context current
before their ``step`` and ``reset`` (``benchmarks/env_throughput.py`` shows how).
"""

from __future__ import annotations

import atexit
import copy
import os
import weakref
import zlib
from typing import Literal

import mujoco
import numpy as np

from vla_envs.frustum import geoms_in_view
from vla_envs.lean_meshes import DEFAULT_FACE_BUDGET, DecimationStats, check_face_budget, lean_render_model

RenderQuality = Literal["lean", "full"]
RENDER_QUALITIES: tuple[str, ...] = ("lean", "full")

# A geom group the renderer never shows (mjNGROUP = 6; groups 3-5 are off by default): where
# lean rendering puts the geoms a camera cannot see, in its own copy of the model.
_HIDDEN_GROUP = 5

LEAN_OFF_FLAGS = (
    mujoco.mjtRndFlag.mjRND_SHADOW,
    mujoco.mjtRndFlag.mjRND_REFLECTION,
    mujoco.mjtRndFlag.mjRND_SKYBOX,
)


# GL contexts must be freed before mujoco's EGL module terminates its display at exit. atexit
# runs handlers last-in first-out, so ours is registered after that module is imported.
_LIVE_RENDERERS: "weakref.WeakSet[CameraRenderer]" = weakref.WeakSet()
_exit_hook_registered = False


def _close_live_renderers() -> None:
    for renderer in list(_LIVE_RENDERERS):
        renderer.close()


def _gl_context_class():
    """The GL backend ``MUJOCO_GL`` names now.

    mujoco picks its default backend once, at ``import mujoco``; a program that imported mujoco
    before ``import vla_envs`` set ``MUJOCO_GL=egl`` would otherwise get GLFW, which fails headless.
    """
    backend = os.environ.get("MUJOCO_GL", "").lower().strip()
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    else:
        from mujoco.rendering.classic.gl_context import GLContext
    return GLContext


def _new_gl_context(width: int, height: int):
    global _exit_hook_registered
    context = _gl_context_class()(width, height)  # the first one registers mujoco's eglTerminate
    if not _exit_hook_registered:
        atexit.register(_close_live_renderers)
        _exit_hook_registered = True
    return context


def asset_signature(model: mujoco.MjModel) -> tuple:
    """What a GL context uploads from a model: meshes, textures, height fields, materials.

    Two models with equal signatures can share one ``MjrContext``.
    """
    crc = 0
    for array in (
        model.mesh_vert,
        model.mesh_face,
        model.mesh_normal,
        model.mesh_texcoord,
        model.tex_data,
        model.tex_height,
        model.tex_width,
        model.hfield_data,
        model.mat_texid,
        model.mat_texuniform,
        model.mat_texrepeat,
    ):
        crc = zlib.crc32(np.ascontiguousarray(array).view(np.uint8), crc)
    counts = (model.nmesh, model.ntex, model.nhfield, model.nmat, model.nskin, model.nflex)
    return counts + (crc,)


def check_render_quality(quality: object) -> str:
    """``quality`` if it is one of ``RENDER_QUALITIES``; a ValueError naming the choices otherwise."""
    if not isinstance(quality, str) or quality not in RENDER_QUALITIES:
        raise ValueError(f"render_quality={quality!r} is not supported: expected one of {RENDER_QUALITIES}")
    return quality


class CameraRenderer:
    """Renders named cameras of a MuJoCo model into uint8 images, reusing one GL context."""

    def __init__(
        self,
        quality: RenderQuality = "lean",
        max_width: int = 640,
        max_height: int = 480,
        mesh_face_budget: int | None = DEFAULT_FACE_BUDGET,
        cull_outside_view: bool = True,
    ):
        """``mesh_face_budget`` and ``cull_outside_view`` apply to ``"lean"`` only; budget ``None``
        draws robosuite's meshes there too, and culling never changes a pixel (it saves time)."""
        check_render_quality(quality)
        if max_width <= 0 or max_height <= 0:
            raise ValueError(f"renderer size must be positive, got {max_width}x{max_height}")
        self.quality = quality
        self.mesh_face_budget = check_face_budget(mesh_face_budget) if quality == "lean" else None
        self.cull_outside_view = bool(cull_outside_view) and quality == "lean"
        self._geom_groups: np.ndarray | None = None
        self.max_width = max_width
        self.max_height = max_height
        self._gl_context = None
        self._mjr_context: mujoco.MjrContext | None = None
        self._model: mujoco.MjModel | None = None  # the model bind() was given (physics)
        self._render_model: mujoco.MjModel | None = None  # what is drawn: a lean copy, or the model itself
        self.last_decimation: DecimationStats | None = None
        self._signature: tuple | None = None
        self._scene: mujoco.MjvScene | None = None
        self._option = mujoco.MjvOption()
        # robosuite's convention: geom group 0 holds collision geoms, group 1 the visual ones.
        self._option.geomgroup[0] = 0
        self._option.geomgroup[1] = 1
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self.context_builds = 0  # how many times assets were uploaded; reuse keeps this at 1
        _LIVE_RENDERERS.add(self)

    def bind(self, model: mujoco.MjModel) -> None:
        """Point the renderer at ``model``; re-uploads assets only when they changed."""
        if model is self._model:
            return
        source = model
        if self.mesh_face_budget is not None:
            model, self.last_decimation = lean_render_model(model, self.mesh_face_budget)
        elif self.cull_outside_view:
            model = copy.copy(model)  # culling edits geom groups per frame: never the physics model's
        if self.quality == "lean":
            model.vis.quality.offsamples = 0
            self._geom_groups = model.geom_group.copy()
        model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), self.max_width)
        model.vis.global_.offheight = max(int(model.vis.global_.offheight), self.max_height)
        signature = asset_signature(model) + (
            int(model.vis.quality.offsamples),
            int(model.vis.global_.offwidth),
            int(model.vis.global_.offheight),
        )
        if self._gl_context is None:
            self._gl_context = _new_gl_context(self.max_width, self.max_height)
        self._gl_context.make_current()
        if signature != self._signature:
            if self._mjr_context is not None:
                self._mjr_context.free()
            self._mjr_context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150.value)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._mjr_context)
            self._signature = signature
            self.context_builds += 1
        self._scene = mujoco.MjvScene(model, maxgeom=10000)
        if self.quality == "lean":
            for flag in LEAN_OFF_FLAGS:
                self._scene.flags[flag] = 0
        self._model = source
        self._render_model = model

    def render(self, data: mujoco.MjData, camera: str, width: int, height: int) -> np.ndarray:
        """An upright ``(height, width, 3)`` uint8 image from the named camera."""
        if self._render_model is None or self._mjr_context is None:
            raise RuntimeError("CameraRenderer.render called before bind(model)")
        if not (0 < width <= self.max_width and 0 < height <= self.max_height):
            raise ValueError(
                f"image size {width}x{height} is outside this renderer's 1..{self.max_width} x 1..{self.max_height}"
            )
        camera_id = mujoco.mj_name2id(self._render_model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            names = [mujoco.mj_id2name(self._model, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(self._model.ncam)]
            raise ValueError(f"camera {camera!r} does not exist in this scene: expected one of {names}")
        self._camera.fixedcamid = camera_id
        self._gl_context.make_current()
        # Another GL context in this process (e.g. a robosuite renderer) may have been current.
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._mjr_context)
        if self.cull_outside_view:  # leave out what the camera cannot see (vla_envs.frustum)
            in_view = geoms_in_view(self._render_model, data, camera_id, width / height)
            self._render_model.geom_group[:] = np.where(in_view, self._geom_groups, _HIDDEN_GROUP)
        mujoco.mjv_updateScene(
            self._render_model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene
        )
        viewport = mujoco.MjrRect(0, 0, width, height)
        mujoco.mjr_render(viewport, self._scene, self._mjr_context)
        pixels = np.empty((height, width, 3), dtype=np.uint8)
        mujoco.mjr_readPixels(pixels, None, viewport, self._mjr_context)
        # OpenGL's origin is the bottom-left corner: flip so row 0 is the top of the image.
        return np.ascontiguousarray(pixels[::-1])

    def close(self) -> None:
        if self._mjr_context is not None:
            # Free this context's textures and buffers, not those of whichever context is current.
            if self._gl_context is not None:
                self._gl_context.make_current()
            self._mjr_context.free()
            self._mjr_context = None
        if self._gl_context is not None:
            self._gl_context.free()
            self._gl_context = None
        self._model = None
        self._render_model = None
        self._signature = None
        self._scene = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL libraries may already be gone
            pass
