"""fnn.save / fnn.load: round trips, resuming training, corrupt and hostile files, atomic writes."""
import json
import os
import struct
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import fastnn as fnn
from fastnn import serialization


def model_and_opt(seed=0):
    fnn.manual_seed(seed)
    model = fnn.Sequential(fnn.Linear(6, 12, init="he_uniform"), fnn.LeakyReLU(0.05), fnn.Dropout(0.1),
                           fnn.Linear(12, 8), fnn.GELU(), fnn.Linear(8, 3, bias=False), fnn.Softmax())
    return model, fnn.AdamW(model.parameters(), lr=3e-3, weight_decay=0.02)


def data(n=64):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 6)).astype(np.float32), rng.integers(0, 3, n)


def test_round_trip_keeps_architecture_and_weights(tmp_path):
    model, _ = model_and_opt()
    fnn.save(model, tmp_path / "m.fnn")
    loaded = fnn.load(tmp_path / "m.fnn")
    assert repr(loaded) == repr(model)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(loaded.state_dict()[k], v)
    X, _ = data()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_residual_models_round_trip(tmp_path):
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Linear(6, 8), fnn.Residual(fnn.Sequential(fnn.Linear(8, 8), fnn.ReLU()),
                                                          fnn.Linear(8, 8, bias=False)),
                           fnn.Residual(fnn.Identity()), fnn.Linear(8, 3))
    fnn.save(model, tmp_path / "m.fnn")
    loaded = fnn.load(tmp_path / "m.fnn")
    assert repr(loaded) == repr(model)
    assert list(loaded.state_dict()) == list(model.state_dict())
    X, _ = data()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


def test_cnn_round_trip_keeps_batchnorm_statistics(tmp_path):
    fnn.manual_seed(0)
    model = fnn.Sequential(fnn.Conv2d(1, 4, 3, padding="same", bias=False), fnn.BatchNorm2d(4), fnn.ReLU(),
                           fnn.MaxPool2d(2), fnn.Conv2d(4, 4, 3, groups=2, dilation=2, padding=(2, 1)), fnn.AvgPool2d(2),
                           fnn.Flatten(), fnn.Linear(4 * 2 * 1, 3), fnn.BatchNorm1d(3))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 1, 8, 10)).astype(np.float32)
    opt = fnn.Adam(model.parameters())
    model.fit(X, rng.integers(0, 3, 20), optimizer=opt, batch_size=10, epochs=2, verbose=0)
    assert int(model[1].num_batches_tracked) == 4
    fnn.save(model, tmp_path / "cnn.fnn", optimizer=opt)
    loaded, lopt = fnn.load(tmp_path / "cnn.fnn", with_optimizer=True)
    assert repr(loaded) == repr(model)
    for k, v in model.state_dict().items():                   # running statistics and counters too
        assert loaded.state_dict()[k].dtype == v.dtype
        np.testing.assert_array_equal(loaded.state_dict()[k], v, err_msg=k)
    model.eval(), loaded.eval()
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert len(lopt.state_dict()["state"]) == len(model.parameters())


def test_float64_models_round_trip(tmp_path):
    model = fnn.Sequential(fnn.Linear(3, 2, dtype=np.float64))
    fnn.save(model, tmp_path / "m.fnn")
    assert fnn.load(tmp_path / "m.fnn").dtype == np.float64


def test_resuming_from_a_checkpoint_equals_training_straight_through(tmp_path):
    X, y = data()
    a, opt_a = model_and_opt()
    a[2].p = 0.0  # no dropout: the two runs must draw nothing random
    b, _ = model_and_opt()
    b[2].p = 0.0
    b.load_state_dict(a.state_dict())
    a.fit(X, y, optimizer=opt_a, epochs=2, shuffle=False, verbose=0)
    fnn.save(a, tmp_path / "ckpt.fnn", optimizer=opt_a)
    a.fit(X, y, optimizer=opt_a, epochs=2, shuffle=False, verbose=0)

    opt_b = fnn.AdamW(b.parameters(), lr=3e-3, weight_decay=0.02)
    b.fit(X, y, optimizer=opt_b, epochs=2, shuffle=False, verbose=0)
    c, opt_c = fnn.load(tmp_path / "ckpt.fnn", with_optimizer=True)
    assert type(opt_c) is fnn.AdamW and opt_c.param_groups[0]["weight_decay"] == 0.02
    c[2].p = 0.0
    c.fit(X, y, optimizer=opt_c, epochs=2, shuffle=False, verbose=0)
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(c.state_dict()[k], v)


