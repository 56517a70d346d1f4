"""``module.path:callable`` strings, the one way configs and command lines name a policy factory."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable


def resolve_factory(spec: str) -> Callable:
    """The callable ``spec`` names; a ValueError saying what is missing otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r}: expected module.path:callable")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{spec!r}: cannot import module {module_name!r} ({exc})") from None
    value = getattr(module, attribute, None)
    if not callable(value):
        raise ValueError(f"{spec!r}: module {module_name!r} has no callable {attribute!r}")
    return value


def factory_parameters(factory: Callable) -> frozenset[str]:
    """The names of ``factory``'s parameters: a config's factory is given ``env=`` and ``task=``
    when it takes them (empty for builtins and C callables, which have no signature)."""
    try:
        return frozenset(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return frozenset()
