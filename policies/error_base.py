"""``VlaEnvsError`` for the modules of ``policies`` that also run in another interpreter:
LeRobot's (``python -m policies.serving.lerobot_policy serve``, with this checkout on its path
but not this project's dependencies). There, importing ``vla_envs`` (its task registry needs
pydantic and robosuite) fails, and these modules use a stand-in base of the same name; everywhere
else it is ``vla_envs.errors.VlaEnvsError`` itself."""

from __future__ import annotations

try:
    from vla_envs.errors import VlaEnvsError
except ImportError:  # LeRobot's interpreter: vla_envs' own dependencies are not installed there

    class VlaEnvsError(Exception):  # type: ignore[no-redef]
        """Stand-in for ``vla_envs.errors.VlaEnvsError``."""

__all__ = ["VlaEnvsError"]