def test_without_optimizer_state_with_optimizer_gives_none(tmp_path):
    model, _ = model_and_opt()
    fnn.save(model, tmp_path / "m.fnn")
    assert fnn.load(tmp_path / "m.fnn", with_optimizer=True)[1] is None


def test_loading_does_not_move_the_random_stream(tmp_path):
    model, _ = model_and_opt()
    fnn.save(model, tmp_path / "m.fnn")
    fnn.manual_seed(9)
    fnn.load(tmp_path / "m.fnn")
    a = fnn.random.generator().random()
    fnn.manual_seed(9)
    assert fnn.random.generator().random() == a


# ----------------------------------------------------------------------- hostile files
def rewrite_header(path, edit):
    raw = path.read_bytes()
    magic, version, res, hlen = struct.unpack("<8sIIQ", raw[:24])
    header = json.loads(raw[24:24 + hlen])
    edit(header)
    new = json.dumps(header).encode()
    start = 24 + hlen + (-(24 + hlen) % 64)
    pad = b"\0" * (-(24 + len(new)) % 64)
    path.write_bytes(struct.pack("<8sIIQ", magic, version, res, len(new)) + new + pad + raw[start:])


def flip_data_byte(path, i):
    raw = bytearray(path.read_bytes())
    hlen = struct.unpack("<Q", raw[16:24])[0]
    start = 24 + hlen + (-(24 + hlen) % 64)
    raw[start + i] ^= 1
    path.write_bytes(bytes(raw))


def tensor(name):
    def find(h):
        return next(t for t in h["tensors"] if t["name"] == name)
    return find


@pytest.mark.parametrize("corrupt,msg", [
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes()[:30]), "claims .* bytes but the file has 30"),
    (lambda p: p.write_bytes(b""), "too short"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(60)), "not a fastnn model file"),
    (lambda p: p.write_bytes(p.read_bytes()[:8] + struct.pack("<I", 7) + p.read_bytes()[12:]), "format version 7"),
    (lambda p: p.write_bytes(p.read_bytes()[:16] + struct.pack("<Q", 2 ** 62) + p.read_bytes()[24:]),
     "claims 4611686018427387904 bytes"),
    (lambda p: p.write_bytes(p.read_bytes()[:24] + b"{not json" + p.read_bytes()[33:]), "not valid JSON"),
    (lambda p: flip_data_byte(p, 5), "tensor '0.weight' fails its CRC-32 check"),
    (lambda p: rewrite_header(p, lambda h: tensor("0.weight")(h).update(shape=[10 ** 9, 10 ** 9], nbytes=4 * 10 ** 18)),
     "ends at byte"),
    (lambda p: rewrite_header(p, lambda h: tensor("0.weight")(h).update(nbytes=8)), "needs 288 bytes, the header says 8"),
    (lambda p: rewrite_header(p, lambda h: tensor("0.weight")(h).update(dtype="|O")), "dtype '\\|O'"),
    (lambda p: rewrite_header(p, lambda h: h["model"]["config"]["layers"][0]["config"].update(in_features=10 ** 9)),
     "tensor '0.weight' has shape \\(12, 6\\), the architecture needs \\(12, 1000000000\\)"),
    (lambda p: rewrite_header(p, lambda h: h["model"]["config"]["layers"].append({"type": "os.system", "config": {}})),
     "unknown layer type 'os.system'"),
    (lambda p: rewrite_header(p, lambda h: h["tensors"].remove(tensor("3.bias")(h))),
     "needs tensor '3.bias', the file lacks it"),
    (lambda p: rewrite_header(p, lambda h: h["model"]["config"]["layers"][2]["config"].update(p=2.0)),
     "cannot build layer 2 \\(Dropout\\) from {.p.: 2.0}: Dropout: p must be in"),
    # the same bytes listed for two tensors: each tensor must own its bytes
    (lambda p: rewrite_header(p, lambda h: tensor("3.weight")(h).update(offset=tensor("0.weight")(h)["offset"])),
     "tensors '0.weight' and '3.weight' share bytes of the file|share bytes"),
    # types that are not what the format says: FormatError, not TypeError or AttributeError
    (lambda p: rewrite_header(p, lambda h: h["model"]["config"]["layers"][0].update(type=["Linear"])),
     "has a type that is not a name"),
    (lambda p: rewrite_header(p, lambda h: h["model"]["config"]["layers"][0].update(type={"a": 1})),
     "has a type that is not a name"),
    (lambda p: rewrite_header(p, lambda h: tensor("0.weight")(h).update(dtype=["<f4"])), "has dtype \\['<f4'\\]"),
    (lambda p: rewrite_header(p, lambda h: tensor("0.weight")(h).update(dtype={"x": 1})), "has dtype"),
    (lambda p: rewrite_header(p, lambda h: h["tensors"].append(
        {"name": "huge", "dtype": "<f4", "shape": [2 ** 63, 0], "offset": 0, "nbytes": 0, "crc32": 0})),
     "dimension beyond 2\\^40"),
])
def test_corrupt_files_raise_format_error(tmp_path, corrupt, msg):
    model, _ = model_and_opt()
    path = tmp_path / "m.fnn"
    fnn.save(model, path)
    corrupt(path)
    with pytest.raises(fnn.FormatError, match=msg):
        fnn.load(path)


