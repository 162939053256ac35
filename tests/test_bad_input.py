"""Bad input gets a TypeError/ValueError naming the problem and the fix, on both backends, and
leaves every output untouched."""
import numpy as np
import pytest

import fastnn as fnn

from fastnn.backends import cpp, numpy_ref

f32 = lambda *s: np.zeros(s, np.float32)  # noqa: E731

# (kernel, args, kwargs, exception, message regex)
BAD = [
    ("gemm", (f32(2, 2).astype(np.int32), f32(2, 2), f32(2, 2)), {}, TypeError, "c must be float32 or float64, got int32"),
    ("gemm", (f32(2, 4)[:, ::2], f32(2, 2), f32(2, 2)), {}, TypeError, "c with shape \\(2, 2\\) must be C-contiguous"),
    ("gemm", ([[0.0]], f32(1, 1), f32(1, 1)), {}, TypeError, "c must be a numpy array it can write into, got list"),
    ("gemm", (f32(2, 3), f32(2, 4), f32(5, 3)), {}, ValueError, "op\\(a\\) is 2x4 and op\\(b\\) is 5x3"),
    ("gemm", (f32(2, 2), f32(2, 3), f32(3, 3)), {}, ValueError, "c has shape \\(2, 2\\) but op\\(a\\)·op\\(b\\) is \\(2, 3\\)"),
    ("gemm", (f32(2, 3), f32(2, 3), f32(3, 3)), {"bias": f32(2)}, ValueError, "bias has shape \\(2,\\) but c has 3 columns"),
    ("gemm", (f32(2, 3), f32(2, 3), f32(3, 3)), {"activation": "swish"}, ValueError, "activation must be one of"),
    ("gemm", (f32(2, 3), f32(2, 3, 1), f32(3, 3)), {}, ValueError, "a must be 2-D, got shape \\(2, 3, 1\\)"),
    ("gemm", (f32(2, 3), None, f32(3, 3)), {}, TypeError, "a must be an array, got None"),
    ("gemm", (f32(2, 3), "abc", f32(3, 3)), {}, TypeError, "a \\(str\\) cannot be converted to float32"),
    ("linear_forward", (f32(32, 128), f32(32, 28, 28), f32(128, 784), f32(128)), {}, ValueError,
     "x must be 2-D \\(N, 784\\), got shape \\(32, 28, 28\\); flatten it first"),
    ("linear_forward", (f32(32, 128), f32(32, 100), f32(128, 784), f32(128)), {}, ValueError,
     "expected input with 784 features, got shape \\(32, 100\\)"),
    ("linear_forward", (f32(32, 128), f32(32, 784), f32(128, 784), f32(10)), {}, ValueError, "bias has shape \\(10,\\); expected \\(128,\\)"),
    ("linear_forward", (f32(32, 10), f32(32, 784), f32(128, 784), None), {}, ValueError, "out has shape \\(32, 10\\); expected \\(32, 128\\)"),
    ("linear_backward", (f32(4, 5), f32(3, 5), f32(3), f32(4, 2), f32(4, 5), f32(3, 5)), {}, ValueError, "dout has shape \\(4, 2\\); expected \\(4, 3\\)"),
    ("linear_backward", (f32(4, 5), f32(3, 5).astype(np.float64), f32(3), f32(4, 3), f32(4, 5), f32(3, 5)), {}, TypeError,
     "dx has dtype float32 but the other outputs are float64"),
    ("linear_backward", (f32(4, 5), f32(5, 3), f32(3), f32(4, 3), f32(4, 5), f32(3, 5)), {}, ValueError, "dweight has shape \\(5, 3\\); expected \\(3, 5\\)"),
    ("relu_forward", (f32(3), f32(4)), {}, ValueError, "out has shape \\(3,\\) but x has shape \\(4,\\)"),
    ("sigmoid_backward", (f32(3), f32(3), f32(2)), {}, ValueError, "dout has shape \\(3,\\) but y has shape \\(2,\\)"),
    ("softmax_forward", (f32(), f32()), {}, ValueError, "x must have at least 1 dimension"),
    ("cross_entropy_forward", (f32(2, 3), f32(2, 3), np.array([0, 3])), {}, ValueError, "targets must be class indices in \\[0, 3\\), got 3 at position 1"),
    ("cross_entropy_forward", (f32(2, 3), f32(2, 3), np.array([0, -1])), {}, ValueError, "got -1 at position 1"),
    ("cross_entropy_forward", (None, f32(2, 3), np.array([0.0, 1.0])), {}, TypeError, "targets must be integer class indices, got float64"),
    ("cross_entropy_forward", (None, f32(2, 3), np.array([0, 1, 2])), {}, ValueError, "targets has shape \\(3,\\) but logits has 2 rows"),
    ("cross_entropy_forward", (None, f32(6), np.array([0])), {}, ValueError, "logits must be 2-D \\(N, classes\\), got shape \\(6,\\)"),
    ("cross_entropy_forward", (None, f32(2, 0), np.array([0, 0])), {}, ValueError, "logits has 0 classes"),
    ("mse_forward", (None, f32(3), f32(4)), {}, ValueError, "pred has shape \\(3,\\) but target has shape \\(4,\\)"),
    ("mse_forward", (None, f32(3), f32(3)), {"reduction": "avg"}, ValueError, "reduction must be 'mean' or 'sum'"),
    ("bce_forward", (None, np.array([0.5, 1.5], np.float32), f32(2)), {}, ValueError, "prob must be probabilities in \\[0, 1\\], got 1.5 at flat index 1"),
    ("bce_forward", (None, np.array([np.nan], np.float32), f32(1)), {}, ValueError, "got nan at flat index 0"),
    ("sgd_step", (f32(4), f32(4), None), {"lr": 0.1, "momentum": 0.9}, ValueError, "momentum != 0 needs a momentum_buf"),
    ("sgd_step", (f32(4), f32(5), None), {"lr": 0.1}, ValueError, "grad has 5 elements \\(shape \\(5,\\)\\) but param has 4"),
    ("sgd_step", (f32(4), f32(4), np.zeros(4)), {"lr": 0.1, "momentum": 0.9}, ValueError, "momentum_buf has dtype float64 and 4 elements but param has float32"),
    ("adam_step", (f32(4), f32(4), f32(4), f32(4), 0), {}, ValueError, "step counts from 1, got 0"),
    ("adam_step", (f32(4), f32(4), f32(3), f32(4), 1), {}, ValueError, "exp_avg has dtype float32 and 3 elements"),
    ("rmsprop_step", (f32(4), f32(4), f32(4), None), {"momentum": 0.5}, ValueError, "momentum > 0 needs a momentum_buf"),
    ("conv2d_forward", (f32(2, 4, 3, 3), f32(2, 3, 5, 5), f32(4, 2, 3, 3), None), {}, ValueError,
     "x has 3 channels and weight has shape \\(4, 2, 3, 3\\) with groups=1"),
    ("conv2d_forward", (f32(1, 1, 1, 1), f32(1, 1, 2, 2), f32(1, 1, 3, 3), None), {}, ValueError,
     "the input's height is 2 \\(2 padded\\), smaller than the kernel's span of 3; use a smaller kernel or more padding"),
    ("conv2d_forward", (f32(2, 4, 3, 3), f32(2, 3, 28), f32(4, 3, 3, 3), None), {}, ValueError,
     "x must be 4-D \\(N, C, H, W\\), got shape \\(2, 3, 28\\)"),
    ("conv2d_forward", (f32(2, 4, 5, 5), f32(2, 3, 5, 5), f32(4, 3, 3, 3), None), {}, ValueError,
     "out has shape \\(2, 4, 5, 5\\); expected \\(2, 4, 3, 3\\)"),
    ("conv2d_forward", (f32(2, 4, 3, 3), f32(2, 3, 5, 5), f32(4, 3, 3, 3), None), {"stride": 0}, ValueError,
     "stride must be >= 1, got \\(0, 0\\)"),
    ("conv2d_forward", (f32(2, 4, 3, 3), f32(2, 3, 5, 5), f32(4, 3, 3, 3), None), {"padding": "same"}, TypeError,
     "padding must be an int, a pair of ints or four ints \\(top, bottom, left, right\\), got 'same'"),
    ("conv2d_backward", (f32(2, 3, 5, 5), f32(4, 3, 3, 3), None, f32(2, 4, 5, 5), f32(2, 3, 5, 5), f32(4, 3, 3, 3)), {},
     ValueError, "dout has shape \\(2, 4, 5, 5\\); expected \\(2, 4, 3, 3\\)"),
    ("maxpool2d_forward", (f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int32), f32(1, 1, 4, 4)), {"kernel_size": 2, "padding": 2},
     ValueError, "padding \\(2, 2\\) must be at most half the kernel size \\(2, 2\\)"),
    ("maxpool2d_forward", (f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), f32(1, 1, 4, 4)), {"kernel_size": 2},
     TypeError, "argmax must be a writeable aligned C-contiguous int32 array, got int64"),
    ("maxpool2d_backward", (f32(1, 1, 4, 4), f32(1, 1, 2, 2), np.array([[[[0, 1], [2, 16]]]], np.int32)), {"kernel_size": 2},
     ValueError, "argmax\\[3\\] = 16 is outside its 4×4 plane"),
    ("avgpool2d_forward", (f32(1, 1, 2, 2), f32(1, 1, 1, 4)), {"kernel_size": 2}, ValueError,
     "the input's height is 1 \\(1 padded\\), smaller than the kernel's span of 2"),
    ("batchnorm_forward", (f32(4, 3), f32(4, 3), f32(3), f32(3), f32(2), f32(3)), {}, ValueError,
     "gamma has shape \\(2,\\); expected \\(3,\\)"),
    ("batchnorm_forward", (f32(4, 3), f32(4, 3), f32(3), f32(3), f32(3), f32(3)), {"eps": 0.0}, ValueError,
     "eps must be > 0"),
    ("batchnorm_stats", (f32(3), f32(3), f32(4)), {}, ValueError, "x must be \\(N, C\\) or \\(N, C, ...\\), got shape \\(4,\\)"),
    ("batchnorm_update", (f32(3), f32(3), f32(3), f32(3), 0), {}, ValueError, "count must be >= 1"),
]


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
@pytest.mark.parametrize("kernel,args,kwargs,exc,match", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_raises_clear_error(ops, kernel, args, kwargs, exc, match):
    snapshot = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with pytest.raises(exc, match=match) as info:
        getattr(ops, kernel)(*args, **kwargs)
    assert str(info.value).startswith(kernel + ":") or kernel in str(info.value)
    for before, after in zip(snapshot, args):
        if isinstance(before, np.ndarray):
            np.testing.assert_array_equal(before, after)  # nothing was written


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_read_only_output_is_rejected(ops):
    out = np.zeros(3, np.float32)
    out.flags.writeable = False
    with pytest.raises(TypeError, match="out is read-only"):
        ops.relu_forward(out, np.ones(3))


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_output_overlapping_an_input_is_rejected(ops):
    buf = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError, match="c shares memory with a"):
        ops.gemm(buf[:2], buf[1:3], np.zeros((4, 4), np.float32))
    x = np.arange(8, dtype=np.float32)
    with pytest.raises(ValueError, match="out shares memory with x"):
        ops.relu_forward(x[1:5], x[0:4])


