"""Datasets (fastnn.datasets): `load(name)` -> (X_train, y_train), (X_test, y_test).

X is float32 images scaled to [0, 1], shape (N, H, W), or (N, 1, H, W) with channels=True (what
a Conv2d takes); y is int64 class labels.

- "digits": the 8×8 UCI optical-digits images (1,797 of them) as shipped with scikit-learn,
  bundled here (digits.csv.gz; see DIGITS_LICENSE.txt). Works offline in a second.
- "fashion-mnist": /usr/share/datasets/fashion-mnist (`apt-get install dataset-fashion-mnist`),
  else the cache directory, else a download verified by SHA-256.
- "mnist": the cache directory, else a download verified by SHA-256.
- a directory path holding the four IDX files (gzipped or not).

The cache directory is $FASTNN_DATA, else $XDG_CACHE_HOME/fastnn, else ~/.cache/fastnn;
a dataset lives in its subdirectory named after it.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from fastnn.data import read_idx
from fastnn.serialization import atomic_write

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# A file is accepted when the SHA-256 of its gzip file or of its decompressed IDX bytes is
# listed. MNIST: the published digests of the .gz files. Fashion-MNIST: digests of the IDX
# bytes (Debian re-compresses the files, so their .gz digests differ from upstream's).
SOURCES: dict[str, dict[str, Any]] = {
    "mnist": {
        "urls": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                 "https://storage.googleapis.com/cvdf-datasets/mnist/"],
        "system": [],
        "sha256": {
            "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    },
    "fashion-mnist": {
        "urls": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
        "system": ["/usr/share/datasets/fashion-mnist"],
        "sha256": {
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
    },
}
NAMES = ("digits", "fashion-mnist", "mnist")
CLASS_NAMES = {
    "digits": [str(i) for i in range(10)],
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"],
}


def cache_dir() -> Path:
    """Where downloaded datasets are kept.

    Example:
        >>> fnn.datasets.cache_dir().name
        'fastnn'
    """
    if os.environ.get("FASTNN_DATA"):
        return Path(os.environ["FASTNN_DATA"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastnn"


def _find(directory: Path, stem: str):
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    alt = stem.replace("-idx", ".idx")  # MNIST's site also serves "train-images.idx3-ubyte"
    return directory / alt if (directory / alt).is_file() else None


def _digests(path: Path) -> set[str]:
    """SHA-256 of the file and, when gzipped, of its decompressed bytes."""
    out = set()
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    out.add(h.hexdigest())
    if path.suffix == ".gz":
        h = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out.add(h.hexdigest())
        except (OSError, EOFError):
            pass  # not valid gzip: cannot match
    return out


def _verified(path: Path, name: str, stem: str) -> bool:
    return SOURCES[name]["sha256"][stem] in _digests(path)


def _download(name: str, stem: str, target: Path) -> None:
    errors = []
    for base in SOURCES[name]["urls"]:
        url = base + stem + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                atomic_write(target, lambda f: shutil.copyfileobj(r, f))
        except (urllib.error.URLError, OSError) as e:
            errors.append(f"{url}: {e}")
            continue
        if _verified(target, name, stem):
            return
        target.unlink()
        errors.append(f"{url}: SHA-256 mismatch (file discarded)")
    raise OSError(f"could not download {name} file {stem}.gz:\n  " + "\n  ".join(errors))


def _locate(name: str, download: bool) -> dict:
    cache = cache_dir() / name
    for d in [Path(p) for p in SOURCES[name]["system"]] + [cache]:
        found = {stem: _find(d, stem) for stem in FILES}
        if all(found.values()):
            bad = [p.name for stem, p in found.items() if not _verified(p, name, stem)]
            if bad:
                raise ValueError(f"{name}: {', '.join(bad)} in {d} fail their SHA-256 check; delete "
                                 "them (they are corrupt or not the published files)")
            return found
    if not download:
        raise FileNotFoundError(f"{name} was not found in {[*SOURCES[name]['system'], str(cache)]}"
                                + ("; install it with `apt-get install dataset-fashion-mnist`"
                                   if name == "fashion-mnist" else "") + " or pass download=True")
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for stem in FILES:
        path = _find(cache, stem)
        if path is None or not _verified(path, name, stem):
            path = cache / (stem + ".gz")
            _download(name, stem, path)
        found[stem] = path
    return found


def _pair(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{images_path} / {labels_path}: expected images (N, H, W) and labels (N,), "
                         f"got {images.shape} and {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{labels_path} holds {len(labels)} labels but {images_path} holds "
                         f"{len(images)} images; the files do not belong together")
    if labels.dtype.kind not in "iu" or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{labels_path}: labels must be integers 0..9")
    scale = np.float32(1 / 255) if images.dtype == np.uint8 else np.float32(1)
    return images.astype(np.float32) * scale, labels.astype(np.int64)


def load_directory(directory) -> tuple:
    """The four IDX files of an MNIST-format dataset in `directory`.

    Example:
        >>> fnn.datasets.load_directory("/no/such/dir")
        Traceback (most recent call last):
            ...
        FileNotFoundError: ...
    """
    d = Path(directory)
    found = {stem: _find(d, stem) for stem in FILES}
    missing = [stem for stem, p in found.items() if p is None]
    if missing:
        raise FileNotFoundError(f"{d} lacks {', '.join(m + '[.gz]' for m in missing)}")
    return (_pair(found[FILES[0]], found[FILES[1]]), _pair(found[FILES[2]], found[FILES[3]]))


def load_digits(test_fraction: float = 0.2) -> tuple:
    """The bundled 8×8 digits, split into train and test by a fixed permutation.

    Example:
        >>> (X_train, y_train), (X_test, y_test) = fnn.datasets.load_digits()
        >>> X_train.shape, X_test.shape
        ((1438, 8, 8), (359, 8, 8))
    """
    path = Path(__file__).with_name("digits.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    X = table[:, :64].reshape(-1, 8, 8) / np.float32(16)
    y = table[:, 64].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(X))  # fixed: the split never changes
    n_test = round(len(X) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (X[train], y[train]), (X[test], y[test])


def load(name, download: bool = True, channels: bool = False) -> tuple:
    """(X_train, y_train), (X_test, y_test) for "digits", "fashion-mnist", "mnist" or a
    directory of IDX files. With channels=True the images come as (N, 1, H, W): one grey
    channel, the layout Conv2d takes.

    Example:
        >>> (X, y), (Xt, yt) = fnn.datasets.load("digits")
        >>> X.shape, y[:5]
        ((1438, 8, 8), array([...]))
        >>> fnn.datasets.load("digits", channels=True)[0][0].shape
        (1438, 1, 8, 8)
    """
    key = str(name).lower()
    if key == "digits":
        data = load_digits()
    elif key in SOURCES:
        files = _locate(key, download)
        data = (_pair(files[FILES[0]], files[FILES[1]]), _pair(files[FILES[2]], files[FILES[3]]))
    elif os.path.isdir(os.fspath(name)):
        data = load_directory(name)
    elif os.sep in str(name) or str(name).startswith((".", "~")):
        raise FileNotFoundError(f"no such directory {str(name)!r}: pass a directory holding the four IDX files, or "
                                f"one of the dataset names {', '.join(NAMES)}")
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(NAMES)} or pass a directory "
                         "holding the four IDX files")
    if channels:
        data = tuple((X.reshape(len(X), 1, *X.shape[1:]), y) for X, y in data)
    return data
