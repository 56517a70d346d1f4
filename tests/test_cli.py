"""The vla-envs command line, run as a real process on this checkout's code.

``python -m cli`` with the checkout first on ``PYTHONPATH``: the installed console
script could belong to another checkout (or an older install) and would test that code instead.
"""

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def _vla_envs(*args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(CHECKOUT), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True, text=True, timeout=timeout, env=environment, cwd=CHECKOUT,
    )


def test_the_subprocess_runs_this_checkout():
    code = "import vla_envs, wrappers, policies, evaluation, cli; print(vla_envs.__file__, evaluation.__file__, cli.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT)}, cwd="/",
    )
    assert out.returncode == 0, out.stderr
    for path in out.stdout.split():
        assert Path(path).resolve().is_relative_to(CHECKOUT), path


def test_the_console_script_is_declared_for_the_same_entry_point():
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "vla-envs"]
    assert script.value == "cli.app:app"


def test_rollout_prints_a_table_per_episode():
    out = _vla_envs("rollout", "--task", "Lift", "--episodes", "2", "--seed", "3", "--max-steps", "12", COLUMNS="160")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    rows = [line for line in lines if line.startswith("│")]
    assert len(rows) == 2
    assert "│       0 │    3 │    12 │" in rows[0]
    assert "│       1 │    4 │    12 │" in rows[1]
    assert "success rate 0% over 2 episodes" in out.stdout


def test_tasks_lists_every_task():
    out = _vla_envs("tasks", timeout=120, COLUMNS="200")
    assert out.returncode == 0, out.stderr
    for name in ("Lift", "Stack", "PickPlaceCan", "NutAssemblySquare", "Door", "LIBERO-Spatial", "LIBERO-90"):
        assert f"vla_envs/{name}-v0" in out.stdout
    assert "LIBERO-90, task_id=0..89" in out.stdout


def test_tasks_lists_a_libero_suites_tasks_with_their_instructions():
    out = _vla_envs("tasks", "--suite", "libero_object", timeout=120, COLUMNS="200")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())  # rich wraps the title to the table's width
    assert 'gym.make("vla_envs/LIBERO-Object-v0", task_id=k), 280 steps' in text
    assert "pick up the alphabet soup and place it in the basket" in out.stdout
    assert "LIBERO-Object-0" in out.stdout and "LIBERO-Object-9" in out.stdout  # the names eval configs take
    out = _vla_envs("tasks", "--suite", "libero_100", timeout=120)
    assert out.returncode == 2 and "LIBERO suite 'libero_100': expected one of" in out.stdout


def test_rollout_rejects_an_unknown_task():
    out = _vla_envs("rollout", "--task", "Juggle", timeout=120)
    assert out.returncode != 0
    assert "unknown task 'Juggle'" in out.stdout + out.stderr
