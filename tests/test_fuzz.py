"""Fuzz tests with a fixed budget: Hypothesis draws kernel arguments (shapes, dtypes, layouts,
values), small random CNNs, mutated model and IDX files, and bad fit/predict calls. The
properties: C++ and the NumPy twin agree or raise the same error; fit (the compiled plan)
trains a CNN to the manual layer-by-layer loop's bits, and predict gives the eval-mode layers'
bits at any batch size and thread count (and, in test_torch_parity.py, a PyTorch twin's
values); a damaged file loads or raises
FormatError; a bad call raises TypeError/ValueError and leaves the model as it was. Never a
crash or a hang.

The budget is FASTNN_FUZZ_EXAMPLES examples per test (default 200, about a second each, the same
examples every run); fuzz/run.py runs these tests with a large budget and fresh random examples.
"""
import gzip
import io
import json
import os
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import fastnn as fnn
from fastnn.backends import cpp, numpy_ref
from harness import CASES, build, call, run_case

EXAMPLES = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 200,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


# ---------------------------------------------------------------- kernels


@st.composite
def kernel_calls(draw):
    """(case, shape, dtype, layout, seed): a harness case on a shape near one of its own (each
    dimension kept, set to 0 or 1, or drawn up to twice its size), at most 60,000 elements."""
    case = draw(st.sampled_from(CASES))
    base = draw(st.sampled_from(case.shapes))
    shape = tuple(draw(st.one_of(st.just(d), st.sampled_from([0, 1]), st.integers(0, max(3, 2 * d))))
                  for d in base)
    assume(int(np.prod(shape, dtype=np.int64)) <= 60_000)
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    layout = draw(st.sampled_from(["contiguous", "strided", "unaligned"]))
    return case, shape, dtype, layout, draw(st.integers(0, 2**16))


@FUZZ
@given(kernel_calls())
def test_fuzzed_kernel_calls_agree_with_the_twin_or_both_refuse(arg):
    case, shape, dtype, layout, seed = arg
    try:
        args, kwargs = build(case, shape, dtype, seed)
    except (ValueError, IndexError):
        assume(False)  # the case cannot make arrays of this shape (a negative output size)
    errors = {}
    for name, ops in (("numpy", numpy_ref), ("cpp", cpp)):
        try:
            call(ops, case, args, kwargs)
        except (TypeError, ValueError) as e:
            errors[name] = type(e)
    if errors:  # a shape the kernel does not take (a window larger than the image, ...)
        assert errors.get("numpy") == errors.get("cpp"), (case.id, shape, errors)
        return
    run_case(case, shape, dtype, noncontig=layout == "strided", misaligned=layout == "unaligned", seed=seed)


# ---------------------------------------------------------------- random CNNs through fit


