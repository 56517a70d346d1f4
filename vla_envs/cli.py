"""The ``vla-envs`` command's old module path (it is ``cli.app`` now, the top floor, so that the
ground floor ``vla_envs`` imports nothing above it). ``from vla_envs.cli import app`` and
``python -m vla_envs.cli`` keep working for one release, with a ``DeprecationWarning``; the
command itself (``vla-envs``) is unchanged."""

from __future__ import annotations

import warnings

_MESSAGE = "vla_envs.cli moved to cli.app (the `vla-envs` command is unchanged); the old path works until the release after 0.6"


def __getattr__(name: str):
    # resolved on first use, so importing vla_envs imports nothing above it
    warnings.warn(_MESSAGE, DeprecationWarning, stacklevel=2)
    import cli.app

    return getattr(cli.app, name)


if __name__ == "__main__":
    warnings.warn(_MESSAGE, DeprecationWarning, stacklevel=1)
    from cli.app import app

    app()
