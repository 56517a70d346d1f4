"""Atomic file writes (readers, and resumed runs, only ever see complete files) and the
output folders commands own (a manifest and a lock: see ``MANIFEST``)."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from vla_envs.errors import VlaEnvsError


def project_cache_dir() -> Path:
    """The project's cache folder (made on this machine, safe to delete): ``$VLA_ENVS_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/vla-envs``, else ``~/.cache/vla-envs``."""
    if os.environ.get("VLA_ENVS_CACHE_DIR"):
        return Path(os.environ["VLA_ENVS_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vla-envs"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would have given; mkstemp's files are 0600


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block has written it, flush it to disk
    and rename it over ``path`` in one step. On any error (or Ctrl-C) the temporary is removed
    and ``path`` is untouched: readers only ever see complete files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def create_new(write: Callable[[Path], None], candidates: Iterable[str | Path]) -> Path:
    """Write a file with ``write(tmp)`` beside the first candidate, flush it to disk, then give it
    the first candidate name that does not exist yet, and return that name. The name is taken
    with ``os.link``, which fails when it exists: an existing file is never replaced, two writers
    racing for a name never both get it, and readers only ever see complete files."""
    candidates = iter(candidates)
    path = Path(next(candidates))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, _FILE_MODE)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        while True:
            try:
                os.link(tmp, path)
                return path
            except FileExistsError:
                path = Path(next(candidates))
    finally:
        tmp.unlink(missing_ok=True)


# -- output folders ---------------------------------------------------------------------------
# A command that owns an output folder (`vla-envs eval`, `finetune`, `compare`) records in it,
# before writing anything else there, the manifest
#
#     MANIFEST = ".vla-envs.json":  {"command": "<the vla-envs command>",
#                                    "files": ["<top-level name it writes there>", ...]}
#
# and holds the lock file LOCK = ".vla-envs.lock" (fcntl.flock; it holds "vla-envs <command> pid
# <pid>" of the holder, and is removed when the command ends) while it writes. A folder is
# accepted as --out only when it is new, empty, or holds nothing but what that same command's
# manifest lists, so no command replaces a file it did not write. Names are recorded before
# their files are written: an interrupted command's folder is still its own.
MANIFEST = ".vla-envs.json"
LOCK = ".vla-envs.lock"
BOOKKEEPING = frozenset({MANIFEST, LOCK})

# what each owning command is called in messages
_OWNERS = {"eval": "an evaluation run", "finetune": "a fine-tuning run", "compare": "`vla-envs compare`"}


class OutputFolderError(VlaEnvsError, ValueError):
    """An output folder a command may not write to (the message names it, the files in the way
    and what was expected)."""


def _owner(command: str) -> str:
    return _OWNERS.get(command, f"`vla-envs {command}`")


def folder_entries(folder: str | Path) -> set[str]:
    """The names at the top of ``folder`` other than the manifest and the lock (none when it
    does not exist)."""
    folder = Path(folder)
    return {p.name for p in folder.iterdir()} - BOOKKEEPING if folder.is_dir() else set()


def read_manifest(folder: str | Path) -> dict | None:
    """The manifest of ``folder`` (``None`` when it has none); ``OutputFolderError`` when it
    cannot be read or does not have the layout above."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputFolderError(f"{path} cannot be read ({exc}): expected the JSON a vla-envs command writes "
                                "there; move the folder's files elsewhere or choose another --out") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("command"), str)
            and isinstance(manifest.get("files"), list) and all(isinstance(n, str) for n in manifest["files"])):
        raise OutputFolderError(f"{path} holds {json.dumps(manifest)[:200]}: expected "
                                '{"command": "<command>", "files": ["<name>", ...]}')
    return manifest


def claim_output_folder(folder: str | Path, command: str, names: Iterable[str], legacy: Iterable[str] = ()) -> None:
    """Make ``folder`` the output of ``command`` (creating it) and record that it writes
    ``names`` there. ``OutputFolderError`` when the folder holds the output of another command,
    or files ``command`` did not write: those its manifest lists, or ``legacy`` in a folder with
    no manifest (the names an older version, which wrote none, would have left)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file: expected a folder for --out")
    manifest = read_manifest(folder)
    if manifest is not None and manifest["command"] != command:
        raise OutputFolderError(
            f"{folder} holds the output of `vla-envs {manifest['command']}` ({folder / MANIFEST}): expected a new or "
            f"empty folder for --out, or one {_owner(command)} wrote")
    owned = set(manifest["files"]) if manifest is not None else set(legacy)
    # a run killed mid-write (SIGKILL, power loss) leaves atomic_path's temporary of a file it owns
    leftover = {name for name in folder_entries(folder) if name.endswith(".tmp")
                and any(name.startswith(f".{own}.") for own in owned | BOOKKEEPING)}
    foreign = sorted(folder_entries(folder) - owned - leftover)
    if foreign:
        raise OutputFolderError(
            f"{folder} holds files {_owner(command)} did not write ({', '.join(foreign[:5])}"
            f"{', ...' if len(foreign) > 5 else ''}): expected a new or empty folder for --out")
    recorded = {"command": command, "files": sorted(owned | set(names))}
    if recorded != manifest:
        with atomic_path(folder / MANIFEST) as tmp:
            tmp.write_text(json.dumps(recorded, indent=1) + "\n", encoding="utf-8")


@contextmanager
def lock_output_folder(folder: str | Path, command: str) -> Iterator[Path]:
    """Hold ``folder``'s lock (creating the folder) for the block; ``OutputFolderError`` naming
    the folder and the holder when another process (or another open of it in this one) holds
    it. The lock goes with the process: a killed run leaves no stale lock, at most the file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputFolderError(f"{folder} is a file: expected a folder for --out")
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another run"
            os.close(fd)
            raise OutputFolderError(
                f"{folder} is in use: {holder} holds {path}; expected one run at a time per output folder "
                "(wait for it to end, or choose another --out)") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder before us removed this file as we opened it: lock the new one
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"vla-envs {command} pid {os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        if created and not folder_entries(folder):  # a command that wrote nothing leaves no folder behind
            (folder / MANIFEST).unlink(missing_ok=True)
        path.unlink(missing_ok=True)  # still locked: whoever opened it meanwhile sees it gone and retries
        os.close(fd)
        if created:
            with suppress(OSError):  # not empty: it holds outputs (or another run has just started)
                folder.rmdir()
