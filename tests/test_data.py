"""IDX reading against malformed and hostile files, the dataset loaders (bundled digits,
Fashion-MNIST from the system, MNIST through a checksummed download), batching helpers."""
import gzip
import os
import hashlib
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import fastnn as fnn
from fastnn import datasets
from fastnn.data import read_idx

CODES = {np.dtype(">u1"): 0x08, np.dtype(">i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
         np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr, shape=None, code=None, magic=b"\0\0"):
    arr = np.asarray(arr)
    be = arr.dtype.newbyteorder(">")
    shape = arr.shape if shape is None else shape
    head = magic + bytes([CODES[be] if code is None else code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)
    return head + arr.astype(be).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_idx_round_trip(tmp_path, gz, dtype):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    out = read_idx(write(tmp_path / "a.idx", idx_bytes(arr), gz))
    assert out.shape == (2, 3, 5) and out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("make,msg", [
    (lambda: idx_bytes(np.zeros(10, np.uint8), shape=(11,)), "claims shape \\(11,\\)|truncated"),
    (lambda: idx_bytes(np.zeros(10, np.uint8), shape=(9,)), "claims shape \\(9,\\)|more data than the header"),
    (lambda: idx_bytes(np.zeros(4, np.uint8), magic=b"\x1f\x00"), "not an IDX file"),
    (lambda: idx_bytes(np.zeros(4, np.uint8), code=0x07), "unknown IDX type code 0x07"),
    (lambda: b"\0\0\x08\x00", "with 0 dimensions"),
    (lambda: b"\0\0\x08\x03\0\0", "header is truncated"),
    (lambda: b"\0\0", "too short"),
])
def test_malformed_idx_files(tmp_path, gz, make, msg):
    with pytest.raises(ValueError, match=msg):
        read_idx(write(tmp_path / "bad.idx", make(), gz))


def test_header_claiming_absurd_size_is_rejected_before_allocating(tmp_path):
    # 60000 × 60000 × 60000 bytes claimed by a file of a few bytes, plain and gzipped
    head = b"\0\0\x08\x03" + struct.pack(">3I", 60000, 60000, 60000)
    for gz in (False, True):
        path = write(tmp_path / f"huge{gz}.idx", head + bytes(100), gz)
        tracemalloc.start()
        with pytest.raises(ValueError, match="claims shape \\(60000, 60000, 60000\\)"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 1 << 20


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path):
    # The header promises 100 bytes; the stream inflates to 200 MB of zeros.
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(b"\0\0\x08\x01" + struct.pack(">I", 100))]
    block = bytes(1 << 20)
    parts += [z.compress(block) for _ in range(200)]
    parts.append(z.flush())
    path = tmp_path / "bomb.idx.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(ValueError, match="more data than the header's shape \\(100,\\) promises"):
        read_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


def test_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(5000, dtype=np.uint8) % 251))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated|corrupt"):
        read_idx(path)


def four_files(directory, n_train=6, n_test=4, n_labels=None, gz=True):
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_labels or n_train).astype(np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8)}
    for stem, arr in arrays.items():
        write(directory / (stem + (".gz" if gz else "")), idx_bytes(arr), gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_load_a_directory_of_idx_files(tmp_path, gz):
    arrays = four_files(tmp_path / "d", gz=gz)
    (X, y), (Xt, yt) = fnn.datasets.load(str(tmp_path / "d"))
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.shape == (6, 28, 28)
    np.testing.assert_allclose(X, arrays["train-images-idx3-ubyte"] / 255, rtol=1e-6)
    np.testing.assert_array_equal(yt, arrays["t10k-labels-idx1-ubyte"])


def test_label_count_mismatch(tmp_path):
    four_files(tmp_path / "d", n_labels=5)
    with pytest.raises(ValueError, match="holds 5 labels but .* holds 6 images"):
        fnn.datasets.load(str(tmp_path / "d"))


def test_missing_files_in_a_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks train-images-idx3-ubyte"):
        fnn.datasets.load(str(tmp_path / "empty"))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'"):
        fnn.datasets.load("cifar")


def test_bundled_digits():
    (X, y), (Xt, yt) = fnn.datasets.load("digits")
    assert X.shape == (1438, 8, 8) and Xt.shape == (359, 8, 8)
    assert X.dtype == np.float32 and 0 <= X.min() and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    (X2, _), _ = fnn.datasets.load("digits")
    np.testing.assert_array_equal(X, X2)                      # a fixed split


@pytest.mark.skipif(not os.environ.get("CI") and not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="needs apt-get install dataset-fashion-mnist (.ci/run installs it)")
def test_fashion_mnist_from_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path))          # nothing cached, no download
    (X, y), (Xt, yt) = fnn.datasets.load("fashion-mnist", download=False)
    assert X.shape == (60000, 28, 28) and Xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10 and np.bincount(yt).tolist() == [1000] * 10


