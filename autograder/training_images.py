"""TRUSTED SIDE. The MNIST training images as the training gate sends them to the child.

They are read from the verified idx file a piece of rows at a time, for the digest and again
for the wire (wire.Pieces), so the grader never holds the 47 MB whole beside the training
child (which does hold them: it trains on them)."""
import hashlib
from pathlib import Path

import numpy as np

from . import wire
from .reference import data as ref_data

ROWS_PER_PIECE = 5000
HEADER_BYTES = 16            # idx3: magic, then the count, rows and columns as big-endian uint32


class TrainingImages:
    def __init__(self, data_dir):
        self.path = Path(data_dir) / ref_data.SPLIT_FILES["train"][0]
        self.labels_path = Path(data_dir) / ref_data.SPLIT_FILES["train"][1]
        with open(self.path, "rb") as f:
            header = f.read(HEADER_BYTES)
        magic, count, rows, columns = np.frombuffer(header, dtype=">u4").astype(int) if len(header) == 16 else (0,) * 4
        if magic != 0x803 or self.path.stat().st_size != HEADER_BYTES + count * rows * columns:
            raise ref_data.DataError(f"{self.path} is not a complete idx3 file of images")
        self.shape = (int(count), int(rows * columns))

    def rows(self, start, count):
        """Rows [start, start + count) as a uint8 array of their own."""
        count = max(0, min(count, self.shape[0] - start))
        rows = np.empty((count, self.shape[1]), np.uint8)
        view, done = memoryview(rows).cast("B"), 0
        with open(self.path, "rb") as f:
            f.seek(HEADER_BYTES + start * self.shape[1])
            while done < len(view):
                got = f.readinto(view[done:])
                if not got:
                    raise ref_data.DataError(f"{self.path} ended early")
                done += got
        return rows

    def pieces(self):
        for start in range(0, self.shape[0], ROWS_PER_PIECE):
            yield self.rows(start, ROWS_PER_PIECE)

    def sha256(self):
        """The digest of the images' bytes in row order: what the child must report having trained on."""
        digest = hashlib.sha256()
        for piece in self.pieces():
            digest.update(piece.data)
        return digest.hexdigest()

    def labels(self):
        """The digits of the images, in their order -> uint8 (N,) (60 kB: read whole)."""
        labels = ref_data.read_idx(self.labels_path)
        if labels.shape != (self.shape[0],):
            raise ref_data.DataError(f"{self.labels_path} holds {labels.shape} labels for {self.shape[0]} images")
        return labels

    def for_wire(self):
        return wire.Pieces(self.shape, np.uint8, self.pieces)
