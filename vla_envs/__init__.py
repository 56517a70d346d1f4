"""vla-envs: Gymnasium manipulation tasks that measure how efficiently a robot policy moves.

``import vla_envs`` registers the tasks in ``configs/tasks/`` as ``vla_envs/<Task>-v0``;
``gym.make("vla_envs:vla_envs/Lift-v0")`` does the import for you.
"""

import logging
import os
import sys

# Headless Linux has no display for GLFW; EGL (Mesa's software renderer here) needs none.
# Must be set before mujoco or robosuite are imported.
if sys.platform.startswith("linux"):
    os.environ.setdefault("MUJOCO_GL", "egl")



class _QuietRobosuiteImport(logging.Filter):
    """Drop robosuite's set-up advice and INFO chatter; keep its real warnings and errors."""

    _ADVICE = ("private macro file", "setup_macros.py", "robosuite_models", "mink-based whole-body IK")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return False
        message = record.getMessage()
        return not any(text in message for text in self._ADVICE)


# robosuite configures its logger when imported; a filter added before that survives it.
logging.getLogger("robosuite_logs").addFilter(_QuietRobosuiteImport())

from vla_envs.config import TaskConfig, get_task_config, load_task_config, load_task_configs  # noqa: E402
from vla_envs.registration import register_libero, register_tasks, registered_ids  # noqa: E402
from vla_envs.robots import SUPPORTED_ROBOTS  # noqa: E402

__version__ = "0.1.0"

TASK_IDS: list[str] = register_tasks()
# one id per LIBERO suite (vla_envs.libero): LIBERO itself is imported only by gym.make
LIBERO_IDS: list[str] = register_libero()

__all__ = [
    "LIBERO_IDS",
    "SUPPORTED_ROBOTS",
    "TASK_IDS",
    "TaskConfig",
    "get_task_config",
    "load_task_config",
    "load_task_configs",
    "register_libero",
    "register_tasks",
    "registered_ids",
]
