"""The messages the history store exchanges with its writer and query processes: length-prefixed
pickles over pipes (the peer is always our own parent or child, so unpickling is safe)."""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any, BinaryIO

_HEADER = struct.Struct(">I")


def frame(message: Any) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next message, or None at the end of the stream."""
    try:
        size = _HEADER.unpack(await reader.readexactly(_HEADER.size))[0]
        return pickle.loads(await reader.readexactly(size))
    except asyncio.IncompleteReadError:
        return None


def read_frame_blocking(stream: BinaryIO) -> Any | None:
    """The next message from a buffered stream (its read(n) returns n bytes, fewer only at the end), or
    None at the end."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)
