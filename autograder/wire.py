"""The plain-data protocol between the grader and a sandboxed worker.

A message is a JSON header plus named numpy arrays, each framed by an 8-byte length:
    [len][header JSON]  then for each name in header["arrays"]: [len][.npy bytes]
Arrays are read with allow_pickle=False: object arrays are refused, so nothing the
student's process sends can execute code here. The header is bounded before it is parsed
(MAX_HEADER_BYTES) and its structure after (plain numbers, booleans, None, short strings,
and lists and objects of those, of bounded depth and size), so a hostile header costs the
grader at most a few times MAX_HEADER_BYTES of memory. This module imports only numpy and
is copied next to the worker.
"""
import io
import json
import struct

import numpy as np

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 1024 * 1024
MAX_DEPTH = 8                      # nesting of lists and objects in a header
MAX_ITEMS = 100_000                # values in a header, all levels together
MAX_STRING = 16 * 1024             # characters in one string (keys included)
MAX_ARRAYS = 10_000
_MAX_INT_DIGITS = 40
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


def _bounded_int(text):
    if len(text) > _MAX_INT_DIGITS:
        raise WireError(f"an integer of {len(text)} digits")
    return int(text)


def check_header(header):
    """Raise WireError unless `header` is a JSON object of plain, bounded data."""
    if not isinstance(header, dict):
        raise WireError("header is not a JSON object")
    items, todo = 0, [(header, 1)]
    while todo:
        value, depth = todo.pop()
        items += 1
        if items > MAX_ITEMS:
            raise WireError(f"header holds more than {MAX_ITEMS} values")
        if isinstance(value, str):
            if len(value) > MAX_STRING:
                raise WireError(f"header holds a string of {len(value)} characters")
        elif isinstance(value, (list, dict)):
            if depth > MAX_DEPTH:
                raise WireError(f"header is nested deeper than {MAX_DEPTH} levels")
            if isinstance(value, dict):
                for key in value:
                    if not isinstance(key, str) or len(key) > MAX_STRING:
                        raise WireError("header has a key that is not a short string")
                value = value.values()
            todo += [(item, depth + 1) for item in value]
        elif not (value is None or isinstance(value, (bool, int, float))):
            raise WireError(f"header holds a {type(value).__name__}")
    names = header.get("arrays", [])
    if not isinstance(names, list) or len(names) > MAX_ARRAYS or not all(isinstance(n, str) for n in names) \
            or len(set(names)) != len(names):
        raise WireError(f"header's 'arrays' is not a list of at most {MAX_ARRAYS} distinct names")


def read_message(stream, max_bytes=MAX_MESSAGE_BYTES):
    """-> (header dict, {name: ndarray}); raises WireError on anything malformed."""
    raw = _read_frame(stream, min(max_bytes, MAX_HEADER_BYTES))
    budget = max_bytes - len(raw)
    try:
        header = json.loads(raw, parse_int=_bounded_int)
    except (ValueError, RecursionError) as error:
        raise WireError(f"header is not JSON: {str(error)[:200]}") from None
    check_header(header)
    arrays = {}
    for name in header.get("arrays", []):
        raw = _read_frame(stream, budget)
        budget -= len(raw)
        try:
            array = np.load(io.BytesIO(raw), allow_pickle=False)
        except ValueError as error:
            raise WireError(f"array {name!r} is not a plain .npy array: {error}") from None
        if array.dtype.kind not in "biuf":
            raise WireError(f"array {name!r} has a non-numeric dtype {array.dtype}")
        arrays[name] = array
    return header, arrays
