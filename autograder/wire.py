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
    """-> a bytearray of exactly `count` bytes, read straight into it (no chunks joined)."""
    buffer = bytearray(count)
    view, done = memoryview(buffer), 0
    while done < count:
        got = stream.readinto(view[done:])
        if not got:
            raise EOFError("the other side closed the channel")
        done += got
    return buffer


def _read_frame(stream, budget):
    (length,) = _LENGTH.unpack(_read_exact(stream, _LENGTH.size))
    if length > budget:
        raise WireError(f"message larger than {budget} bytes")
    return _read_exact(stream, length)


class Pieces:
    """An array sent without ever being whole in the sender's memory: `pieces` is a callable
    returning an iterator of C-contiguous arrays of `dtype` whose rows, in order, make up `shape`."""

    def __init__(self, shape, dtype, pieces):
        self.shape, self.dtype, self.pieces = tuple(shape), np.dtype(dtype), pieces
        self.nbytes = self.dtype.itemsize * int(np.prod(self.shape, dtype=np.int64))

    @classmethod
    def whole(cls, array):
        """A whole array as one piece (C order, so that its bytes are sent from its own memory)."""
        array = np.asarray(array, order="C")
        if array.dtype.hasobject:
            raise WireError("object arrays cannot be sent")
        return cls(array.shape, array.dtype, lambda: iter((array,)))

    def npy_header(self):
        """The .npy header (format 1.0, or 2.0 when too long) that np.save would write."""
        fields = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        header = io.BytesIO()
        try:
            np.lib.format.write_array_header_1_0(header, fields)
        except ValueError:
            header = io.BytesIO()
            np.lib.format.write_array_header_2_0(header, fields)
        return header.getvalue()


def write_message(stream, header, arrays=None):
    """Write the header and the arrays as .npy frames. Each array's bytes go to the stream from
    its own memory, never through a copy, and a Pieces one piece at a time: sending the 47 MB of
    training images costs the grader at most one piece."""
    arrays = arrays or {}
    header = dict(header, arrays=list(arrays))
    raw = json.dumps(header).encode()
    stream.write(_LENGTH.pack(len(raw)) + raw)
    for array in arrays.values():
        _write_pieces(stream, array if isinstance(array, Pieces) else Pieces.whole(array))
    stream.flush()


def _write_pieces(stream, array):
    npy = array.npy_header()
    stream.write(_LENGTH.pack(len(npy) + array.nbytes) + npy)
    sent = 0
    for piece in array.pieces():
        piece = np.asarray(piece, dtype=array.dtype, order="C")
        if sent + piece.nbytes > array.nbytes:
            raise WireError("the pieces hold more bytes than the declared shape")
        if piece.nbytes:
            stream.write(memoryview(piece.reshape(-1)).cast("B"))
        sent += piece.nbytes
    if sent != array.nbytes:
        raise WireError(f"the pieces hold {sent} bytes, the declared shape {array.nbytes}")


def _array_from_frame(raw):
    """A .npy frame (bytearray) -> the array, viewing the frame's memory (no copy)."""
    head = io.BytesIO(bytes(raw[:min(len(raw), 70_000)]))
    version = np.lib.format.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(head)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays are refused")
    count = 1
    for size in shape:
        count *= size
    offset = head.tell()
    if offset + count * dtype.itemsize != len(raw):
        raise ValueError(f"{len(raw) - offset} data bytes for shape {shape} of {dtype}")
    array = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


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
            array = _array_from_frame(raw)
        except (ValueError, SyntaxError, TypeError, RecursionError) as error:
            raise WireError(f"array {name!r} is not a plain .npy array: {error}") from None
        if array.dtype.kind not in "biuf":
            raise WireError(f"array {name!r} has a non-numeric dtype {array.dtype}")
        arrays[name] = array
    return header, arrays
