"""wire.py's array frames: what np.save would write, sent from the array's own memory or in pieces."""
import io

import numpy as np
import pytest

from autograder import wire


def _frame_of(array):
    stream = io.BytesIO()
    wire.write_message(stream, {}, {"a": array})
    return stream.getvalue()


@pytest.mark.parametrize("array", [np.arange(12, dtype=np.float32).reshape(3, 4),
                                   np.asfortranarray(np.arange(12.0).reshape(3, 4)), np.zeros((0, 5)),
                                   np.array(3.5), np.arange(10)[::2], np.arange(6, dtype=">f8")])
def test_arrays_round_trip_as_the_npy_bytes_np_save_writes(array):
    saved = io.BytesIO()
    np.save(saved, np.asarray(array, order="C"))
    raw = _frame_of(array)
    assert saved.getvalue() in raw
    _, arrays = wire.read_message(io.BytesIO(raw))
    assert arrays["a"].dtype == array.dtype and np.array_equal(arrays["a"], array)


def test_pieces_send_the_same_bytes_as_the_whole_array():
    images = np.random.default_rng(0).integers(0, 256, (1000, 784), dtype=np.uint8)
    pieces = wire.Pieces(images.shape, np.uint8, lambda: (images[i:i + 300] for i in range(0, 1000, 300)))
    assert _frame_of(pieces) == _frame_of(images)


@pytest.mark.parametrize("rows", [999, 1001])
def test_pieces_that_do_not_fill_the_declared_shape_exactly_are_refused(rows):
    images = np.zeros((rows, 784), np.uint8)
    with pytest.raises(wire.WireError, match="pieces hold"):
        _frame_of(wire.Pieces((1000, 784), np.uint8, lambda: iter((images,))))


def test_object_arrays_are_never_sent():
    with pytest.raises(wire.WireError, match="object"):
        _frame_of(np.array([{}, 1], dtype=object))
