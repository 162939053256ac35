"""Every `fastnn` subcommand, run as a subprocess the way a user runs it."""
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import fastnn as fnn


def run(*args, cwd, timeout=300, module=False):
    cmd = [sys.executable, "-m", "fastnn", *args] if module else ["fastnn", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(r, *fragments):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastnn: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    r = run("train", "--epochs", "5", "--out", "model.fnn", "--plot", "curves.png", "--val-split", "0.1",
            "--verbose", "2", "--threads", "1", cwd=d)
    assert r.returncode == 0, r.stderr
    return d, r.stdout


def test_no_command_prints_help(tmp_path):
    r = run(cwd=tmp_path)
    assert r.returncode == 2 and "train" in r.stdout and "predict" in r.stdout


def test_info(tmp_path):
    r = run("info", cwd=tmp_path, module=True)                # python -m fastnn works too
    assert r.returncode == 0 and "simd" in r.stdout and fnn.__version__ in r.stdout


def test_train_with_defaults_reports_test_accuracy(tmp_path):
    r = run("train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Training 64-128-64-10 (relu) on digits" in r.stdout
    acc = float(r.stdout.split("test accuracy: ")[1].split()[0])
    assert acc > 0.95
    assert os.listdir(tmp_path) == []                         # writes nothing unless asked


def test_train_writes_model_and_curves(trained):
    d, out = trained
    assert out.count("val_accuracy") == 5
    assert (d / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    model = fnn.load(d / "model.fnn")
    assert model.metadata["dataset"] == "digits" and model.metadata["input_shape"] == [8, 8]


def test_evaluate_reproduces_the_training_result(trained):
    d, out = trained
    r = run("evaluate", "model.fnn", cwd=d)
    assert r.returncode == 0, r.stderr
    assert out.split("test accuracy: ")[1].split()[0] in r.stdout


def test_predict_from_npy_and_idx(trained):
    d, _ = trained
    (_, _), (Xt, yt) = fnn.datasets.load("digits")
    np.save(d / "one.npy", Xt[0])                            # a single 8×8 image
    np.save(d / "batch.npy", Xt[:30])
    r = run("predict", "model.fnn", "one.npy", cwd=d)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.strip().splitlines()
    assert rows[0].split() == ["sample", "class", "probability", "name"] and len(rows) == 2
    assert int(rows[1].split()[1]) == yt[0]
    r = run("predict", "model.fnn", "batch.npy", "--limit", "5", cwd=d)
    assert len(r.stdout.strip().splitlines()) == 7 and "25 more" in r.stdout
    pixels = np.round(Xt[:4] * 255).astype(np.uint8)        # an IDX file of raw pixels
    (d / "four.idx").write_bytes(b"\0\0\x08\x03" + np.array([4, 8, 8], ">u4").tobytes() + pixels.tobytes())
    r = run("predict", "model.fnn", "four.idx", cwd=d)
    assert r.returncode == 0 and len(r.stdout.strip().splitlines()) == 5


def test_user_mistakes_are_one_line_and_status_2(trained):
    d, _ = trained
    np.save(d / "wide.npy", np.zeros((3, 100), np.float32))
    (d / "bad.idx").write_bytes(b"\0\0\x08\x03" + np.array([1000, 28, 28], ">u4").tobytes() + bytes(50))
    one_line_error(run("predict", "model.fnn", "wide.npy", cwd=d), "100 features per sample", "expects 64")
    one_line_error(run("predict", "model.fnn", "bad.idx", cwd=d), "claims shape (1000, 28, 28)")
    one_line_error(run("predict", "missing.fnn", "wide.npy", cwd=d), "no model file at 'missing.fnn'")
    one_line_error(run("predict", "model.fnn", "missing.npy", cwd=d), "no input file")
    one_line_error(run("evaluate", "wide.npy", cwd=d), "not a fastnn model file")
    one_line_error(run("train", "--epochs", "many", cwd=d), "invalid int value: 'many'")
    one_line_error(run("train", "--optimizer", "lbfgs", cwd=d), "invalid choice: 'lbfgs'")
    one_line_error(run("train", "--lr", "-1", cwd=d), "invalid learning rate lr -1.0")
    one_line_error(run("train", "--dropout", "1.5", cwd=d), "--dropout must be in [0, 1), got 1.5")
    one_line_error(run("train", "--dataset", "nowhere", cwd=d), "unknown dataset 'nowhere'")
    one_line_error(run("train", "--out", "no/such/dir/m.fnn", cwd=d), "the directory does not exist")
    one_line_error(run("demo", "nonsense", cwd=d), "no demo 'nonsense'")


def test_train_on_a_directory_of_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for stem, n in [("train", 200), ("t10k", 50)]:
        labels = rng.integers(0, 3, n).astype(np.uint8)
        images = (labels[:, None, None] * 80 + rng.integers(0, 40, (n, 6, 6))).astype(np.uint8)
        (data / f"{stem}-images-idx3-ubyte").write_bytes(b"\0\0\x08\x03" + np.array([n, 6, 6], ">u4").tobytes() + images.tobytes())
        (data / f"{stem}-labels-idx1-ubyte").write_bytes(b"\0\0\x08\x01" + np.array([n], ">u4").tobytes() + labels.tobytes())
    r = run("train", "--dataset", str(data), "--layers", "36-16-3", "--epochs", "20", "--lr", "0.01", "--verbose", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout.split("test accuracy: ")[1].split()[0]) > 0.9


def test_demo_lists_and_runs(tmp_path):
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0 and "backprop_by_hand" in r.stdout and "xor_mlp" in r.stdout
    r = run("demo", "backprop", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "z1 = 4, a1 = 4, z2 = 0, a2 = 0, y = 5, J = 4.5" in r.stdout
    assert "wa1 = 0.88" in r.stdout
    r = run("demo", "mnist_classifier", "--dataset", "digits", "--epochs", "1", cwd=tmp_path)
    assert r.returncode == 0 and "test accuracy" in r.stdout


def test_ctrl_c_stops_training_and_keeps_the_old_model(tmp_path, trained):
    d, _ = trained
    target = tmp_path / "model.fnn"
    target.write_bytes((d / "model.fnn").read_bytes())
    before = target.read_bytes()
    p = subprocess.Popen(["fastnn", "train", "--epochs", "100000", "--out", "model.fnn", "--verbose", "2"],
                         cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()                               # the "Training ..." header
    assert line.startswith("Training")
    p.stdout.readline()                                      # training is under way
    time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["model.fnn"]     # no temporary file left


def test_bench_prints_every_ratio_the_speed_issue_asks_for():
    # `fastnn bench` is the one comparison script: one run, pinned threads, a ratio per row.
    pytest.importorskip("torch")
    r = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--quick", "--repeats", "1", "--threads", "1"],
                       capture_output=True, text=True, timeout=900, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    rows = [line.split("|")[1:-1] for line in r.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    table = {cells[1].strip(): cells for cells in rows[1:]}
    for what in ("batch 32", "batch 100", "batch 512", "Dropout(0.2), batch 100", "predict, batch 1", "predict, batch 1000",
                 "sgemm 256²", "sgemm 1024²", "X·W1ᵀ", "X·W3ᵀ", "dYᵀ·X 128×100", "sigmoid", "tanh",
                 "relu", "softmax rows of 10,", "softmax rows of 1000"):
        hits = [k for k in table if what in k]
        assert hits, (what, list(table))
        cells = table[hits[0]]
        for col in (6, 7):  # × twin, × torch: numbers, each from this run
            assert float(cells[col].strip().rstrip("×")) > 0, (what, cells)
    for what in ("CNN conv32-conv64-fc128", "CNN + BatchNorm + Dropout(0.25)", "ResNet 3×2 blocks",
                 "CNN predict, batch 1", "CNN predict, batch 1000"):
        hits = [k for k in table if what in k]
        assert hits, (what, list(table))
        assert float(table[hits[0]][7].strip().rstrip("×")) > 0, (what, table[hits[0]])  # × torch


def test_train_a_cnn_then_predict_and_evaluate_it(tmp_path):
    r = run("train", "--model", "cnn", "--batchnorm", "--dropout", "0.25", "--epochs", "3", "--batch-size", "64",
            "--out", "cnn.fnn", "--verbose", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Training the CNN conv 32-64 + BatchNorm on digits" in r.stdout
    assert float(r.stdout.split("test accuracy: ")[1].split()[0]) > 0.9
    model = fnn.load(tmp_path / "cnn.fnn")
    assert isinstance(model[0], fnn.Conv2d) and model.metadata["model"] == "cnn"
    _, (Xt, yt) = fnn.datasets.load("digits")
    np.save(tmp_path / "images.npy", Xt[:4])                   # (N, H, W): the channel axis is added
    np.save(tmp_path / "one.npy", Xt[0])                       # a single image
    r = run("predict", "cnn.fnn", "images.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    predicted = [int(line.split()[1]) for line in r.stdout.splitlines()[1:5]]
    assert sum(p == t for p, t in zip(predicted, yt[:4])) >= 3
    r = run("predict", "cnn.fnn", "one.npy", cwd=tmp_path)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 2, r.stderr
    r = run("evaluate", "cnn.fnn", cwd=tmp_path)
    assert r.returncode == 0 and "digits: test accuracy" in r.stdout, r.stderr


def test_predict_and_evaluate_take_a_cnn_saved_from_python(tmp_path):
    # a CNN built and saved in Python (no `fastnn train` metadata) was fed flattened rows:
    # even (N, 1, 8, 8) images failed ("has samples of shape (64,)"), and evaluate failed too
    fnn.manual_seed(0)
    (X, y), (Xt, yt) = fnn.datasets.load("digits")
    model = fnn.Sequential(fnn.Conv2d(1, 8, 3, padding=1), fnn.ReLU(), fnn.MaxPool2d(2), fnn.Flatten(),
                           fnn.Linear(8 * 4 * 4, 10))
    model.fit((X[:, None] - 0.5) / 0.5, y, epochs=8, verbose=0)   # the CLI's normalisation
    fnn.save(model, tmp_path / "own.fnn")
    want = model.predict((Xt[:5, None] - 0.5) / 0.5).argmax(1)
    raw = (Xt[:5] * 255).round().astype(np.uint8)
    for name, arr in (("nchw.npy", Xt[:5, None]), ("grey.npy", raw), ("one.npy", Xt[0])):
        np.save(tmp_path / name, arr)
        r = run("predict", "own.fnn", name, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = [int(line.split()[1]) for line in r.stdout.splitlines()[1:]]
        assert got == list(want[:len(got)]) and len(got) == (1 if name == "one.npy" else 5), (name, r.stdout)
    r = run("evaluate", "own.fnn", "--dataset", "digits", cwd=tmp_path)
    assert r.returncode == 0 and float(r.stdout.split("test accuracy ")[1].split(",")[0]) > 0.8, r.stderr
    np.save(tmp_path / "nhwc.npy", Xt[:5, :, :, None])
    one_line_error(run("predict", "own.fnn", "nhwc.npy", cwd=tmp_path),
                   "nhwc.npy holds an array of shape (5, 8, 8, 1), but the model takes images (N, 1, H, W)")
    np.save(tmp_path / "small.npy", Xt[:5, None, :7])
    one_line_error(run("predict", "own.fnn", "small.npy", cwd=tmp_path),
                   "small.npy holds an array of shape (5, 1, 7, 8), which the model cannot take")
    np.save(tmp_path / "empty.npy", Xt[:0, None])
    one_line_error(run("predict", "own.fnn", "empty.npy", cwd=tmp_path), "empty.npy: holds no samples")


def test_train_a_resnet_then_predict_with_it(tmp_path):
    # --model resnet was refused by argparse: the ResNet of fastnn bench had no command
    r = run("train", "--model", "resnet", "--epochs", "2", "--batch-size", "64", "--out", "resnet.fnn",
            "--verbose", "0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Training the ResNet of 3×2 residual blocks (16-32-64 channels) on digits" in r.stdout
    assert float(r.stdout.split("test accuracy: ")[1].split()[0]) > 0.9
    model = fnn.load(tmp_path / "resnet.fnn")
    assert model.metadata["model"] == "resnet"
    assert sum(isinstance(layer, fnn.Residual) for layer in model) == 6
    _, (Xt, yt) = fnn.datasets.load("digits")
    np.save(tmp_path / "images.npy", Xt[:8])
    r = run("predict", "resnet.fnn", "images.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    predicted = [int(line.split()[1]) for line in r.stdout.splitlines()[1:9]]
    want = model.predict((Xt[:8, None] - 0.5) / 0.5).argmax(1)   # the CLI's normalisation
    assert predicted == list(want) and sum(p == t for p, t in zip(predicted, yt[:8])) >= 6


@pytest.mark.parametrize("args,msg", [
    (["--model", "cnn", "--layers", "64-10"], "--layers, --hidden and --activation shape an MLP"),
    (["--model", "cnn", "--activation", "tanh"], "--model cnn has its own layers"),
    (["--model", "resnet", "--hidden", "32"], "--model resnet has its own layers"),
    (["--batchnorm"], "--batchnorm applies to --model cnn"),
    (["--model", "resnet", "--batchnorm"], "resnet has BatchNorm after every convolution"),
    (["--model", "resnet", "--dropout", "0.2"], "--dropout applies to --model mlp or cnn; resnet has no Dropout"),
])
def test_cnn_and_resnet_options_that_do_not_apply_are_refused(tmp_path, args, msg):
    one_line_error(run("train", *args, cwd=tmp_path), msg)


# --- what a new user met (each failed before its fix) --------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (["--plot", "curves.txt"], "name a .png, .svg, .pdf or .jpg file"),
    (["--plot", "missing/curves.png"], "--plot 'missing/curves.png': the directory does not exist"),
    (["--val-split", "2"], "--val-split must be in [0, 1), got 2.0"),
    (["--momentum", "0.9"], "--momentum applies to --optimizer sgd or rmsprop; adam has none"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
])
def test_bad_train_options_fail_before_any_work(tmp_path, args, fragment):
    r = run("train", *args, cwd=tmp_path)
    one_line_error(r, fragment)
    assert "Training" not in r.stdout and not list(tmp_path.iterdir())


def test_help_shows_defaults_and_messages_count_right(tmp_path):
    r = run("train", "--help", cwd=tmp_path)
    assert "(default: 10)" in r.stdout and "(default: adam)" in r.stdout
    r = run("train", "--epochs", "1", "--threads", "1", "--verbose", "0", cwd=tmp_path)
    assert r.returncode == 0 and "1 epoch," in r.stdout and "1 thread," in r.stdout, r.stdout
    r = run("bench", "--help", cwd=tmp_path)
    assert "(when installed)," not in r.stdout.split("options:")[0].strip()[-20:]
    assert r.stdout.split("options:")[0].strip().endswith(".")


def test_demo_list_names_each_demo_once_in_whole_sentences(tmp_path):
    r = run("demo", cwd=tmp_path)
    rows = r.stdout.strip().splitlines()[1:]
    names = [row.split()[0] for row in rows]
    assert len(names) == len(set(names)) and "backprop" not in names and "backprop_by_hand" in names
    assert all(row.rstrip().endswith(".") for row in rows), rows
    assert "SEEDS" not in r.stdout
    assert run("demo", "backprop", cwd=tmp_path).returncode == 0  # the short name still runs it


def test_predict_prints_values_or_binary_probabilities_for_one_output_models(tmp_path):
    X = np.random.default_rng(0).random((40, 8, 8)).astype(np.float32)
    flat = X.reshape(40, -1)
    np.save(tmp_path / "x.npy", X[:3])
    for loss, target, header in (("mse", flat[:, 0] * 3, "value"), ("bce_with_logits", (flat[:, 0] > 0.5) * 1.0, "probability")):
        fnn.manual_seed(0)
        m = fnn.Sequential(fnn.Linear(64, 1))
        m.fit((flat - 0.5) / 0.5, target.astype(np.float32), loss=loss, epochs=3, verbose=0)
        fnn.save(m, tmp_path / "m.fnn", metadata={"input_shape": [8, 8]})
        r = run("predict", "m.fnn", "x.npy", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        rows = r.stdout.strip().splitlines()
        assert rows[0].split() == ["sample", header] and len(rows) == 4
        got = np.array([float(row.split()[1]) for row in rows[1:]])
        want = m.predict((flat[:3] - 0.5) / 0.5)[:, 0] if loss == "mse" else m.predict_proba((flat[:3] - 0.5) / 0.5)[:, 0]
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_predict_rejects_a_negative_limit_and_warns_on_inputs_out_of_range(trained):
    d, _ = trained
    (_, _), (Xt, _) = fnn.datasets.load("digits")
    np.save(d / "few.npy", Xt[:3])
    r = run("predict", "model.fnn", "few.npy", "--limit", "-1", cwd=d)
    assert r.returncode == 2 and "must be >= 0" in r.stderr
    np.save(d / "scaled.npy", Xt[:3] * 255)  # floats 0-255: the model knows 0-1
    r = run("predict", "model.fnn", "scaled.npy", cwd=d)
    assert r.returncode == 0 and "warning" in r.stderr and "[0, 255]" in r.stderr, r.stderr


def test_a_loaded_model_remembers_its_loss(tmp_path):
    X = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    m = fnn.Sequential(fnn.Linear(4, 3))
    m.fit(X, np.arange(30) % 3, epochs=1, verbose=0)
    for fmt in ("fastnn", "safetensors"):
        fnn.save(m, tmp_path / f"m.{fmt}", format=fmt)
        back = fnn.load(tmp_path / f"m.{fmt}")
        assert back.evaluate(X, np.arange(30) % 3) == m.evaluate(X, np.arange(30) % 3)
        np.testing.assert_array_equal(back.predict_proba(X), m.predict_proba(X))
