"""The folders are floors, and imports run downward only: ``vla_envs`` (environments) ->
``wrappers`` -> ``policies`` -> ``evaluation`` -> ``finetuning`` -> ``cli`` (the command). Read
from the source (every ``import``, also those inside functions), so a lazy import that runs back
up is caught too."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ("vla_envs", "wrappers", "policies", "evaluation", "finetuning", "cli")
# kept for one release: old import paths that forward upward on first use, with a DeprecationWarning
DEPRECATED_FORWARDS = {Path("vla_envs/cli.py"), Path("vla_envs/libero/expert_success.py")}


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_no_import_runs_back_up():
    upward = []
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            if path.relative_to(ROOT) in DEPRECATED_FORWARDS:
                continue
            for name in _imports(path):
                top = name.split(".")[0]
                if top in FLOORS and FLOORS.index(top) > FLOORS.index(floor):
                    upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert upward == []
