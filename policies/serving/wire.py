"""msgpack with numpy arrays: the encoding openpi's ``openpi_client.msgpack_numpy`` uses.

An array travels as a map ``{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str,
b"shape": shape}`` and a numpy scalar as ``{b"__npgeneric__": True, b"data": item, b"dtype":
dtype.str}``, so arrays round-trip bit for bit and either side of an openpi connection can be
this suite or openpi itself. Object, void and complex dtypes are refused both ways (nothing
that could carry a pickle).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np

_REFUSED_KINDS = ("V", "O", "c")


class WireError(ValueError):
    """A message that is not valid msgpack-numpy."""


def _encode(value: Any) -> Any:
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in _REFUSED_KINDS:
        raise WireError(f"arrays of dtype {value.dtype} are not sent: expected numeric or bool arrays")
    if isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        return {b"__ndarray__": True, b"data": array.tobytes(), b"dtype": array.dtype.str, b"shape": array.shape}
    if isinstance(value, np.generic):
        return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
    return value


def _decode(value: dict) -> Any:
    if b"__ndarray__" in value or "__ndarray__" in value:
        get = value.get
        data, dtype, shape = (get(k) if get(k) is not None else get(k.decode()) for k in (b"data", b"dtype", b"shape"))
        dtype = np.dtype(dtype)
        if dtype.kind in _REFUSED_KINDS:
            raise WireError(f"an array of dtype {dtype}: expected numeric or bool arrays")
        shape = tuple(int(n) for n in shape)
        if len(data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
            raise WireError(f"an array of shape {shape} and dtype {dtype} with {len(data)} bytes of data")
        return np.frombuffer(data, dtype=dtype).reshape(shape).copy()  # writable, owns its memory
    if b"__npgeneric__" in value:
        return np.dtype(value[b"dtype"]).type(value[b"data"])
    return value


def pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_encode, use_bin_type=True)


def stream(fileobj) -> Iterator[Any]:
    """The messages of a binary stream of concatenated msgpack-numpy messages (e.g. a pipe)."""
    yield from msgpack.Unpacker(fileobj, object_hook=_decode, raw=False, strict_map_key=False, max_buffer_size=2**30)


def unpack(payload: bytes) -> Any:
    """Decode a message; ``WireError`` for anything that is not msgpack-numpy."""
    try:
        return msgpack.unpackb(payload, object_hook=_decode, raw=False, strict_map_key=False)
    except WireError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types for bad input
        raise WireError(f"not valid msgpack-numpy ({type(exc).__name__}: {exc})") from None
