"""Old module paths still import for one release, with a DeprecationWarning naming both: the
evaluation wing's, as the very module at its new path (``evaluation._moved``), and the command
line's (``vla_envs.cli`` -> ``cli.app``)."""

import importlib
import sys

import pytest

from evaluation._moved import MOVED


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_path_is_the_new_module_with_a_warning(old):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"^{old} moved to {MOVED[old]}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(MOVED[old])


def test_a_factory_string_of_an_old_path_still_resolves():
    from policies.demo import perturbed_expert
    from policies.factories import resolve_factory

    sys.modules.pop("evaluation.demo_policies", None)
    with pytest.warns(DeprecationWarning, match="evaluation.demo_policies moved to policies.demo"):
        assert resolve_factory("evaluation.demo_policies:perturbed_expert") is perturbed_expert


def test_the_old_paths_are_gone_from_the_folder():
    """The folder is the new map: no module file at an old path."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert [old for old in MOVED if (root / (old.replace(".", "/") + ".py")).exists()] == []


def test_the_command_line_module_keeps_its_old_path_for_a_release():
    import vla_envs.cli
    from cli.app import app

    with pytest.warns(DeprecationWarning, match=r"^vla_envs.cli moved to cli.app"):
        assert vla_envs.cli.app is app


def test_the_expert_success_script_keeps_its_old_path_for_a_release():
    import vla_envs.libero.expert_success as old

    pytest.importorskip("libero", reason="LIBERO is not installed")
    from policies.libero_expert_success import main

    with pytest.warns(DeprecationWarning, match=r"^vla_envs.libero.expert_success moved to policies.libero_expert_success"):
        assert old.main is main


def test_the_step_hashing_names_keep_their_old_module_for_a_release():
    """Hashing runs with the episode (evaluation.run.step_hashes); reproducibility compares."""
    from evaluation.analysis import reproducibility
    from evaluation.run import step_hashes

    with pytest.warns(DeprecationWarning, match=r"^evaluation.analysis.reproducibility.StepHasher moved to "
                                                r"evaluation.run.step_hashes.StepHasher"):
        from evaluation.analysis.reproducibility import StepHasher
    assert StepHasher is step_hashes.StepHasher
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        reproducibility.nothing  # noqa: B018