@pytest.mark.parametrize("ops", [cpp, numpy_ref], ids=["cpp", "numpy"])
def test_outputs_aliasing_any_input_are_rejected(ops):
    # every output against every input it could corrupt: a bias or x read while out is written,
    # x read for dweight while dx is written over it, a gradient aliasing its parameter
    x, w = np.ones((4, 5), np.float32), np.ones((3, 5), np.float32)
    out = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="out shares memory with bias"):
        ops.linear_forward(out, x, w, out[0])
    dw, db, dout = np.zeros((3, 5), np.float32), np.zeros(3, np.float32), np.ones((4, 3), np.float32)
    for args, msg in [((x, dw, db, dout, x, w), "dx shares memory with x"),
                      ((None, dw, dw[0, :3], dout, x, w), "dbias shares memory with dweight"),
                      ((None, dw, db, dout, x, dw), "dweight shares memory with weight")]:
        with pytest.raises(ValueError, match=msg):
            ops.linear_backward(*args)
    p = np.ones(6, np.float32)
    with pytest.raises(ValueError, match="param shares memory with grad"):
        ops.sgd_step(p, p, None, 0.1)
    with pytest.raises(ValueError, match="param shares memory with grad"):
        ops.adam_step(p[:3], p[2:5], np.zeros(3, np.float32), np.zeros(3, np.float32), 1)
    assert (p == 1).all() and (dw == 0).all()


