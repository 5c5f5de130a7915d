"""Fashion-MNIST from Debian's dataset-fashion-mnist (IDX files, gzipped or
not). Everything is loaded into memory once: the set is 47 MB as uint8."""
import gzip
import os
import struct

import numpy as np

DEFAULT_DIR = os.environ.get("PIVOT_FMNIST_DIR",
                             "/usr/share/datasets/fashion-mnist")


def _open(path):
    for p in (path, path + ".gz"):
        if os.path.exists(p):
            return gzip.open(p, "rb") if p.endswith(".gz") else open(p, "rb")
    raise FileNotFoundError(
        "Fashion-MNIST file %s(.gz) not found; install Debian's "
        "dataset-fashion-mnist or set PIVOT_FMNIST_DIR" % path)


def read_idx(path):
    """Read one IDX file into a numpy array, checking the header against
    the payload size so a truncated file fails loudly."""
    with _open(path) as f:
        buf = f.read()
    if len(buf) < 4:
        raise ValueError("%s: too short for an IDX header" % path)
    zero, dtype_code, ndim = struct.unpack(">HBB", buf[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, buf[4:4 + 4 * ndim])
    n = int(np.prod(dims))
    off = 4 + 4 * ndim
    if len(buf) - off != n:
        raise ValueError("%s: header says %d bytes, file holds %d"
                         % (path, n, len(buf) - off))
    return np.frombuffer(buf, dtype=np.uint8, offset=off).reshape(dims)


def load_fmnist(root=DEFAULT_DIR):
    """Returns (x_train, y_train, x_test, y_test): float32 images in [0, 1]
    shaped [N, 1, 28, 28] and int64 labels."""
    def img(name):
        return read_idx(os.path.join(root, name)).astype(np.float32)[:, None] / 255.0

    def lab(name):
        return read_idx(os.path.join(root, name)).astype(np.int64)
    return (img("train-images-idx3-ubyte"), lab("train-labels-idx1-ubyte"),
            img("t10k-images-idx3-ubyte"), lab("t10k-labels-idx1-ubyte"))
