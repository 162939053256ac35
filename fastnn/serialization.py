"""fnn.save / fnn.load: a model (and optionally its optimizer) in one safe, documented file
(fastnn's own layout below, or a safetensors file: fastnn/safetensors_file.py).

File layout (all integers little-endian):

    bytes 0-7    magic  b"\\x89FNN\\r\\n\\x1a\\n"   (catches text-mode and truncated copies)
    bytes 8-11   uint32 format version (1)
    bytes 12-15  uint32 0 (reserved)
    bytes 16-23  uint64 H, the length of the JSON header
    bytes 24-    H bytes of UTF-8 JSON:
                   {"format": "fastnn", "version": 1, "fastnn_version": "...",
                    "model": {"type": "Sequential", "config": {"layers": [...]}},
                    "tensors": [{"name", "dtype": "<f4"|"<f8", "shape", "offset", "nbytes",
                                 "crc32"}, ...],
                    "optimizer": null | {"type": "SGD", "param_groups": [...],
                                         "state": {"0": {"step": 3, "momentum_buffer": "@name"}}},
                    "metadata": {...},   (free-form JSON, e.g. the input normalisation)
                    "loss": null | {"type": "CrossEntropyLoss", "config": {}}}   (of the last fit)
    then zero padding to a multiple of 64, then the tensors' raw bytes; a tensor's
    "offset" counts from the start of that data section.

Model tensors are named as in state_dict() ("0.weight"); optimizer tensors
"optimizer.<param index>.<key>", referred to from the optimizer state as "@<name>".

Loading executes nothing from the file (no pickle): it checks the magic, the version, the
header length against the file size, every tensor's dtype, shape, byte count, bounds and
CRC-32, and every parameter shape against the architecture — all before allocating the
model. Saving writes a temporary file in the same directory, fsyncs it and renames it over
the target, so a crash or Ctrl-C mid-save leaves any previous file intact.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import time
import zlib

import numpy as np

from fastnn import _core, safetensors_file
from fastnn.data import raw_bytes
from fastnn.layers.base import LAYERS, Layer, build_layer
from fastnn.losses import LOSSES
from fastnn.optim.optimizer import OPTIMIZERS, Optimizer
from fastnn.random import generator

MAGIC = b"\x89FNN\r\n\x1a\n"
VERSION = 1
_PREFIX = struct.Struct("<8sIIQ")
_ALIGN = 64
_MAX_HEADER = 64 << 20
_DTYPES: dict[str, np.dtype] = {"<f4": np.dtype("<f4"), "<f8": np.dtype("<f8"), "<i8": np.dtype("<i8")}
_OPTIMIZER_TYPES = {cls.__name__: cls for cls in OPTIMIZERS.values()}
_LOSS_NAMES = {cls.__name__: name for name, cls in LOSSES.items()}


class FormatError(ValueError):
    """The file is not a valid fastnn model file (corrupt, truncated or not ours).

    Example:
        >>> _ = open("junk.fnn", "wb").write(b"not a model")
        >>> fnn.load("junk.fnn")
        Traceback (most recent call last):
            ...
        fastnn.serialization.FormatError: junk.fnn: 11 bytes is too short to be a fastnn model file (truncated?)
    """


def _pad(n: int) -> int:
    return -n % _ALIGN


def _plain(value):
    """Hyper-parameters as JSON values (tuples become lists, NumPy scalars Python numbers)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def save(model: Layer, path, optimizer: Optimizer | None = None, metadata: dict | None = None,
         format: str = "fastnn") -> None:
    """Write `model` (architecture and weights) and, if given, `optimizer`'s state to `path`.
    `metadata` (JSON values only, e.g. how inputs were normalised) comes back as
    `model.metadata` after fnn.load.

    format: "fastnn" (this module's layout) or "safetensors": the state_dict under PyTorch's
    names, which the safetensors library and PyTorch's load_state_dict read, with the
    architecture in its metadata so that fnn.load rebuilds the model (fastnn/safetensors_file.py;
    no optimizer state).

    The write is atomic: readers see the old file or the new one, never a mixture.

    Example:
        >>> fnn.save(model, "mnist.fnn", optimizer=opt)
        >>> model2, opt2 = fnn.load("mnist.fnn", with_optimizer=True)
    """
    if format not in ("fastnn", "safetensors"):
        raise ValueError(f"save: format must be 'fastnn' or 'safetensors', got {format!r}")
    if not isinstance(model, Layer):
        raise TypeError(f"save expects a fastnn model or layer, got {type(model).__name__}")
    for layer in model.modules():  # fnn.load rebuilds layers by name, and only fastnn's own
        if LAYERS.get(type(layer).__name__) is not type(layer):
            raise TypeError(f"save: the model holds a {type(layer).__module__}.{type(layer).__qualname__}, a layer "
                            "class of your own, which fnn.load cannot rebuild (a file never names code to "
                            "import); save the weights with np.savez(path, **model.state_dict()) and rebuild "
                            "the model in code, then model.load_state_dict(dict(np.load(path)))")
    tensors = list(model.state_dict().items())  # parameters and buffers (BatchNorm's statistics)
    if format == "safetensors":
        if optimizer is not None:
            raise ValueError("save: a safetensors file holds the model's tensors only; save with format='fastnn' "
                             "to keep the optimizer's state")
        meta = {"format": "fastnn", "fastnn_version": _core.__version__,
                "model": json.dumps({"type": type(model).__name__, "config": model.get_config()}),
                "metadata": json.dumps(metadata or {}), "loss": json.dumps(_loss_spec(model))}
        atomic_write(path, lambda f: safetensors_file.write(f, tensors, meta))
        return
    opt_header = None
    if optimizer is not None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"save: optimizer must be a fastnn optimizer, got {type(optimizer).__name__}")
        index = {id(p): i for i, p in enumerate(model.parameters())}
        order = [index.get(id(p)) for g in optimizer.param_groups for p in g["params"]]
        if None in order:
            raise ValueError("save: the optimizer updates parameters that are not this model's")
        sd = optimizer.state_dict()
        state: dict[str, dict] = {}
        for k, entry in sd["state"].items():
            pi = order[k]
            state[str(pi)] = {}
            for key, v in entry.items():
                if np.isscalar(v):
                    state[str(pi)][key] = _plain(v)
                else:
                    name = f"optimizer.{pi}.{key}"
                    tensors.append((name, v))
                    state[str(pi)][key] = "@" + name
        groups = [{**{k: _plain(v) for k, v in g.items() if k != "params"},
                   "params": [order[i] for i in g["params"]]} for g in sd["param_groups"]]
        opt_header = {"type": type(optimizer).__name__, "param_groups": groups, "state": state}

    table, offset = [], 0
    for name, arr in tensors:
        arr = np.asarray(arr, order="C")  # (ascontiguousarray would make a 0-d counter 1-d)
        dt = arr.dtype.newbyteorder("<")
        table.append({"name": name, "dtype": dt.str, "shape": list(arr.shape), "offset": offset,
                      "nbytes": arr.nbytes, "crc32": zlib.crc32(arr.astype(dt, copy=False).tobytes())})
        offset += arr.nbytes + _pad(arr.nbytes)
    header = json.dumps({"format": "fastnn", "version": VERSION, "fastnn_version": _core.__version__,
                         "model": {"type": type(model).__name__, "config": model.get_config()},
                         "tensors": table, "optimizer": opt_header,
                         "metadata": metadata or {}, "loss": _loss_spec(model)}).encode()

    def write(f):
        f.write(_PREFIX.pack(MAGIC, VERSION, 0, len(header)))
        f.write(header)
        f.write(b"\0" * _pad(_PREFIX.size + len(header)))
        for (_, arr), entry in zip(tensors, table):
            f.write(np.asarray(arr, order="C").astype(entry["dtype"], copy=False).tobytes())
            f.write(b"\0" * _pad(entry["nbytes"]))

    atomic_write(path, write)