def test_a_file_repeating_one_byte_range_is_refused_without_allocating(tmp_path):
    # 1,000 tensor entries on the same bytes of a small file: refused before any is allocated
    model = fnn.Sequential(fnn.Linear(256, 256))
    path = tmp_path / "m.fnn"
    fnn.save(model, path)

    def repeat(h):
        w = tensor("0.weight")(h)
        h["tensors"] += [{**w, "name": f"copy{i}"} for i in range(1000)]
    rewrite_header(path, repeat)
    tracemalloc.start()
    with pytest.raises(fnn.FormatError, match="share bytes of the file"):
        fnn.load(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20


def test_optimizer_state_of_the_wrong_type_is_a_format_error(tmp_path):
    model, opt = model_and_opt()
    X, y = data()
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    path = tmp_path / "m.fnn"
    fnn.save(model, path, optimizer=opt)
    rewrite_header(path, lambda h: h["optimizer"].update(state=5))
    with pytest.raises(fnn.FormatError, match="optimizer's state must be a dict"):
        fnn.load(path, with_optimizer=True)


def test_corrupt_optimizer_state(tmp_path):
    model, opt = model_and_opt()
    X, y = data()
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    path = tmp_path / "m.fnn"
    fnn.save(model, path, optimizer=opt)
    rewrite_header(path, lambda h: h["optimizer"]["param_groups"][0].update(lr=-1))
    with pytest.raises(fnn.FormatError, match="invalid learning rate lr -1"):
        fnn.load(path, with_optimizer=True)


def test_no_pickle_anywhere():
    root = os.path.dirname(fnn.__file__)
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                text = open(os.path.join(dirpath, f), encoding="utf-8").read()
                assert "import pickle" not in text and "allow_pickle=True" not in text, f


# ----------------------------------------------------------------------- atomic writes
def test_a_failed_save_leaves_the_old_file_intact(tmp_path, monkeypatch):
    model, _ = model_and_opt(0)
    path = tmp_path / "m.fnn"
    fnn.save(model, path)
    old = path.read_bytes()

    other, _ = model_and_opt(1)
    real_tobytes_calls = []

    def exploding_write(path_, write):
        def half(f):
            f.write(b"partial")
            real_tobytes_calls.append(1)
            raise KeyboardInterrupt  # Ctrl-C mid-save
        return serialization_atomic(path_, half)

    serialization_atomic = serialization.atomic_write
    monkeypatch.setattr(serialization, "atomic_write", exploding_write)
    with pytest.raises(KeyboardInterrupt):
        fnn.save(other, path)
    assert real_tobytes_calls and path.read_bytes() == old
    assert os.listdir(tmp_path) == ["m.fnn"]               # no temporary file left behind


def test_a_killed_process_mid_save_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "m.fnn"
    model, _ = model_and_opt(0)
    fnn.save(model, path)
    old = path.read_bytes()
    script = (
        "import os, fastnn as fnn\n"
        "from fastnn import serialization\n"
        "real = serialization.os.replace\n"
        "serialization.os.replace = lambda *a: os._exit(9)   # die just before the rename\n"
        f"fnn.save(fnn.Sequential(fnn.Linear(6, 99)), {str(path)!r})\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path)
    assert r.returncode == 9
    assert path.read_bytes() == old
    fnn.load(path)
    # the killed save left its temporary file; the next save of the name removes it once it is
    # stale (a young one may be another process's save in progress), and nothing else
    left = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].name.startswith(".m.fnn.fastnn-")
    other = tmp_path / ".notes.txt.tmp"
    other.write_text("not fastnn's")
    fnn.save(model, path)
    assert left[0].exists()
    old_time = time.time() - serialization.STALE_TMP_SECONDS - 10
    for p in (left[0], other):
        os.utime(p, (old_time, old_time))
    fnn.save(model, path)
    assert not left[0].exists() and other.exists()


def test_save_into_a_missing_directory(tmp_path):
    model, _ = model_and_opt()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fnn.save(model, tmp_path / "nope" / "m.fnn")
