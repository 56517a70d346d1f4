"""The project declares its error base and its config base once: every error class it defines is
a ``VlaEnvsError`` (``vla_envs.errors``), every pydantic model a ``StrictConfig``
(``vla_envs.strict_config``). Read from the source, so a module that is expensive to import (or
needs an optional package) is checked too."""

import ast
from pathlib import Path

import pytest

from evaluation.runner import OutputExistsError
from vla_envs.config import ConfigError
from vla_envs.errors import VlaEnvsError

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vla_envs", "wrappers", "policies", "evaluation", "finetuning")


def _classes():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ClassDef):
                    bases = [ast.unparse(base) for base in node.bases]
                    yield path.relative_to(ROOT), node.name, bases


def _is_exception(name: str, bases: list[str]) -> bool:
    return any(base.split(".")[-1].endswith(("Error", "Exception")) or base.split(".")[-1] in ("BatcherClosed",
               "TooManySessions") for base in bases)


def test_every_error_the_project_defines_is_a_vla_envs_error():
    missing = [f"{path}: {name}({', '.join(bases)})" for path, name, bases in _classes()
               if _is_exception(name, bases) and not name.startswith("_") and name != "VlaEnvsError"
               and "VlaEnvsError" not in bases]
    assert missing == []


def test_every_config_model_derives_from_strict_config():
    loose = [f"{path}: {name}" for path, name, bases in _classes()
             if "BaseModel" in bases and name != "StrictConfig"]
    assert loose == []


@pytest.mark.parametrize("error, builtin", [(ConfigError, ValueError), (OutputExistsError, RuntimeError)])
def test_project_errors_keep_their_builtin_class(error, builtin):
    assert issubclass(error, VlaEnvsError) and issubclass(error, builtin)
