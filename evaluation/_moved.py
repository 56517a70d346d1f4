"""The evaluation wing's old module paths (before ``run/``, ``backends/``, ``analysis/``, ``pages/``),
kept for one release: importing one gives the module at its new path, with a ``DeprecationWarning`` that names
it. ``evaluation/__init__.py`` installs the finder, so the old files need not exist.

The old and the new name are one module object (``import evaluation.config`` *is*
``evaluation.run.config``), so a monkeypatch or a module global set through either is seen
through both.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED: dict[str, str] = {
    **{f"evaluation.{name}": f"evaluation.run.{name}" for name in (
        "config", "parts", "episode", "latency", "devices", "inference", "video")},
    **{f"evaluation.{name}": f"evaluation.backends.{name}" for name in ("workers", "ray_backend", "serving")},
    **{f"evaluation.{name}": f"evaluation.analysis.{name}" for name in (
        "stats", "summary", "findings", "reproducibility")},
    **{f"evaluation.{name}": f"evaluation.pages.{name}" for name in ("report", "findings_figure", "findings_markdown")},
    "evaluation.units": "evaluation.run.plan",
    "evaluation.run_info": "evaluation.run.record",
    "evaluation.divergence": "evaluation.run.teacher_forcing",
    "evaluation.policy_specs": "evaluation.run.policy_cache",  # build_policy & co: policies.specs
    "evaluation.demo_policies": "policies.demo",
    # paths of one earlier commit (the floors settled after): the runner and compare are the
    # wing's top, what runs during an episode is under run/
    "evaluation.run.runner": "evaluation.runner",
    "evaluation.run.units": "evaluation.run.plan",
    "evaluation.run.run_info": "evaluation.run.record",
    "evaluation.analysis.compare": "evaluation.compare",
    "evaluation.analysis.divergence": "evaluation.run.teacher_forcing",
    "evaluation.pages.video": "evaluation.run.video",
}
REMOVAL = "the release after 0.6"


def _caller_stacklevel() -> int:
    """The ``stacklevel`` of the first frame outside the import machinery and this module: the
    line that imported the old path, which the warning then points at (and which decides whether
    Python's default filters show it)."""
    # warnings.warn does not count the import system's frames (warnings._is_internal_frame)
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or frame.f_code.co_filename == __file__):
        if frame.f_code.co_filename == __file__:
            level += 1
        frame = frame.f_back
    return level


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return None  # a placeholder: exec_module puts the real module in its place

    def exec_module(self, module) -> None:
        old, new = module.__name__, MOVED[module.__name__]
        extra = " (build_policy, stable_seed and seed_everything: policies.specs)" if old.endswith("policy_specs") else ""
        warnings.warn(f"{old} moved to {new}{extra}; the old path works until {REMOVAL}",
                      DeprecationWarning, stacklevel=_caller_stacklevel())
        real = importlib.import_module(new)
        # the import system returns what sys.modules holds after exec_module: the real module
        sys.modules[old] = real


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