@st.composite
def small_cnns(draw, dtypes=(np.float32, np.float32, np.float32, np.float64)):
    """Up to four image layers drawn with their arguments (strides,
    padding, dilation, groups, pools with padding, BatchNorm, a residual block, a conv-BN-ReLU-pool
    stage, Dropout, other activations), kept where the image stays at least 1×1, then Flatten and a Linear to 3 classes;
    in one of `dtypes` (float32, or float64 a quarter of the time). Returns (layers, (C, H, W),
    dtype)."""
    fnn.manual_seed(draw(st.integers(0, 2**16)))  # (the weights: an example replays as it ran)
    C, H, W = draw(st.sampled_from([1, 3, 16, 32])), draw(st.integers(2, 14)), draw(st.integers(2, 14))
    dt = draw(st.sampled_from(dtypes))  # (float64: no Winograd)
    layers, ch = [], C
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool", "bn", "relu", "residual", "stage",
                                     "dropout", "activation"]))
        if kind == "stage":  # what image nets stack, for the plan's fused ops: 3 × 3 "same"
            # convolution (channels in 16s: Winograd), BatchNorm or not, ReLU, a 2 × 2 max pool or not
            out = draw(st.sampled_from([16, 32, 48, 64]))
            layer = fnn.Sequential(fnn.Conv2d(ch, out, 3, padding=1, bias=draw(st.booleans()), dtype=dt),
                                   *([fnn.BatchNorm2d(out, dtype=dt)] if draw(st.booleans()) else []), fnn.ReLU(),
                                   *([fnn.MaxPool2d(2)] if draw(st.booleans()) else []))
            ch = out
        elif kind == "conv":
            groups = draw(st.sampled_from([1, ch]))
            out = groups * draw(st.integers(1, 3)) if groups > 1 else draw(st.sampled_from([1, 4, 16, 32]))
            # (3 × 3 half the time: with channels in 16s, the Winograd kernels)
            kernel = draw(st.one_of(st.just((3, 3)), st.tuples(st.integers(1, 4), st.integers(1, 4))))
            if draw(st.booleans()):
                layer = fnn.Conv2d(ch, out, kernel, padding="same", groups=groups, bias=draw(st.booleans()),
                                   dtype=dt)
            else:
                layer = fnn.Conv2d(ch, out, kernel, stride=draw(st.integers(1, 3)), padding=draw(st.integers(0, 2)),
                                   dilation=draw(st.integers(1, 2)), groups=groups, bias=draw(st.booleans()), dtype=dt)
            ch = out
        elif kind in ("maxpool", "avgpool"):
            k = draw(st.integers(1, 3))
            layer = (fnn.MaxPool2d if kind == "maxpool" else fnn.AvgPool2d)(k, draw(st.integers(1, 3)),
                                                                          draw(st.integers(0, k // 2)))
        elif kind == "bn":
            layer = fnn.BatchNorm2d(ch, dtype=dt)
        elif kind == "relu":
            layer = fnn.ReLU()
        elif kind == "dropout":
            layer = fnn.Dropout(draw(st.sampled_from([0.25, 0.5])))
        elif kind == "activation":  # (a max pool after LeakyReLU or GELU runs inside it)
            layer = draw(st.sampled_from([fnn.LeakyReLU(0.1), fnn.GELU(), fnn.Tanh(), fnn.Sigmoid()]))
        else:
            layer = fnn.Residual(fnn.Sequential(fnn.Conv2d(ch, ch, 3, padding=1, dtype=dt),
                                                fnn.BatchNorm2d(ch, dtype=dt), fnn.ReLU()))
        try:
            with fnn.use_backend("numpy"):
                shape = fnn.Sequential(*layers, layer)(np.zeros((1, C, H, W), dt)).shape
        except ValueError:  # (the image got too small for it)
            break
        layers.append(layer)
    assume(layers)
    with fnn.use_backend("numpy"):
        shape = fnn.Sequential(*layers)(np.zeros((1, C, H, W), dt)).shape
    return [*layers, fnn.Flatten(), fnn.Linear(int(np.prod(shape[1:])), 3, dtype=dt)], (C, H, W), dt


def poison_weights(model, rng, poison):
    """Where poison is not None, that value (NaN or ±inf) in a random parameter at a random
    place (fit and predict refuse a non-finite X; a weight can diverge): the kernels pick paths
    by finiteness (the vector input-gradient kernels and the sparse ones need finite weights)."""
    params = [p for p in model.parameters() if p.data.size]
    if poison is not None and params:
        p = params[rng.integers(0, len(params))]
        p.data.reshape(-1)[rng.integers(0, p.data.size)] = poison


POISON = st.sampled_from([None] * 6 + [np.nan, np.inf, -np.inf])


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(net=small_cnns(), batch=st.sampled_from([2, 3, 4, 5, 9, 17]), adam=st.booleans(), seed=st.integers(0, 2**16),
       poison=POISON)
def test_random_cnns_train_by_fit_to_the_manual_loops_bits(net, batch, adam, seed, poison):
    # fit runs the compiled plan (fused ops, chunks of 8 samples summed in order, its own
    # buffers); the manual loop calls the layers one by one: the same weights and BatchNorm
    # buffers after two steps, bit for bit (NaN where NaN); and fit on one thread as on two
    import copy
    layers, (C, H, W), dt = net
    model = fnn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    poison_weights(model, rng, poison)
    twin, single = copy.deepcopy(model), copy.deepcopy(model)
    X = rng.standard_normal((2 * batch, C, H, W)).astype(dt)
    y = rng.integers(0, 3, 2 * batch)

    def opt(m):
        return fnn.Adam(m.parameters(), lr=1e-2) if adam else fnn.SGD(m.parameters(), lr=0.05, momentum=0.9)
    fit = dict(loss=fnn.CrossEntropyLoss(), epochs=1, batch_size=batch, shuffle=False, verbose=0)
    fnn.manual_seed(seed)  # (Dropout's masks: the same draws in each run)
    model.fit(X, y, optimizer=opt(model), **fit)
    threads = fnn.get_num_threads()
    try:
        fnn.set_num_threads(1)
        fnn.manual_seed(seed)
        single.fit(X, y, optimizer=opt(single), **fit)
    finally:
        fnn.set_num_threads(threads)
    fnn.manual_seed(seed)
    o, loss = opt(twin), fnn.CrossEntropyLoss()
    twin.train()
    for s in (0, batch):
        loss(twin(X[s:s + batch]), y[s:s + batch])
        o.zero_grad()
        twin.backward(loss.backward())
        o.step()
    got, want, one = model.state_dict(), twin.state_dict(), single.state_dict()
    for key in want:
        assert np.array_equal(np.asarray(got[key]), np.asarray(want[key]), equal_nan=True), (key, model)
        assert np.array_equal(np.asarray(one[key]), np.asarray(want[key]), equal_nan=True), (key, "1 thread", model)


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(net=small_cnns(), batch=st.sampled_from([1, 2, 3, 7, 9, 17]), trained=st.booleans(),
       seed=st.integers(0, 2**16), poison=POISON)
def test_random_cnns_predict_the_layers_bits_at_any_batch_and_thread_count(net, batch, trained, seed, poison):
    # predict runs the inference plan (Winograd and direct kernels chosen by shape; at batch 1
    # the output channels split across threads, their weight transforms cached per thread);
    # the eval-mode layers run one by one: the same bits, on 1 and 2 threads; and weights
    # changed in place give a copy's bits in the next predict (no stale transform)
    import copy
    layers, (C, H, W), dt = net
    model = fnn.Sequential(*layers)
    rng = np.random.default_rng(seed)
    if trained:  # (BatchNorm's running statistics away from 0 and 1)
        model.fit(rng.standard_normal((8, C, H, W)).astype(dt), rng.integers(0, 3, 8),
                  loss=fnn.CrossEntropyLoss(), optimizer=fnn.Adam(model.parameters(), lr=1e-2), epochs=1,
                  batch_size=4, verbose=0)
    model.eval()
    poison_weights(model, rng, poison)
    X = rng.standard_normal((batch, C, H, W)).astype(dt)
    threads = fnn.get_num_threads()
    try:
        for nt in (1, 2):
            fnn.set_num_threads(nt)
            want = np.asarray(model(X))
            assert np.array_equal(model.predict(X, batch_size=batch), want, equal_nan=True), (nt, model)
            rows = [np.asarray(model(X[i:i + 1])) for i in range(batch)]
            assert all(np.array_equal(model.predict(X[i:i + 1]), rows[i], equal_nan=True) for i in range(batch))
        for p in model.parameters():
            p.data[...] *= 0.5
        fresh = copy.deepcopy(model)  # (its weights elsewhere: nothing cached for them)
        assert np.array_equal(model.predict(X[:1]), fresh.predict(X[:1]), equal_nan=True), model
    finally:
        fnn.set_num_threads(threads)


@settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
@given(seed=st.integers(0, 2**32 - 1))
def test_random_mlps_train_by_fit_to_the_layers_bits(seed):
    # test_plan's random MLPs (activations, Dropout, BatchNorm1d, residual blocks; three losses,
    # every optimizer, any batch size, float32 and float64) from many more seeds
    from test_plan import check_random_model
    check_random_model(seed)


# ---------------------------------------------------------------- model files


def _saved(kind: str) -> bytes:
    """A small trained model's file: fastnn's format with the optimizer, or (kind ending in
    ".safetensors") a safetensors file."""
    fnn.manual_seed(0)
    kind, _, fmt = kind.partition(".")
    if kind == "mlp":
        model = fnn.Sequential(fnn.Linear(6, 5), fnn.ReLU(), fnn.Dropout(0.1), fnn.Linear(5, 3))
        X = np.random.default_rng(0).standard_normal((20, 6)).astype(np.float32)
    else:
        model = fnn.Sequential(fnn.Conv2d(1, 2, 3, padding=1), fnn.BatchNorm2d(2), fnn.ReLU(), fnn.MaxPool2d(2),
                               fnn.Flatten(), fnn.Linear(8, 3))
        X = np.random.default_rng(0).standard_normal((20, 1, 4, 4)).astype(np.float32)
    opt = fnn.Adam(model.parameters(), lr=1e-2)
    model.fit(X, np.arange(20) % 3, optimizer=opt, epochs=1, batch_size=10, verbose=0)
    buf = io.BytesIO()
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"fastnn-fuzz-{os.getpid()}-{kind}.fnn")
    if fmt == "safetensors":
        fnn.save(model, path, metadata={"mean": [0.5]}, format="safetensors")
    else:
        fnn.save(model, path, optimizer=opt, metadata={"mean": [0.5]})
    with open(path, "rb") as f:
        buf.write(f.read())
    os.remove(path)
    return buf.getvalue()


SAVED = {}


def saved(kind):
    if kind not in SAVED:
        SAVED[kind] = _saved(kind)
    return SAVED[kind]


def _load_checked(path, sample_shape):
    """fnn.load either works, giving a model that predicts, or raises FormatError."""
    try:
        model, _ = fnn.load(path, with_optimizer=True)
    except fnn.FormatError:
        return
    try:
        model.predict(np.zeros((2, *sample_shape), np.float32))
    except ValueError:
        pass  # a mutated (but consistent) architecture may want other inputs: a clear error


SAMPLE = {"mlp": (6,), "cnn": (1, 4, 4), "mlp.safetensors": (6,), "cnn.safetensors": (1, 4, 4)}


@FUZZ
@given(kind=st.sampled_from(sorted(SAMPLE)), data=st.data())
def test_byte_mutated_model_files_load_or_raise_format_error(tmp_path, kind, data):
    raw = bytearray(saved(kind))
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        at = data.draw(st.integers(0, max(0, len(raw) - 1)))
        if op == "flip" and raw:
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set" and raw:
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "truncate":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del raw[at:at + data.draw(st.integers(1, 16))]
    path = tmp_path / "m.fnn"
    path.write_bytes(bytes(raw))
    _load_checked(path, SAMPLE[kind])


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True),
              st.text(max_size=8), st.sampled_from(["<f4", "<f8", "<i8", "Linear", "Sequential", "@0.weight"])),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=8)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _mutate(header, data) -> None:
    """One to three nodes of a JSON tree replaced by any JSON value, or dropped."""
    for _ in range(data.draw(st.integers(1, 3))):
        where = data.draw(st.sampled_from(list(_paths(header))[1:]))
        parent = header
        for key in where[:-1]:
            parent = parent[key]
        if data.draw(st.booleans()) or not isinstance(parent, dict):
            parent[where[-1]] = data.draw(json_values)
        else:
            del parent[where[-1]]


