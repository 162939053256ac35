"""safetensors files with NumPy alone: `fnn.save(model, path, format="safetensors")`, `fnn.load`
(which recognises them) and `fnn.read_safetensors(path)` for any such file (PyTorch's too).

The format (huggingface/safetensors): an 8-byte little-endian uint64 N, N bytes of UTF-8 JSON

    {"__metadata__": {str: str, ...},
     "<name>": {"dtype": "F32", "shape": [out, in], "data_offsets": [begin, end]}, ...}

then the tensors' bytes (little-endian, C order), offsets counted from the end of the header.
fastnn writes the model's state_dict under PyTorch's names ("0.weight", BatchNorm's buffers
too), packed in state_dict order; __metadata__ holds "format": "fastnn", "fastnn_version", and
"model" (the architecture, as JSON) and "metadata" (the caller's metadata, as JSON). So the
safetensors library reads the file, a PyTorch model of the same architecture takes it with
load_state_dict(strict=True), and fnn.load rebuilds the model from it.

Reading executes nothing and allocates nothing before checking the header length against the
file size, the JSON, and every tensor's dtype, shape, byte count and offsets (inside the data,
no two tensors sharing bytes).
"""
from __future__ import annotations

import json
import os
import struct

import numpy as np

from fastnn.data import raw_bytes

_MAX_HEADER = 100 << 20  # the safetensors library's own limit
_DTYPES: dict[str, np.dtype] = {"F32": np.dtype("<f4"), "F64": np.dtype("<f8"), "I64": np.dtype("<i8"),
                                "I32": np.dtype("<i4"), "F16": np.dtype("<f2")}
_NAMES = {v.str: k for k, v in _DTYPES.items()}


def looks_like(head: bytes) -> bool:
    """True when a file's first 9 bytes start a safetensors file (a length, then '{')."""
    return len(head) >= 9 and head[8:9] == b"{"


def write(f, tensors: list, metadata: dict) -> None:
    """Write `tensors` [(name, array)] and `metadata` {str: str} to the open binary file f."""
    header, offset, arrays = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, arr in tensors:
        arr = np.asarray(arr, order="C")
        dt = arr.dtype.newbyteorder("<")
        if dt.str not in _NAMES:
            raise TypeError(f"save: tensor {name!r} has dtype {arr.dtype}, which fastnn does not write to safetensors")
        arr = arr.astype(dt, copy=False)
        header[name] = {"dtype": _NAMES[dt.str], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
        arrays.append(arr)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as the library writes it
    f.write(struct.pack("<Q", len(raw)))
    f.write(raw)
    for arr in arrays:
        f.write(arr.tobytes())


def read(path, error=ValueError) -> tuple[dict, dict]:
    """(tensors {name: array}, metadata {str: str}) from a safetensors file; `error` is the
    exception class raised for a corrupt or foreign file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
        if len(head) < 8:
            raise error(f"{path}: {size} bytes is too short to be a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n > min(_MAX_HEADER, size - 8):
            raise error(f"{path}: the header claims {n} bytes but the file has {size}; not a safetensors file, "
                        "or truncated")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise error(f"{path}: the safetensors header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise error(f"{path}: the safetensors header is not a JSON object")
        meta = header.pop("__metadata__", None) or {}
        if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
            raise error(f"{path}: __metadata__ must map strings to strings")
        start, data = 8 + n, size - 8 - n
        table, spans = {}, []
        for name, t in header.items():
            if not isinstance(t, dict):
                raise error(f"{path}: tensor {name!r} is not described by an object")
            name_of_dtype = t.get("dtype")
            dt = _DTYPES.get(name_of_dtype) if isinstance(name_of_dtype, str) else None
            if dt is None:
                raise error(f"{path}: tensor {name!r} has dtype {t.get('dtype')!r}; fastnn reads {sorted(_DTYPES)}")
            shape, offs = t.get("shape"), t.get("data_offsets")
            if (not isinstance(shape, list) or len(shape) > 8
                    or not all(type(d) is int and 0 <= d <= 1 << 40 for d in shape)):
                raise error(f"{path}: tensor {name!r} has an invalid shape {shape!r}")
            if (not isinstance(offs, list) or len(offs) != 2 or not all(type(o) is int for o in offs)
                    or not 0 <= offs[0] <= offs[1] <= data):
                raise error(f"{path}: tensor {name!r} has data_offsets {offs!r} outside the {data} bytes of data")
            nbytes = dt.itemsize
            for d in shape:
                nbytes *= d
            if offs[1] - offs[0] != nbytes:
                raise error(f"{path}: tensor {name!r} of shape {tuple(shape)} needs {nbytes} bytes, its offsets "
                            f"span {offs[1] - offs[0]}")
            table[name] = (dt, tuple(int(d) for d in shape), offs[0], nbytes)
            spans.append((offs[0], offs[1], name))
        spans.sort()
        for (_, a1, an), (b0, b1, bn) in zip(spans, spans[1:]):
            if b0 < a1 and b1 > b0:
                raise error(f"{path}: tensors {an!r} and {bn!r} share bytes of the file; each must have its own")
        out = {}
        for name, (dt, shape, off, nbytes) in table.items():
            arr = np.empty(shape, dt)
            if nbytes:
                f.seek(start + off)
                if f.readinto(raw_bytes(arr)) != nbytes:
                    raise error(f"{path}: tensor {name!r} could not be read in full (truncated file)")
            out[name] = arr.astype(dt.newbyteorder("="), copy=False)
    return out, meta
