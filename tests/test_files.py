"""vla_envs.files.atomic_path: complete files or none, with the usual permissions."""

import os
import stat

import pytest

from vla_envs.files import atomic_path


def test_atomic_path_replaces_only_on_success_with_umask_permissions(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("first")
        assert not target.exists()  # nothing visible until the block has finished
    assert target.read_text() == "first"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600

    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "first"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]  # no temporaries left