@FUZZ
@given(kind=st.sampled_from(["mlp", "cnn"]), data=st.data())
def test_header_mutated_model_files_load_or_raise_format_error(tmp_path, kind, data):
    # Structural changes to the JSON header (any node replaced by any JSON value, or dropped),
    # written back as a well-formed file: what a hostile or buggy writer could produce.
    raw = saved(kind)
    hlen = struct.unpack_from("<Q", raw, 16)[0]
    header = json.loads(raw[24:24 + hlen])
    data_start = 24 + hlen + (-(24 + hlen) % 64)
    _mutate(header, data)
    text = json.dumps(header).encode()
    out = raw[:16] + struct.pack("<Q", len(text)) + text
    out += b"\0" * (-len(out) % 64) + raw[data_start:]
    path = tmp_path / "m.fnn"
    path.write_bytes(out)
    _load_checked(path, SAMPLE[kind])


@FUZZ
@given(kind=st.sampled_from(["mlp.safetensors", "cnn.safetensors"]), data=st.data())
def test_header_mutated_safetensors_files_load_or_raise_format_error(tmp_path, kind, data):
    # The same for safetensors files: the tensor table, the metadata, and the architecture
    # (JSON inside the metadata's "model" string) mutated, then written back well-formed.
    raw = saved(kind)
    n = struct.unpack_from("<Q", raw, 0)[0]
    header = json.loads(raw[8:8 + n])
    meta = header["__metadata__"]
    meta["model"] = json.loads(meta["model"])
    _mutate(header, data)
    meta = header.get("__metadata__")
    if isinstance(meta, dict) and "model" in meta and not isinstance(meta["model"], str):
        meta["model"] = json.dumps(meta["model"])
    text = json.dumps(header).encode()
    path = tmp_path / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    _load_checked(path, SAMPLE[kind])