# Temporary files of atomic_write: ".<name>.fastnn-<random>.tmp" next to the target. One left by
# a save that was killed is removed by the next save of the same name once it is this old (a
# younger one may belong to a save still running in another process).
_TMP_MARK = ".fastnn-"
STALE_TMP_SECONDS = 3600


def _remove_stale_temps(directory: str, name: str) -> None:
    prefix = "." + name + _TMP_MARK
    now = time.time()
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(prefix) and e.name.endswith(".tmp"):
            try:
                if e.is_file(follow_symlinks=False) and now - e.stat().st_mtime > STALE_TMP_SECONDS:
                    os.unlink(e.path)
            except OSError:
                pass


def atomic_write(path, write) -> None:
    """Call write(file) on a temporary file next to `path`, fsync it, then rename it over
    `path`. On any error (or Ctrl-C) the temporary file is removed and `path` is untouched;
    temporary files that earlier, killed saves of `path` left behind are removed."""
    path = os.fspath(path)
    if os.path.isdir(path) or path.endswith(os.sep):
        raise IsADirectoryError(f"cannot save to {path!r}: it is a directory; give a file name in it, such as "
                                f"{os.path.join(path, 'model.fnn')!r}")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"cannot save to {path!r}: the directory {directory!r} does not exist")
    _remove_stale_temps(directory, os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + _TMP_MARK, suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


# ------------------------------------------------------------------------- loading
def _read_header(f, size: int, path: str) -> dict:
    raw = f.read(_PREFIX.size)
    if len(raw) < _PREFIX.size:
        raise FormatError(f"{path}: {size} bytes is too short to be a fastnn model file (truncated?)")
    magic, version, _, hlen = _PREFIX.unpack(raw)
    if magic != MAGIC:
        raise FormatError(f"{path}: not a fastnn model file (wrong magic bytes {magic!r})")
    if version != VERSION:
        raise FormatError(f"{path}: format version {version}; this fastnn reads version {VERSION}")
    if hlen > min(_MAX_HEADER, size - _PREFIX.size):
        raise FormatError(f"{path}: the header claims {hlen} bytes but the file has {size}; the file "
                          "is truncated or corrupt")
    try:
        header = json.loads(f.read(hlen).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"{path}: the header is not valid JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != "fastnn":
        raise FormatError(f"{path}: the header is not a fastnn header")
    return header


def _int(v, what, path, low=0):
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise FormatError(f"{path}: {what} must be an int >= {low}, got {v!r}")
    return v


def _tensor_table(header, path: str, data_start: int, size: int) -> dict:
    table = header.get("tensors")
    if not isinstance(table, list):
        raise FormatError(f"{path}: the header has no tensor table")
    out, spans = {}, []
    for t in table:
        if not isinstance(t, dict) or not isinstance(t.get("name"), str):
            raise FormatError(f"{path}: a tensor entry has no name")
        name = t["name"]
        if name in out:
            raise FormatError(f"{path}: tensor {name!r} appears twice")
        name_of_dtype = t.get("dtype")
        dt = _DTYPES.get(name_of_dtype) if isinstance(name_of_dtype, str) else None
        if dt is None:
            raise FormatError(f"{path}: tensor {name!r} has dtype {t.get('dtype')!r}; expected one "
                              f"of {list(_DTYPES)}")
        shape = t.get("shape")
        if not isinstance(shape, list) or len(shape) > 8:
            raise FormatError(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
        shape = tuple(_int(s, f"a dimension of {name!r}", path) for s in shape)
        if any(d > 1 << 40 for d in shape):
            raise FormatError(f"{path}: tensor {name!r} has a dimension beyond 2^40 in shape {shape}")
        nbytes = dt.itemsize
        for s in shape:
            nbytes *= s  # Python ints: no overflow
        if _int(t.get("nbytes"), f"nbytes of {name!r}", path) != nbytes:
            raise FormatError(f"{path}: tensor {name!r} of shape {shape} needs {nbytes} bytes, the "
                              f"header says {t.get('nbytes')}")
        offset = _int(t.get("offset"), f"offset of {name!r}", path)
        end = data_start + offset + nbytes
        if end > size:
            raise FormatError(f"{path}: tensor {name!r} ends at byte {end} but the file has {size} "
                              "bytes; the file is truncated")
        out[name] = {"dtype": dt, "shape": shape, "offset": offset, "nbytes": nbytes,
                     "crc32": _int(t.get("crc32"), f"crc32 of {name!r}", path)}
        spans.append((offset, offset + nbytes, name))
    # every tensor has bytes of its own: a table listing one range many times would make a
    # small file allocate many times its size
    spans.sort()
    for (_, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
        if b0 < a1 and b1 > b0:
            raise FormatError(f"{path}: tensors {an!r} and {bn!r} share bytes of the file; each tensor must have "
                              "its own")
    return out


def _read_tensor(f, data_start: int, name: str, t: dict, path: str) -> np.ndarray:
    arr = np.empty(t["shape"], t["dtype"])
    if not t["nbytes"]:
        return arr
    f.seek(data_start + t["offset"])
    if f.readinto(raw_bytes(arr)) != t["nbytes"]:
        raise FormatError(f"{path}: tensor {name!r} could not be read in full (truncated file)")
    if zlib.crc32(raw_bytes(arr)) != t["crc32"]:
        raise FormatError(f"{path}: tensor {name!r} fails its CRC-32 check; the file is corrupt")
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _param_shapes(kind: object, config: object, prefix: str, path: str) -> dict:
    """The parameter shapes a layer config implies, computed without building the layer."""
    if not isinstance(kind, str):
        raise FormatError(f"{path}: layer {prefix or 0!r} has a type that is not a name: {kind!r}")
    if not isinstance(config, dict):
        raise FormatError(f"{path}: the config of layer {prefix or kind!r} is not a dict")
    if kind == "Sequential":
        layers = config.get("layers")
        if not isinstance(layers, list):
            raise FormatError(f"{path}: a Sequential config without a layer list")
        shapes = {}
        for i, spec in enumerate(layers):
            if not isinstance(spec, dict):
                raise FormatError(f"{path}: layer {prefix}{i} is not described by a dict")
            shapes.update(_param_shapes(spec.get("type"), spec.get("config", {}), f"{prefix}{i}.", path))
        return shapes
    if kind not in LAYERS:
        raise FormatError(f"{path}: unknown layer type {kind!r}; this fastnn knows {sorted(LAYERS)}")
    if kind == "Linear":
        i = _int(config.get("in_features"), "in_features", path, 1)
        o = _int(config.get("out_features"), "out_features", path, 1)
        shapes = {prefix + "weight": (o, i)}
        if config.get("bias", True):
            shapes[prefix + "bias"] = (o,)
        return shapes
    if kind == "Conv2d":
        i = _int(config.get("in_channels"), "in_channels", path, 1)
        o = _int(config.get("out_channels"), "out_channels", path, 1)
        g = _int(config.get("groups", 1), "groups", path, 1)
        k = config.get("kernel_size")
        kh, kw = (k, k) if isinstance(k, int) else (k if isinstance(k, list) and len(k) == 2 else (None, None))
        kh, kw = _int(kh, "kernel_size", path, 1), _int(kw, "kernel_size", path, 1)
        if i % g:
            raise FormatError(f"{path}: Conv2d in_channels {i} is not divisible by groups {g}")
        shapes = {prefix + "weight": (o, i // g, kh, kw)}
        if config.get("bias", True):
            shapes[prefix + "bias"] = (o,)
        return shapes
    if kind in ("BatchNorm1d", "BatchNorm2d"):
        c = _int(config.get("num_features"), "num_features", path, 1)
        return {prefix + "weight": (c,), prefix + "bias": (c,), prefix + "running_mean": (c,),
                prefix + "running_var": (c,), prefix + "num_batches_tracked": ()}
    if kind == "Residual":
        shapes = {}
        for part in ("block", "shortcut"):
            spec = config.get(part)
            if spec is None and part == "shortcut":
                continue
            if not isinstance(spec, dict):
                raise FormatError(f"{path}: the {part} of layer {prefix or 0!r} is not described by a dict")
            shapes.update(_param_shapes(spec.get("type"), spec.get("config", {}), f"{prefix}{part}.", path))
        return shapes
    return {}


def _build(kind: str, config: dict, path: str) -> Layer:
    try:
        return build_layer(kind, config)
    except (TypeError, ValueError) as e:
        raise FormatError(f"{path}: {e}") from None


def load(path, with_optimizer: bool = False):
    """Read a model written by fnn.save. With `with_optimizer=True` returns (model, optimizer),
    the optimizer being None when the file holds no optimizer state.

    Raises FormatError (a ValueError) naming what is wrong with a corrupt, truncated or
    foreign file; nothing from the file is executed.

    Example:
        >>> fnn.save(model, "m.fnn")
        >>> np.array_equal(fnn.load("m.fnn").predict(X), model.predict(X))
        True
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(9)
        f.seek(0)
        if head[:8] != MAGIC and safetensors_file.looks_like(head):
            return _load_safetensors(path, with_optimizer)
        size = os.fstat(f.fileno()).st_size
        header = _read_header(f, size, path)
        data_start = f.tell() + _pad(f.tell())
        table = _tensor_table(header, path, data_start, size)
        spec = header.get("model")
        if not isinstance(spec, dict):
            raise FormatError(f"{path}: the header does not describe a model")
        kind, config = spec.get("type"), spec.get("config", {})
        expected = _param_shapes(kind, config, "", path)
        _check_shapes(expected, {name: t["shape"] for name, t in table.items()}, path)
        arrays = {name: _read_tensor(f, data_start, name, t, path) for name, t in table.items()}
    model = _model(kind, config, expected, arrays, header.get("metadata"), path)
    _set_loss(model, header.get("loss"))
    if not with_optimizer:
        return model
    return model, _load_optimizer(header.get("optimizer"), model, arrays, path)


def _loss_spec(model):
    """The loss the model was last fitted with, for evaluate and predict_proba after loading
    (fastnn's own losses only; None otherwise)."""
    loss = getattr(model, "_last_loss", None)
    if loss is None or LOSSES.get(_LOSS_NAMES.get(type(loss).__name__, "")) is not type(loss):
        return None
    return {"type": type(loss).__name__, "config": _plain(loss.get_config())}


def _set_loss(model, spec) -> None:
    # a damaged or foreign entry only loses the convenience: the model itself is intact
    kind = spec.get("type") if isinstance(spec, dict) else None
    if isinstance(kind, str) and kind in _LOSS_NAMES and isinstance(spec.get("config", {}), dict):
        try:
            model._last_loss = LOSSES[_LOSS_NAMES[kind]](**spec.get("config", {}))
        except (TypeError, ValueError):
            pass


def _check_shapes(expected: dict, found: dict, path: str) -> None:
    """Every tensor the architecture needs is in the file, with the shape it needs."""
    for name, shape in expected.items():
        if name not in found:
            raise FormatError(f"{path}: the architecture needs tensor {name!r}, the file lacks it")
        if found[name] != shape:
            raise FormatError(f"{path}: tensor {name!r} has shape {found[name]}, the architecture needs {shape}")


def _model(kind, config, expected: dict, arrays: dict, meta, path: str) -> Layer:
    """The model the (checked) architecture describes, holding the file's tensors."""
    rng_state = generator().bit_generator.state  # building layers must not move the RNG stream
    try:
        model = _build(kind, config, path)
    finally:
        generator().bit_generator.state = rng_state
    try:
        model.load_state_dict({name: arrays[name] for name in expected})
    except (TypeError, ValueError) as e:  # (a value the model's dtype cannot hold)
        raise FormatError(f"{path}: {e}") from None
    model.metadata = meta if isinstance(meta, dict) else {}
    return model


def read_safetensors(path) -> dict:
    """The tensors of any safetensors file as {name: NumPy array}, e.g. a PyTorch state_dict
    saved with safetensors.torch.save_file, for `model.load_state_dict(...)`. Checked as
    fnn.load checks files (FormatError); nothing is executed.

    Example:
        >>> fnn.save(model, "m.safetensors", format="safetensors")
        >>> sorted(fnn.read_safetensors("m.safetensors"))
        ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    return safetensors_file.read(path, FormatError)[0]


def _load_safetensors(path: str, with_optimizer: bool):
    arrays, meta = safetensors_file.read(path, FormatError)
    if meta.get("format") != "fastnn" or "model" not in meta:
        raise FormatError(f"{path}: a safetensors file without fastnn's architecture in its metadata; build the "
                          "model in code and load its tensors with model.load_state_dict(fnn.read_safetensors(path))")
    try:
        spec, user = json.loads(meta["model"]), json.loads(meta.get("metadata", "{}"))
    except (ValueError, RecursionError) as e:
        raise FormatError(f"{path}: the architecture in the metadata is not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise FormatError(f"{path}: the metadata does not describe a model")
    kind, config = spec.get("type"), spec.get("config", {})
    expected = _param_shapes(kind, config, "", path)
    _check_shapes(expected, {name: a.shape for name, a in arrays.items()}, path)
    for name in expected:
        want = np.int64 if name.endswith("num_batches_tracked") else None
        if (want and arrays[name].dtype != want) or (not want and arrays[name].dtype.kind != "f"):
            raise FormatError(f"{path}: tensor {name!r} has dtype {arrays[name].dtype}")
    model = _model(kind, config, expected, arrays, user, path)
    try:
        _set_loss(model, json.loads(meta.get("loss", "null")))
    except (ValueError, RecursionError):
        pass
    return (model, None) if with_optimizer else model


def _load_optimizer(spec, model, arrays, path):
    if spec is None:
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or spec["type"] not in _OPTIMIZER_TYPES:
        raise FormatError(f"{path}: unknown optimizer {spec.get('type') if isinstance(spec, dict) else spec!r}")
    if not isinstance(spec.get("state") or {}, dict) or not isinstance(spec.get("param_groups"), list):
        raise FormatError(f"{path}: the optimizer's state must be a dict and its param_groups a list")
    params = model.parameters()
    groups = []
    for g in spec["param_groups"]:
        ids = g.get("params") if isinstance(g, dict) else None
        if not isinstance(ids, list) or any(not isinstance(i, int) or not 0 <= i < len(params) for i in ids):
            raise FormatError(f"{path}: an optimizer group refers to parameters that do not exist")
        groups.append({**{k: v for k, v in g.items() if k not in ("params", "initial_lr")},
                       "params": [params[i] for i in ids]})
    cls = _OPTIMIZER_TYPES[spec["type"]]
    try:
        opt = cls(groups)
    except (TypeError, ValueError) as e:
        raise FormatError(f"{path}: invalid optimizer settings: {e}") from None
    state = {}
    for key, entry in (spec.get("state") or {}).items():
        if not isinstance(entry, dict):
            raise FormatError(f"{path}: optimizer state {key!r} is not a dict")
        state[key] = {k: arrays[v[1:]] if isinstance(v, str) and v[1:] in arrays else v
                      for k, v in entry.items()}
    # the file keys state by model parameter index; state_dict() numbers parameters in group order
    sd_groups, sd_state, j = [], {}, 0
    for g in spec["param_groups"]:
        sd_groups.append({**g, "params": list(range(j, j + len(g["params"])))})
        for i in g["params"]:
            if str(i) in state:
                sd_state[j] = state[str(i)]
            j += 1
    sd = {"state": sd_state, "param_groups": sd_groups}
    try:
        opt.load_state_dict(sd)
    except (TypeError, ValueError) as e:
        raise FormatError(f"{path}: invalid optimizer state: {e}") from None
    return opt
