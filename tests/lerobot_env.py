"""LeRobot's own environment (Python >= 3.12, lerobot installed) for the tests that run in it:
where its interpreter is, and why those tests skip when it cannot run them."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]
SETUP = "export VLA_ENVS_LEROBOT_PYTHON (or create .venv-lerobot as docs/integrations.md shows)"
LEROBOT_PYTHON = os.environ.get("VLA_ENVS_LEROBOT_PYTHON") or next(
    (str(p) for p in (CHECKOUT / ".venv-lerobot" / "bin" / "python",) if p.exists()), None)


def why_not(module: str) -> str | None:
    """Why LeRobot's environment cannot import ``module``, or ``None`` when it can (a path that
    does not exist is reported, not run: that was a collection error)."""
    if LEROBOT_PYTHON is None:
        return f"LeRobot's environment with lerobot installed is not set up: {SETUP}"
    if shutil.which(LEROBOT_PYTHON) is None:
        return f"VLA_ENVS_LEROBOT_PYTHON={LEROBOT_PYTHON}: no such executable file; {SETUP}"
    probe = subprocess.run([LEROBOT_PYTHON, "-c", f"import {module}"], capture_output=True, timeout=300)
    if probe.returncode != 0:
        return f"{LEROBOT_PYTHON} cannot import {module} (lerobot is not installed there): {SETUP}"
    return None


def needs(module: str) -> pytest.MarkDecorator:
    """Skip unless LeRobot's environment imports ``module``, saying why."""
    reason = why_not(module)
    return pytest.mark.skipif(reason is not None, reason=reason or "")
