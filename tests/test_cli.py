"""The vla-envs command line, run as a real process."""

import shutil
import subprocess
import sys
from pathlib import Path


def _vla_envs():
    exe = shutil.which("vla-envs") or str(Path(sys.executable).parent / "vla-envs")
    return [exe]


def test_rollout_prints_a_table_per_episode():
    out = subprocess.run(
        _vla_envs() + ["rollout", "--task", "Lift", "--episodes", "2", "--seed", "3", "--max-steps", "12"],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "160", "PATH": str(Path(sys.executable).parent)},
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2
    assert "│       0 │    3 │    12 │" in rows[0]
    assert "│       1 │    4 │    12 │" in rows[1]
    assert "success rate 0% over 2 episodes" in out.stdout


def test_tasks_lists_every_task():
    out = subprocess.run(
        _vla_envs() + ["tasks"], capture_output=True, text=True, timeout=120, env={"COLUMNS": "200"}
    )
    assert out.returncode == 0, out.stderr
    for name in ("Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door"):
        assert f"vla_envs/{name}-v0" in out.stdout


def test_rollout_rejects_an_unknown_task():
    out = subprocess.run(
        _vla_envs() + ["rollout", "--task", "Juggle"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode != 0
    assert "unknown task 'Juggle'" in out.stdout + out.stderr
