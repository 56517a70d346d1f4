"""The project's error base: every error this project defines is a ``VlaEnvsError``.

Each also keeps the built-in class it has always been (``ConfigError`` is a ``ValueError``,
``EnvClosedError`` a ``RuntimeError``), so existing ``except ValueError`` code still catches it,
and ``except VlaEnvsError`` catches what this project refused, as opposed to a bug or a failure
of a library underneath.

Input and configuration errors (bad values, files, folders) are ``ValueError`` subclasses; errors
of a run in progress (a server, an export, a closed env) are ``RuntimeError`` subclasses.
"""

from __future__ import annotations


class VlaEnvsError(Exception):
    """Something this project refused or could not do, with a message that names the field,
    value or file and what was expected."""
