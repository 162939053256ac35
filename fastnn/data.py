"""Reading data and feeding it in mini-batches (fastnn.data).

`read_idx` reads the IDX format of MNIST and Fashion-MNIST (gzipped or not) and checks the
header against the file before allocating anything: a header that lies about the size, a
truncated file or a gzip stream that inflates past what the header promises (a gzip bomb)
raises ValueError quickly and without large memory.
"""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from fastnn.random import generator

# IDX type codes -> big-endian dtypes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_TYPES: dict[int, np.dtype] = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
             0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 4 << 30     # no real IDX file comes near 4 GiB
_DEFLATE_MAX_RATIO = 1032   # deflate cannot expand data by more than ~1032:1
_CHUNK = 1 << 16



def raw_bytes(arr: np.ndarray) -> memoryview:
    """A writable byte view of a C-contiguous array, for readinto and CRC checks without copies."""
    return memoryview(arr.reshape(-1)).cast("B")  # type: ignore[arg-type]  # an ndarray is a buffer

def _parse_header(head: bytes, path: str, available: int, compressed: bool):
    if len(head) < 4:
        raise ValueError(f"{path}: too short for an IDX file ({len(head)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0:
        raise ValueError(f"{path}: not an IDX file (the magic number must start with two zero bytes, "
                         f"got {head[:2].hex()})")
    if code not in IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; expected one of "
                         f"{', '.join(f'0x{c:02x}' for c in IDX_TYPES)}")
    if not 1 <= ndim <= 8:
        raise ValueError(f"{path}: an IDX file with {ndim} dimensions is not supported (1 to 8)")
    if len(head) < 4 + 4 * ndim:
        raise ValueError(f"{path}: the header is truncated ({len(head)} bytes, needs {4 + 4 * ndim})")
    shape = struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])
    dtype = IDX_TYPES[code]
    nbytes = dtype.itemsize
    for d in shape:
        nbytes *= d
    limit = min(MAX_IDX_BYTES, available * _DEFLATE_MAX_RATIO) if compressed else available
    if nbytes > MAX_IDX_BYTES or (not compressed and nbytes != available) or nbytes > limit:
        raise ValueError(f"{path}: the header claims shape {shape} ({nbytes} bytes of data) but the "
                         f"file holds {'at most ' + str(limit) if compressed else available} bytes; "
                         "the file is truncated or corrupt")
    return shape, dtype, nbytes, 4 + 4 * ndim


