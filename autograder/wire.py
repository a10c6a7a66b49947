"""The plain-data protocol between the grader and a sandboxed worker.

A message is a JSON header plus named numpy arrays, each framed by an 8-byte length:
    [len][header JSON]  then for each name in header["arrays"]: [len][.npy bytes]
Arrays are read with allow_pickle=False: object arrays are refused, so nothing the
student's process sends can execute code here. This module imports only numpy and is
copied next to the worker.
"""
import io
import json
import struct

import numpy as np

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_LENGTH = struct.Struct("<Q")


class WireError(ValueError):
    pass


def _read_exact(stream, count):
    chunks, remaining = [], count
    while remaining:
        chunk = stream.read(remaining)
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream, budget):
    (length,) = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))
    if length > budget:
        raise WireError(f"message larger than {budget} bytes")
    return _read_exact(stream, length)


def write_message(stream, header, arrays=None):
    arrays = arrays or {}
    header = dict(header, arrays=list(arrays))
    frames = [json.dumps(header).encode()]
    for array in arrays.values():
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        frames.append(buffer.getvalue())
    stream.write(b"".join(_LENGTH.pack(len(f)) + f for f in frames))
    stream.flush()


def read_message(stream, max_bytes=MAX_MESSAGE_BYTES):
    """-> (header dict, {name: ndarray}); raises WireError on anything malformed."""
    budget = max_bytes
    raw = _read_frame(stream, budget)
    budget -= len(raw)
    try:
        header = json.loads(raw)
    except ValueError as error:
        raise WireError(f"header is not JSON: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays", []), list):
        raise WireError("header is not a JSON object with an 'arrays' list")
    arrays = {}
    for name in header.get("arrays", []):
        raw = _read_frame(stream, budget)
        budget -= len(raw)
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as error:
            raise WireError(f"array {name!r} is not a plain .npy array: {error}") from None
        if not isinstance(name, str) or array.dtype.kind not in "biuf":
            raise WireError(f"array {name!r} has a non-numeric dtype {array.dtype}")
        arrays[name] = array
    return header, arrays
