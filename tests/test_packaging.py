"""`pip install .` (a wheel, not the checkout) imports and runs from outside the checkout."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent


def test_every_package_on_disk_is_listed_in_pyproject():
    from setuptools import find_packages

    listed = set(tomllib.loads((CHECKOUT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = set(find_packages(CHECKOUT, include=["vla_envs*", "wrappers*", "policies*", "evaluation*", "finetuning*"]))
    assert on_disk <= listed, f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert "vla_envs.configs" in listed


_SMOKE = """
import sys
from pathlib import Path
import gymnasium as gym
import numpy as np
import vla_envs
from vla_envs.config import config_dir, load_task_configs
from wrappers import EfficiencyReward, EmbodiedCost
site = Path(sys.argv[1]).resolve()
for module in (vla_envs, sys.modules["wrappers"]):
    assert Path(module.__file__).resolve().is_relative_to(site), module.__file__
assert config_dir().resolve().is_relative_to(site), config_dir()
assert sorted(load_task_configs()) == ["Door", "Lift", "NutAssemblySquare", "PickPlaceCan", "Stack"]
env = EfficiencyReward(EmbodiedCost(gym.make("vla_envs/Lift-v0")))  # the default reward config ships too
env.reset(seed=0)
_, reward, _, _, info = env.step(np.zeros(7, np.float32))
assert info["embodied"]["n_steps"] == 1.0 and np.isfinite(reward)
from policies.tinyvla import load_reference
load_reference()
from policies.compression.fast import FastTokenizer, shipped_path
assert FastTokenizer.load(shipped_path("tinyvla")).horizon == 8  # the FAST vocabulary ships too
print("wheel ok")
"""


def test_the_built_wheel_imports_and_runs_outside_the_checkout(tmp_path):
    pytest.importorskip("setuptools")
    dist, site = tmp_path / "dist", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # the build runs the checkout's setuptools; no isolation keeps it offline
    subprocess.run([*pip, "wheel", str(CHECKOUT), "--no-deps", "--no-build-isolation", "-w", str(dist)],
                   check=True, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    (wheel,) = dist.glob("vla_envs-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert (site / "vla_envs" / "configs" / "tasks" / "lift.yaml").is_file()
    assert (site / "vla_envs" / "configs" / "rewards" / "default.yaml").is_file()
    # the wheel's packages come first on the path; the run starts outside the checkout
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("VLA_ENVS_CONFIG_DIR", None)
    out = subprocess.run([sys.executable, "-c", _SMOKE, str(site)], capture_output=True, text=True,
                         timeout=600, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "wheel ok" in out.stdout
    cli = subprocess.run([sys.executable, "-m", "cli", "tasks"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**env, "COLUMNS": "200"})
    assert cli.returncode == 0 and "vla_envs/Lift-v0" in cli.stdout, cli.stderr[-3000:]