# ---------------------------------------------------------------- IDX files


def _idx(arr: np.ndarray) -> bytes:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    head = bytes([0, 0, codes[arr.dtype], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.tobytes()


@FUZZ
@given(dtype=st.sampled_from(["u1", "i1", ">i2", ">i4", ">f4", ">f8"]),
       shape=st.lists(st.integers(0, 5), min_size=1, max_size=3), zipped=st.booleans(), data=st.data())
def test_mutated_idx_files_read_or_raise_value_error(tmp_path, dtype, shape, zipped, data):
    arr = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)
    raw = bytearray(gzip.compress(_idx(arr)) if zipped else _idx(arr))
    mutated = data.draw(st.booleans())
    if mutated:
        for _ in range(data.draw(st.integers(1, 3))):
            if not raw:
                break
            at = data.draw(st.integers(0, len(raw) - 1))
            op = data.draw(st.sampled_from(["set", "truncate", "append"]))
            if op == "set":
                raw[at] = data.draw(st.integers(0, 255))
            elif op == "truncate":
                del raw[at:]
            else:
                raw += data.draw(st.binary(min_size=1, max_size=8))
    path = tmp_path / ("x.gz" if zipped else "x.idx")
    path.write_bytes(bytes(raw))
    try:
        got = fnn.data.read_idx(path)
    except ValueError:
        assert mutated  # an intact file always reads
        return
    if not mutated:
        np.testing.assert_array_equal(got, arr)
        assert got.shape == arr.shape


# ---------------------------------------------------------------- bad fit / predict calls


def _weights(model):
    return [v.copy() for v in model.state_dict().values()]


def _full(shape, dt, fill):
    if dt is object:
        return np.full(shape, None)
    with np.errstate(invalid="ignore"):  # NaN into an integer array: whatever NumPy makes of it
        return np.full(shape, fill, dtype=dt)


bad_arrays = st.one_of(
    st.builds(_full,
              st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.sampled_from([np.float32, np.float64, np.int64, np.bool_, np.float16, np.complex64, object]),
              st.sampled_from([0.5, 1.0, np.nan, np.inf, -np.inf])),
    st.lists(st.floats(allow_nan=True), max_size=6),
    st.none(), st.text(max_size=3), st.integers(-3, 3))


@FUZZ
@given(X=bad_arrays, y=bad_arrays, batch=st.sampled_from([None, 0, 1, 2, -1, 2.5, "4"]),
       which=st.sampled_from(["fit", "predict", "evaluate"]))
def test_bad_fit_and_predict_calls_raise_clearly_and_change_nothing(X, y, batch, which):
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(4, 3), fnn.ReLU(), fnn.Linear(3, 2))
    before = _weights(model)
    try:
        if which == "fit":
            kwargs = {} if batch is None else {"batch_size": batch}
            model.fit(X, y, epochs=1, verbose=0, **kwargs)
        elif which == "predict":
            model.predict(X, batch_size=batch if batch != 0 else None)
        else:
            model.evaluate(X, y)
    except (TypeError, ValueError):
        for a, b in zip(_weights(model), before):
            np.testing.assert_array_equal(a, b)
