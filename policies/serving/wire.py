"""msgpack with numpy arrays: the encoding openpi's ``openpi_client.msgpack_numpy`` uses.

An array travels as a map ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": item, b"dtype":
dtype.str}``, so arrays round-trip bit for bit and either side of an openpi connection can be
this suite or openpi itself. Object, void and complex dtypes are not sent (nothing that could
carry a pickle).

Decoding takes untrusted bytes (a policy server's requests), so it allocates nothing the message
does not pay for: arrays and scalars of bool, integer, float and unicode dtypes only (openpi
clients send ``np.str_`` prompts), an array's data must be exactly its shape's size, a scalar's
data must be a plain number, bool or string of its dtype's kind, and a message holds at most
``MAX_ITEMS`` maps, lists and entries (an empty map costs 1 byte on the wire and ~70 in Python).
Errors name what was wrong, never the data that was sent.

This module imports nothing of the suite: LeRobot's environment loads it by file path
(``evaluation/export/lerobot_writer.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np

try:
    from vla_envs.errors import VlaEnvsError
except ImportError:  # loaded by its path in LeRobot's interpreter (evaluation/export/lerobot_writer.py), without this project
    class VlaEnvsError(Exception):  # noqa: N818 - the project's base, stood in for
        pass

_REFUSED_KINDS = ("V", "O", "c")  # what is never sent (openpi's rule)
ACCEPTED_KINDS = {"b": "bool", "i": "int", "u": "unsigned int", "f": "float", "U": "unicode"}
MAX_NDIM = 32  # numpy's own limit is 64
MAX_DIM = 2**31 - 1
MAX_DTYPE_CHARS = 16  # "<U2147483647" is 12
MAX_ITEMS = 2**20  # maps + lists + their entries in one message: ~75 MB of Python objects at worst
MAX_ERROR_CHARS = 500
_SHOWN_CHARS = 40


class WireError(VlaEnvsError, ValueError):
    """A message that is not valid msgpack-numpy."""


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters: error messages go back over the wire."""
    return text if len(text) <= limit else text[: limit - 25] + f"... ({len(text)} characters)"


def describe(value: Any) -> str:
    """A short account of a client's value for an error message: small scalars and short strings
    as they are, anything else by kind and size (never its contents)."""
    if value is None or isinstance(value, (bool, int, float)):
        return clip(repr(value), _SHOWN_CHARS)
    if isinstance(value, str):
        return repr(value) if len(value) <= _SHOWN_CHARS else f"a str of {len(value)} characters"
    if isinstance(value, (bytes, bytearray)):
        return f"{len(value)} bytes"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, np.generic):
        return f"a numpy {value.dtype} scalar"
    if isinstance(value, dict):
        return f"a map of {len(value)} entries"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def _encode(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _REFUSED_KINDS:
        raise WireError(f"arrays of dtype {value.dtype} are not sent: expected numeric or bool arrays")
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": array.shape}
    if isinstance(value, np.generic):
        return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
    return value


def _field(value: dict, name: str) -> Any:
    """``value[name]`` under a bytes key (openpi's packer) or a str key."""
    got = value.get(name.encode())
    return got if got is not None else value.get(name)


def _dtype(value: dict, what: str) -> np.dtype:
    spec = _field(value, "dtype")
    if not isinstance(spec, str) or len(spec) > MAX_DTYPE_CHARS:
        raise WireError(f"{what} has a dtype that is {describe(spec)}: expected a numpy dtype string such as '<f4'")
    try:
        dtype = np.dtype(spec)
    except (TypeError, ValueError, OverflowError):
        raise WireError(f"{what} has dtype {spec!r}, which numpy does not know") from None
    if dtype.kind not in ACCEPTED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireError(f"{what} has dtype {spec!r}: expected one of kind {', '.join(ACCEPTED_KINDS.values())}")
    return dtype


def _array(value: dict) -> np.ndarray:
    dtype = _dtype(value, "an array")
    data, shape = _field(value, "data"), _field(value, "shape")
    if not isinstance(data, bytes):
        raise WireError(f"an array's data is {describe(data)}: expected bytes")
    if (not isinstance(shape, (list, tuple)) or len(shape) > MAX_NDIM
            or not all(type(n) is int and 0 <= n <= MAX_DIM for n in shape)):
        raise WireError(f"an array's shape is {describe(shape)}: expected a list of at most {MAX_NDIM} "
                        f"integers in [0, {MAX_DIM}]")
    shape = tuple(shape)
    if len(data) != dtype.itemsize * math.prod(shape):  # Python ints: no overflow to a matching size
        raise WireError(f"an array of shape {shape} and dtype {dtype} with {len(data)} bytes of data: expected "
                        f"{dtype.itemsize * math.prod(shape)}")
    try:
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable, owns its memory
    except ValueError:  # e.g. a zero-size dtype ("<U0")
        raise WireError(f"an array of shape {shape} and dtype {dtype} that numpy cannot build") from None


def _scalar(value: dict) -> np.generic:
    dtype = _dtype(value, "a numpy scalar")
    data = _field(value, "data")
    kind = dtype.kind
    if kind == "b":
        ok = isinstance(data, bool)
    elif kind in "iu":
        ok = type(data) is int and np.iinfo(dtype).min <= data <= np.iinfo(dtype).max
    elif kind == "f":
        ok = isinstance(data, (int, float)) and not isinstance(data, bool)
    else:  # "U": the string is the data; the dtype's length is not used to allocate
        ok = isinstance(data, str)
    if not ok:
        raise WireError(f"a numpy {dtype} scalar whose data is a {type(data).__name__}: expected a "
                        f"{ACCEPTED_KINDS[kind]} value that fits the dtype")
    return dtype.type(data)


class _Decoder:
    """The msgpack hooks: numpy maps to arrays, and a count of the maps, lists and entries
    decoded so far against ``MAX_ITEMS`` (``max_map_len``/``max_array_len`` bound one
    container before it is built, the count bounds them all)."""

    def __init__(self):
        self.items = 0

    def _count(self, n: int) -> None:
        self.items += n + 1
        if self.items > MAX_ITEMS:
            raise WireError(f"a message of over {MAX_ITEMS} maps, lists and entries: send arrays as numpy arrays")

    def list(self, value: list) -> list:
        self._count(len(value))
        return value

    def map(self, value: dict) -> Any:
        self._count(len(value))
        if b"__ndarray__" in value or "__ndarray__" in value:
            return _array(value)
        if b"__npgeneric__" in value or "__npgeneric__" in value:
            return _scalar(value)
        return value

    def options(self) -> dict:
        return {"object_hook": self.map, "list_hook": self.list, "raw": False, "strict_map_key": False,
                "max_array_len": MAX_ITEMS, "max_map_len": MAX_ITEMS}


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_encode, use_bin_type=True)


def stream(fileobj) -> Iterator[Any]:
    """The messages of a binary stream of concatenated msgpack-numpy messages (e.g. a pipe)."""
    decoder = _Decoder()
    for message in msgpack.Unpacker(fileobj, max_buffer_size=2**30, **decoder.options()):
        yield message
        decoder.items = 0  # the budget is per message


def unpack(payload: bytes) -> Any:
    """Decode a message; ``WireError`` for anything that is not msgpack-numpy."""
    try:
        return msgpack.unpackb(payload, **_Decoder().options())
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types for bad input
        raise WireError(clip(f"not valid msgpack-numpy ({type(exc).__name__}: {exc})")) from None
