"""LeRobot's own dataset writer, driven by messages: in this process, or in LeRobot's environment.

LeRobot (Python >= 3.12, its own torch) and robosuite (numpy < 2) do not share one environment,
and the standalone lerobot-dataset package needs a torchvision matching its torch. So the suite
re-renders episodes in its environment and this module writes them with
``LeRobotDataset.create / add_frame / save_episode / finalize`` wherever LeRobot is installed:

    <lerobot-env>/bin/python evaluation/export/lerobot_writer.py OUT_FOLDER < messages

reads concatenated msgpack-numpy messages (``policies.serving.wire``) from stdin::

    {"kind": "create", "repo_id": str, "fps": int, "features": {...}, "robot_type": str}
    {"kind": "frame", "frame": {feature: array, ..., "task": str}}     (repeated)
    {"kind": "save_episode"}                                            (after each episode's frames)
    {"kind": "finish"}

and prints one JSON line ``{"episodes": n, "frames": m}``. It imports nothing of the suite but
the wire codec (loaded by file path), so that environment needs only LeRobot and msgpack.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path


def lerobot_dataset_class():
    """``LeRobotDataset`` from lerobot, else from the standalone lerobot-dataset package."""
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
    except ImportError:
        from ledataset.datasets.lerobot_dataset import LeRobotDataset
    return LeRobotDataset


class Writer:
    """Applies the messages above to a new LeRobotDataset in ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.dataset = None
        self.episodes = self.frames = 0

    def handle(self, message: dict) -> None:
        kind = message["kind"]
        if kind == "create":
            features = {name: {**spec, "shape": tuple(spec["shape"])} for name, spec in message["features"].items()}
            self.dataset = lerobot_dataset_class().create(
                message["repo_id"], int(message["fps"]), features, root=self.root,
                robot_type=message.get("robot_type"), use_videos=False,
            )
        elif kind == "frame":
            self.dataset.add_frame(dict(message["frame"]))
            self.frames += 1
        elif kind == "save_episode":
            self.dataset.save_episode()
            self.episodes += 1
        elif kind == "finish":
            self.dataset.finalize()
        else:
            raise ValueError(f"message kind {kind!r}: expected create, frame, save_episode or finish")


def _wire():
    path = Path(__file__).resolve().parents[2] / "policies" / "serving" / "wire.py"
    spec = importlib.util.spec_from_file_location("vla_envs_wire", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: lerobot_writer.py OUT_FOLDER < messages")
    writer = Writer(argv[0])
    for message in _wire().stream(sys.stdin.buffer):
        writer.handle(message)
    print(json.dumps({"episodes": writer.episodes, "frames": writer.frames}), flush=True)


if __name__ == "__main__":
    # run as a script, this file's folder is sys.path[0]: keep its modules from shadowing packages
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    main()
