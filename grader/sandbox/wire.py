"""Plain data over a pipe: length-prefixed JSON frames, arrays as .npy bytes read with allow_pickle=False.

Nothing here can run code on decode: JSON has no objects, and np.load refuses pickled arrays.
"""
from __future__ import annotations

import base64
import io
import json
import math
import struct
from typing import Any, BinaryIO

import numpy as np

MAX_FRAME = 64 * 2**20  # a larger answer is refused, not read (the largest probe output is about 2 MB)
_HEADER = struct.Struct(">Q")


class WireError(ValueError):
    """A frame that is not well-formed plain data."""


def encode(value: Any) -> Any:
    """Plain data -> JSON-ready data (arrays as base64 .npy, non-finite floats tagged)."""
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return {"__ndarray__": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):  # JSON has no NaN or infinity
        return {"__float__": repr(value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value: Any) -> Any:
    """The inverse of encode; arrays are read with allow_pickle=False."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__ndarray__"}:
            try:
                return np.load(io.BytesIO(base64.b64decode(value["__ndarray__"])), allow_pickle=False)
            except Exception as error:
                raise WireError(f"malformed array: {error}") from None
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: decode(v) for k, v in value.items()}
    return value


def dumps(message: Any) -> bytes:
    payload = json.dumps(encode(message), allow_nan=False).encode("utf-8")
    return _HEADER.pack(len(payload)) + payload


def send(stream: BinaryIO, message: Any) -> None:
    frame = dumps(message)
    if len(frame) - _HEADER.size > MAX_FRAME:
        raise WireError(f"a frame of {len(frame) - _HEADER.size} bytes is larger than the limit of {MAX_FRAME}")
    stream.write(frame)
    stream.flush()


def read_frame(read: callable) -> Any:
    """Read one frame with `read(n) -> bytes` (which must return exactly n bytes, or fewer at end of stream)."""
    header = read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError("the stream ended")
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise WireError(f"a frame of {size} bytes is larger than the limit of {MAX_FRAME}")
    payload = read(size)
    if len(payload) < size:
        raise EOFError("the stream ended inside a frame")
    try:
        return decode(json.loads(payload))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise WireError(f"malformed frame: {error}") from None