def read_idx(path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a NumPy array of its shape and type.

    Example:
        >>> images = read_idx("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
        >>> images.shape, images.dtype
        ((10000, 28, 28), dtype('uint8'))
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(2) == b"\x1f\x8b":
            f.seek(0)
            return _read_gzip(f, size, path)
        f.seek(0)
        head = f.read(4 + 4 * 8)
        ndim = head[3] if len(head) >= 4 else 0
        shape, dtype, nbytes, hlen = _parse_header(head, path, size - 4 - 4 * ndim, False)
        f.seek(hlen)
        out = np.empty(shape, dtype)
        if nbytes and f.readinto(raw_bytes(out)) != nbytes:
            raise ValueError(f"{path}: the data is truncated")
    return out.astype(dtype.newbyteorder("="), copy=False)


def _read_gzip(f, size: int, path: str) -> np.ndarray:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip wrapper

    def inflate(limit: int) -> bytes:
        """Up to `limit` more bytes of decompressed data (never more in memory)."""
        out = b""
        while len(out) < limit:
            if inflater.eof:  # the stream has ended: bytes after it are not ours to read
                break
            if inflater.unconsumed_tail:
                src = inflater.unconsumed_tail
            else:
                src = f.read(_CHUNK)
                if not src:
                    break
            try:
                out += inflater.decompress(src, limit - len(out))
            except zlib.error as e:
                raise ValueError(f"{path}: the gzip stream is corrupt ({e})") from None
        return out

    head = inflate(4)
    ndim = head[3] if len(head) == 4 else 0
    head += inflate(4 * ndim)
    shape, dtype, nbytes, _ = _parse_header(head, path, size, True)
    out = np.empty(shape, dtype)
    view = raw_bytes(out)
    filled = 0
    while filled < nbytes:
        chunk = inflate(min(_CHUNK, nbytes - filled))
        if not chunk:
            raise ValueError(f"{path}: the data is truncated: the header promises {nbytes} bytes, the "
                             f"gzip stream holds {filled}")
        view[filled:filled + len(chunk)] = chunk
        filled += len(chunk)
    if inflate(1):
        raise ValueError(f"{path}: the gzip stream holds more data than the header's shape {shape} "
                         "promises; refusing it (corrupt file or gzip bomb)")
    if not inflater.eof:
        raise ValueError(f"{path}: the gzip stream is truncated (it does not end)")
    if inflater.unused_data or inflater.unconsumed_tail or f.read(1):
        raise ValueError(f"{path}: there are bytes after the end of the gzip stream (padding, or a second "
                         "gzip member as `cat a.gz b.gz` makes); an IDX file holds one stream")
    return out.astype(dtype.newbyteorder("="), copy=False)


def batches(X, y=None, batch_size: int = 32, shuffle: bool = True, rng=None):
    """Yield (X_batch, y_batch) (or X_batch when y is None) of `batch_size` rows; the last may
    be smaller. Shuffles with `rng` or fastnn's seeded generator.

    Example:
        >>> [len(xb) for xb, yb in fnn.data.batches(np.zeros((5, 2)), np.zeros(5), batch_size=2, shuffle=False)]
        [2, 2, 1]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batches: batch_size must be a positive int, got {batch_size!r}")
    n = len(X)
    if y is not None and len(y) != n:
        raise ValueError(f"batches: X has {n} rows but y has {len(y)}")
    order = (rng or generator()).permutation(n) if shuffle else None
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        yield X[idx] if y is None else (X[idx], y[idx])


def normalize(X, mean: float = 0.5, std: float = 0.5, scale: float | None = None) -> np.ndarray:
    """float32 (X·scale − mean) / std; scale defaults to 1/255 for uint8 images (pixels to [0, 1]).
    The MNIST classifier's recipe (examples/mnist_classifier.py) is normalize(X) = (x/255 − 0.5)/0.5.

    Example:
        >>> fnn.data.normalize(np.array([0, 255], np.uint8))
        array([-1.,  1.], dtype=float32)
    """
    X = np.asarray(X)
    if scale is None:
        scale = 1.0 / 255.0 if X.dtype == np.uint8 else 1.0
    if std == 0:
        raise ValueError("normalize: std must be non-zero")
    out = X.astype(np.float32) * np.float32(scale)
    out -= np.float32(mean)
    out /= np.float32(std)
    return out


def train_test_split(X, y, test_size: float = 0.2, shuffle: bool = True, rng=None):
    """(X_train, X_test, y_train, y_test), as scikit-learn's; `test_size` a fraction in (0, 1).

    Example:
        >>> Xa, Xb, ya, yb = fnn.data.train_test_split(np.zeros((10, 2)), np.arange(10), test_size=0.3)
        >>> len(Xa), len(Xb)
        (7, 3)
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"train_test_split: test_size must be in (0, 1), got {test_size}")
    n = len(X)
    if len(y) != n:
        raise ValueError(f"train_test_split: X has {n} rows but y has {len(y)}")
    n_test = round(n * test_size)
    if n_test == 0 or n_test == n:
        raise ValueError(f"train_test_split: test_size={test_size} of {n} samples leaves an empty part")
    idx = (rng or generator()).permutation(n) if shuffle else np.arange(n)
    test, train = idx[:n_test], idx[n_test:]
    return X[train], X[test], y[train], y[test]


__all__ = ["read_idx", "batches", "normalize", "train_test_split", "IDX_TYPES"]