@pytest.fixture
def fake_mnist_server(tmp_path, monkeypatch):
    """MNIST's four files served from a local directory (file:// URLs) with their checksums."""
    server = tmp_path / "server"
    arrays = four_files(server)
    sha = {stem: hashlib.sha256((server / (stem + ".gz")).read_bytes()).hexdigest() for stem in arrays}
    monkeypatch.setitem(datasets.SOURCES, "mnist", {"urls": [server.as_uri() + "/"], "system": [], "sha256": sha})
    monkeypatch.setenv("FASTNN_DATA", str(tmp_path / "cache"))
    return server, arrays


def test_mnist_downloads_verifies_and_caches(fake_mnist_server, tmp_path):
    server, arrays = fake_mnist_server
    with pytest.raises(FileNotFoundError, match="pass download=True"):
        fnn.datasets.load("mnist", download=False)
    (X, y), _ = fnn.datasets.load("mnist")
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(s + ".gz" for s in arrays)
    for f in server.iterdir():                                  # now offline: the cache serves
        f.unlink()
    (X2, _), _ = fnn.datasets.load("mnist")
    np.testing.assert_array_equal(X, X2)


def test_mnist_download_with_a_wrong_checksum_is_discarded(fake_mnist_server, tmp_path):
    server, _ = fake_mnist_server
    datasets.SOURCES["mnist"]["sha256"]["train-labels-idx1-ubyte"] = "0" * 64
    with pytest.raises(OSError, match="SHA-256 mismatch \\(file discarded\\)"):
        fnn.datasets.load("mnist")
    assert not (tmp_path / "cache" / "mnist" / "train-labels-idx1-ubyte.gz").exists()


def test_corrupt_cached_file_is_reported(fake_mnist_server, tmp_path):
    fnn.datasets.load("mnist")
    cached = tmp_path / "cache" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    cached.write_bytes(cached.read_bytes()[:-3])
    with pytest.raises(ValueError, match="fail their SHA-256 check; delete them"):
        fnn.datasets.load("mnist")


def test_batches_cover_every_sample_once():
    X, y = np.arange(23)[:, None], np.arange(23)
    fnn.manual_seed(0)
    seen = [yb for _, yb in fnn.data.batches(X, y, batch_size=5)]
    assert [len(b) for b in seen] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(seen).tolist()) == list(range(23))
    assert np.concatenate(list(fnn.data.batches(X, batch_size=4, shuffle=False)))[:, 0].tolist() == list(range(23))


def test_normalize_and_split():
    x = np.array([[0, 255]], np.uint8)
    np.testing.assert_array_equal(fnn.data.normalize(x), [[-1.0, 1.0]])
    X, y = np.arange(100)[:, None], np.arange(100)
    Xa, Xb, ya, yb = fnn.data.train_test_split(X, y, test_size=0.25)
    assert len(Xa) == 75 and len(Xb) == 25 and sorted(np.concatenate([ya, yb]).tolist()) == list(range(100))
    assert (Xa[:, 0] == ya).all()


def test_datasets_load_images_with_a_channel_axis_for_conv2d():
    (X, y), (Xt, yt) = fnn.datasets.load("digits", channels=True)
    (X2, _), _ = fnn.datasets.load("digits")
    assert X.shape == (len(X2), 1, 8, 8) and Xt.shape[1:] == (1, 8, 8)
    np.testing.assert_array_equal(X[:, 0], X2)
    assert fnn.Conv2d(1, 4, 3)(X[:2]).shape == (2, 4, 6, 6)


def _idx_bytes(arr):
    arr = np.asarray(arr, np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


@pytest.mark.parametrize("tail", [b"\0" * 100, "second-member"])
def test_bytes_after_the_gzip_stream_are_refused_at_once(tmp_path, tail):
    # zero padding, or a second gzip member (`cat a.gz b.gz`): refused quickly, not a busy loop
    data = gzip.compress(_idx_bytes(np.arange(24).reshape(2, 3, 4)))
    extra = gzip.compress(_idx_bytes(np.zeros((1, 1)))) if tail == "second-member" else tail
    path = tmp_path / "padded.gz"
    path.write_bytes(data + extra)
    code = f"import fastnn; fastnn.data.read_idx({str(path)!r})"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 1 and "bytes after the end of the gzip stream" in r.stderr, r.stderr


@pytest.mark.parametrize("compress", [False, True])
def test_an_empty_idx_file_reads(tmp_path, compress):
    raw = _idx_bytes(np.zeros((0, 28, 28)))
    path = tmp_path / ("empty.gz" if compress else "empty")
    path.write_bytes(gzip.compress(raw) if compress else raw)
    out = fnn.data.read_idx(path)
    assert out.shape == (0, 28, 28) and out.dtype == np.uint8
