"""The observations an ecosystem's LIBERO client gives its model, built from this suite's.

A LIBERO checkpoint expects its inputs exactly as the client it was evaluated with prepared
them. Two clients publish nearly every LIBERO number; each convention here mirrors one of them,
read from its repository:

``openpi_libero``: openpi's ``examples/libero/main.py`` (pi0, pi0-FAST, pi0.5)
    ``observation/image``, ``observation/wrist_image``: LIBERO's 256 px camera frames rotated
    180 degrees (``[::-1, ::-1]``) and resized with padding to 224 x 224 (openpi-client's
    ``image_tools.resize_with_pad``: PIL bilinear, zero padding), uint8;
    ``observation/state``: float64 (8,), eef position, axis-angle, gripper qpos;
    ``prompt``: the instruction. It waits 10 no-op steps first and replans every 5 steps.
``lerobot_libero``: LeRobot's ``envs/libero.py`` with ``LiberoProcessorStep`` (SmolVLA, pi0 and
    pi0.5 ports, the HuggingFaceVLA/libero datasets)
    ``observation.images.image`` (agentview), ``observation.images.image2`` (wrist): the 256 px
    frames rotated 180 degrees, uint8 H x W x 3 here (the server's ``LeRobotPolicy`` makes them
    float C x H x W in [0, 1], as LeRobot's ``preprocess_observation`` does);
    ``observation.state``: float32 (8,), the same three parts with the axis-angle computed in
    float32 as ``LiberoProcessorStep`` does. It also waits 10 no-op steps.

"LIBERO's camera frames" are robosuite's raw frames, bottom row first (OpenGL's order); this
suite's images are upright (``raw[::-1]``), so the 180-degree rotation of a raw frame is this
suite's image mirrored left-right. ``tests/test_libero_conventions.py`` checks every key, shape,
dtype and pixel against LIBERO's own ``OffScreenRenderEnv`` observation.

The env must render at ``render_size`` (``image_size`` in the eval config) and carry
``obs["libero_state"]`` (``vla_envs.libero.observations``): the LIBERO envs do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from vla_envs.libero.observations import LIBERO_STATE_SIZE

ConventionName = Literal["openpi_libero", "lerobot_libero"]


@dataclass(frozen=True)
class ObservationConvention:
    name: str
    source: str  # the file it mirrors
    images: tuple[tuple[str, str], ...]  # (this suite's key, the client's key)
    state_key: str  # where obs["libero_state"] goes
    state_dtype: type  # the dtype the client's state has
    render_size: int  # the square frames the client's env renders
    resize_with_pad: int | None  # the side the client pads and resizes frames to, if it does
    settle_steps: int  # no-op steps before the first query
    replan_steps: int | None  # actions executed per query, where the client fixes it

    def convert(self, obs: dict[str, np.ndarray], any_image_size: bool = False) -> dict[str, np.ndarray]:
        """The client's observation map (without the instruction) from this suite's ``obs``;
        ``any_image_size`` takes images of another size than the client renders (a dataset
        export at the run's size)."""
        missing = [key for key in (*(ours for ours, _ in self.images), "libero_state") if key not in obs]
        if missing:
            raise KeyError(f"observation convention {self.name!r} reads {missing}, which the observation lacks "
                           f"(it has {sorted(obs)}): expected a LIBERO env with obs_mode 'rgb'")
        message: dict[str, np.ndarray] = {}
        for ours, theirs in self.images:
            image = np.asarray(obs[ours])
            size = image.shape[0] if any_image_size and image.ndim == 3 else self.render_size
            if image.shape != (size, size, 3) or image.dtype != np.uint8:
                raise ValueError(f"observation convention {self.name!r}: obs[{ours!r}] is {image.dtype} {image.shape}, "
                                 f"expected uint8 ({self.render_size}, {self.render_size}, 3) as the client renders "
                                 f"(set image_size: {self.render_size})")
            # upright -> raw (flip rows) -> rotated 180 degrees (flip rows and columns): a mirror
            rotated = np.ascontiguousarray(image[:, ::-1])
            if self.resize_with_pad is not None:
                rotated = resize_with_pad(rotated, self.resize_with_pad, self.resize_with_pad)
            message[theirs] = rotated
        message[self.state_key] = _state(np.asarray(obs["libero_state"], dtype=np.float64), self.state_dtype)
        return message


def _state(state: np.ndarray, dtype: type) -> np.ndarray:
    if state.shape != (LIBERO_STATE_SIZE,):
        raise ValueError(f"obs['libero_state'] has shape {state.shape}, expected ({LIBERO_STATE_SIZE},)")
    if dtype is np.float64:
        return state
    # LeRobot's LiberoProcessorStep casts the quaternion to float32 before its axis-angle; the
    # env hands over the float64 axis-angle, whose float32 cast differs from that by at most an
    # ulp or two of float32 (1e-7 relative): below what a float32 model can tell apart
    return state.astype(dtype)


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi-client's ``image_tools.resize_with_pad`` for one uint8 H x W x 3 image: scale to fit
    (PIL bilinear, sizes truncated to int), centre on a zero image. Tested equal to openpi's."""
    from PIL import Image

    if image.shape[:2] == (height, width):
        return image
    source = Image.fromarray(image)
    cur_width, cur_height = source.size
    ratio = max(cur_width / width, cur_height / height)
    resized_height, resized_width = int(cur_height / ratio), int(cur_width / ratio)
    resized = source.resize((resized_width, resized_height), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - resized_width) / 2)), max(0, int((height - resized_height) / 2))))
    return np.asarray(canvas)


CONVENTIONS: dict[str, ObservationConvention] = {c.name: c for c in (
    ObservationConvention(
        name="openpi_libero", source="openpi: examples/libero/main.py",
        images=(("image", "observation/image"), ("wrist_image", "observation/wrist_image")),
        state_key="observation/state", state_dtype=np.float64,
        render_size=256, resize_with_pad=224, settle_steps=10, replan_steps=5,
    ),
    ObservationConvention(
        name="lerobot_libero", source="lerobot: src/lerobot/envs/libero.py, processor/env_processor.py",
        images=(("image", "observation.images.image"), ("wrist_image", "observation.images.image2")),
        state_key="observation.state", state_dtype=np.float32,
        render_size=256, resize_with_pad=None, settle_steps=10, replan_steps=None,
    ),
)}


def convention(name: str) -> ObservationConvention:
    if name not in CONVENTIONS:
        raise ValueError(f"observation convention {name!r}: expected one of {sorted(CONVENTIONS)}")
    return CONVENTIONS[name]
