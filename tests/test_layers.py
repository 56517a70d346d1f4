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


# Inside evaluation/, the folders are floors too: the contract, then what runs an episode, where
# episodes run, numbers from finished runs, pages, exports; the commands' work (the runner,
# compare) on top.
EVALUATION_FLOORS = ("evaluation.schema", "evaluation.run", "evaluation.backends", "evaluation.analysis",
                     "evaluation.pages", "evaluation.export", "evaluation")


def _evaluation_floor(module: str) -> int:
    """The floor of a module of evaluation/: its folder's (or the top's, for the runner, compare
    and the package itself)."""
    for index, floor in enumerate(EVALUATION_FLOORS[:-1]):
        if module == floor or module.startswith(floor + "."):
            return index
    return len(EVALUATION_FLOORS) - 1


def test_inside_evaluation_no_import_runs_back_up():
    upward = []
    for path in sorted((ROOT / "evaluation").rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        module = ".".join(relative.parts[:-1] if relative.name == "__init__" else relative.parts)
        for name in _imports(path):
            if name.split(".")[0] == "evaluation" and _evaluation_floor(name) > _evaluation_floor(module):
                upward.append(f"{path.relative_to(ROOT)} imports {name}")
    assert upward == []


def test_no_evaluation_folder_holds_more_than_a_dozen_modules():
    crowded = {folder.name: n for folder in (ROOT / "evaluation").iterdir()
               if folder.is_dir() and (n := len(list(folder.glob("*.py")))) > 13}
    assert crowded == {}
