"""MP4 videos of chosen episodes: frames in memory, encoded once the episode ends.

Encoding needs ``imageio`` with the ``imageio-ffmpeg`` plugin (``pip install "vla-envs[video]"``);
``check_video_support`` says so plainly when it is missing.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np


def check_video_support() -> None:
    """``RuntimeError`` with the install command when MP4 encoding is unavailable."""
    try:
        import imageio  # noqa: F401
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise RuntimeError(
            "MP4 videos need the imageio-ffmpeg package, which is not installed: "
            "expected `pip install imageio-ffmpeg` (or the 'video' extra), or drop 'recording.videos'"
        ) from None


def encode_mp4(frames: list[np.ndarray], fps: float) -> bytes:
    """H.264 MP4 bytes of (H, W, 3) uint8 frames."""
    check_video_support()
    import imageio.v2 as imageio

    if not frames:
        raise ValueError("no frames to encode, expected at least one")
    fd, path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        # macro_block_size=1 keeps odd frame sizes as they are instead of resizing with a warning
        with imageio.get_writer(path, fps=fps, codec="libx264", macro_block_size=1, quality=7) as writer:
            for frame in frames:
                writer.append_data(np.asarray(frame, dtype=np.uint8))
        with open(path, "rb") as handle:
            return handle.read()
    finally:
        os.unlink(path)