# --- messages that say what the user did (each failed before its fix) ----------------------

def test_saving_onto_a_directory_names_it_and_suggests_a_file(tmp_path):
    m = fnn.Sequential(fnn.Linear(3, 2))
    for path in (tmp_path, str(tmp_path) + "/"):
        with pytest.raises(IsADirectoryError, match=r"it is a directory; give a file name in it, such as .*model\.fnn"):
            fnn.save(m, path)
    assert not list(tmp_path.iterdir())


def test_a_missing_dataset_directory_is_called_that(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such directory 'no/such/dir'"):
        fnn.datasets.load("no/such/dir")


def test_a_non_contiguous_out_is_not_advised_into_a_copy():
    with pytest.raises(TypeError, match="written into it, so a copy would be lost; allocate it with np.empty") as e:
        fnn._core.relu_forward(np.zeros((4, 4), np.float32)[:, ::2], np.zeros((4, 2), np.float32))
    assert "ascontiguousarray" not in str(e.value)


def test_summary_knows_the_shapes_after_a_leading_flatten():
    text = str(fnn.Sequential(fnn.Flatten(), fnn.Linear(4, 2), fnn.ReLU()).summary())
    assert "?" not in text and "(None, 4)" in text and "(None, 2)" in text


def test_messages_name_the_users_x_and_the_call():
    m = fnn.Sequential(fnn.Linear(64, 10))
    X = np.zeros((500, 60), np.float32)
    with pytest.raises(ValueError, match=r"fit: X has shape \(500, 60\).*got shape \(500, 60\)"):
        m.fit(X, np.zeros(500, np.int64), verbose=0)
    with pytest.raises(ValueError, match=r"remove or impute non-finite values before calling predict"):
        m.predict(np.full((2, 64), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"before calling evaluate"):
        m.evaluate(np.full((2, 64), np.nan), np.zeros(2, np.int64), loss="cross_entropy")

    def batches():
        yield np.zeros((2, 64)), np.zeros(2)
    with pytest.raises(TypeError, match="fit: takes arrays, got a generator; collect the batches first"):
        m.fit(batches(), None)
