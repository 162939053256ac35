"""Layers and losses: forward values, float64 finite-difference gradients (fnn.gradcheck, on
both backends), flat parameter buffers, state_dict, and clear errors for misuse."""
import re

import numpy as np
import pytest

import fastnn as fnn
from fastnn.parameter import contiguous_runs


def x_like(shape, seed=0, dtype=np.float64):
    # values away from 0 so ReLU/LeakyReLU/Step are differentiable at every sample point
    x = np.random.default_rng(seed).uniform(0.1, 1.5, shape) * np.random.default_rng(seed + 1).choice([-1, 1], shape)
    return x.astype(dtype)


LAYER_CASES = {
    "Linear": lambda: fnn.Linear(5, 3),
    "Linear-nobias": lambda: fnn.Linear(5, 3, bias=False),
    "ReLU": fnn.ReLU,
    "LeakyReLU": lambda: fnn.LeakyReLU(0.1),
    "Sigmoid": fnn.Sigmoid,
    "Tanh": fnn.Tanh,
    "GELU": fnn.GELU,
    "Softmax": fnn.Softmax,
    "Softmax-dim0": lambda: fnn.Softmax(dim=0),
    "Dropout": lambda: fnn.Dropout(0.3),
    "Flatten": fnn.Flatten,
    "MLP": lambda: fnn.Sequential(fnn.Linear(5, 7), fnn.GELU(), fnn.Dropout(0.2), fnn.Linear(7, 4),
                                  fnn.Tanh(), fnn.Linear(4, 3), fnn.Softmax()),
    "Identity": fnn.Identity,
    "Residual": lambda: fnn.Residual(fnn.Sequential(fnn.Linear(5, 5), fnn.Tanh(), fnn.Linear(5, 5))),
    "Residual-shortcut": lambda: fnn.Residual(fnn.Sequential(fnn.Linear(5, 4), fnn.GELU()), fnn.Linear(5, 4)),
    "Residual-x+x": lambda: fnn.Residual(fnn.Identity()),
    "ResidualMLP": lambda: fnn.Sequential(fnn.Linear(5, 6), fnn.Residual(fnn.Sequential(
        fnn.Linear(6, 6), fnn.Dropout(0.3), fnn.Sigmoid(), fnn.Residual(fnn.Linear(6, 6)))), fnn.Linear(6, 2)),
}


@pytest.mark.parametrize("name", LAYER_CASES)
def test_layer_gradients_match_finite_differences(backend, name):
    fnn.manual_seed(1)
    layer = LAYER_CASES[name]()
    shape = (4, 5, 2) if name == "Flatten" else (4, 5)
    assert fnn.gradcheck(layer, x_like(shape))


LOSS_CASES = {
    "MSELoss": (fnn.MSELoss, lambda s: x_like(s, 7)),
    "MSELoss-sum": (lambda: fnn.MSELoss("sum"), lambda s: x_like(s, 7)),
    "CrossEntropyLoss": (fnn.CrossEntropyLoss, lambda s: np.array([0, 2, 1, 2])),
    "BCEWithLogitsLoss": (fnn.BCEWithLogitsLoss, lambda s: np.random.default_rng(3).random(s)),
}


@pytest.mark.parametrize("name", LOSS_CASES)
def test_loss_gradients_match_finite_differences(backend, name):
    fnn.manual_seed(2)
    make_loss, make_target = LOSS_CASES[name]
    model = fnn.Sequential(fnn.Linear(5, 3), fnn.Tanh())
    assert fnn.gradcheck(model, x_like((4, 5)), make_target((4, 3)), loss=make_loss())


def test_bce_loss_gradient_matches_finite_differences(backend):
    model = fnn.Sequential(fnn.Linear(5, 3), fnn.Sigmoid())
    target = np.random.default_rng(3).random((4, 3))
    assert fnn.gradcheck(model, x_like((4, 5)), target, loss=fnn.BCELoss())


def test_gradcheck_catches_a_wrong_backward(backend):
    class BrokenTanh(fnn.Tanh):
        def backward(self, grad_out):
            return super().backward(grad_out) * 1.001
    fnn.layers.LAYERS["BrokenTanh"] = BrokenTanh
    try:
        with pytest.raises(fnn.GradcheckError, match="by finite differences"):
            fnn.gradcheck(BrokenTanh(), x_like((3, 4)))
    finally:
        del fnn.layers.LAYERS["BrokenTanh"]


def test_gradcheck_does_not_touch_the_original():
    model = fnn.Sequential(fnn.Linear(4, 2))
    before = model.state_dict()
    fnn.gradcheck(model, x_like((3, 4)))
    assert model.dtype == np.float32
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# ------------------------------------------------------------------------- forward values
def test_linear_forward_is_x_wT_plus_b(backend, rng):
    layer = fnn.Linear(6, 4)
    x = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(layer(x), x @ layer.weight.data.T + layer.bias.data, rtol=1e-6, atol=1e-6)
    assert layer(x[0]).shape == (4,)                               # one sample
    assert layer(rng.standard_normal((2, 3, 6))).shape == (2, 3, 4)  # leading dims


def test_linear_default_init_is_pytorchs_uniform(rng):
    fnn.manual_seed(0)
    layer = fnn.Linear(400, 300)
    bound = 1 / np.sqrt(400)
    for a in (layer.weight.data, layer.bias.data):
        assert np.abs(a).max() <= bound and np.abs(a).max() > 0.95 * bound
    assert abs(layer.weight.data.std() - bound / np.sqrt(3)) < 0.01 * bound


@pytest.mark.parametrize("scheme,std", [
    ("xavier_uniform", np.sqrt(2 / 700)), ("xavier_normal", np.sqrt(2 / 700)),
    ("he_uniform", np.sqrt(2 / 400)), ("he_normal", np.sqrt(2 / 400)), ("zeros", 0.0)])
def test_init_schemes_have_the_right_spread(scheme, std):
    fnn.manual_seed(0)
    layer = fnn.Linear(400, 300, init=scheme)
    assert layer.weight.data.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    assert (layer.bias.data == 0).all()


def test_init_is_reproducible_from_manual_seed():
    fnn.manual_seed(5)
    a = fnn.Linear(10, 10).weight.data.copy()
    fnn.manual_seed(5)
    np.testing.assert_array_equal(a, fnn.Linear(10, 10).weight.data)


@pytest.mark.parametrize("layer,ref", [
    (fnn.ReLU(), lambda x: np.maximum(x, 0)),
    (fnn.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    (fnn.Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
    (fnn.Tanh(), np.tanh),
    (fnn.Softmax(), lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
    (fnn.Softmax(dim=0), lambda x: np.exp(x) / np.exp(x).sum(0, keepdims=True)),
    (fnn.Step(0.25), lambda x: (x >= 0.25).astype(float)),
], ids=lambda v: repr(v) if isinstance(v, fnn.Layer) else "")
def test_activation_forward_values(backend, layer, ref):
    x = x_like((6, 5))
    np.testing.assert_allclose(layer(x), ref(x), rtol=1e-12, atol=1e-15)
    assert layer(x.astype(np.float32)).dtype == np.float32


def test_gelu_is_exact_erf_gelu(backend):
    from math import erf, sqrt
    x = np.linspace(-4, 4, 17)
    want = [v * 0.5 * (1 + erf(v / sqrt(2))) for v in x]
    np.testing.assert_allclose(fnn.GELU()(x), want, rtol=1e-14, atol=1e-15)


def test_dropout_is_inverted_and_seeded(backend):
    x = np.ones((200, 500), np.float32)
    fnn.manual_seed(3)
    d = fnn.Dropout(0.3)
    y = d(x)
    assert set(np.unique(y)) == {0.0, np.float32(1 / 0.7)}
    assert abs((y == 0).mean() - 0.3) < 0.01            # drops about p of the values
    assert abs(y.mean() - 1.0) < 0.02                   # expectation kept
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)   # same mask in backward
    fnn.manual_seed(3)
    np.testing.assert_array_equal(fnn.Dropout(0.3)(x), y)           # reproducible
    np.testing.assert_array_equal(d.eval()(x), x)                   # identity in eval


def test_flatten_round_trip():
    f = fnn.Flatten()
    x = x_like((3, 4, 5))
    assert f(x).shape == (3, 20)
    assert f.backward(np.ones((3, 20))).shape == (3, 4, 5)


# ------------------------------------------------------------------------- flat buffers
def test_sequential_puts_all_parameters_in_one_flat_buffer():
    model = fnn.Sequential(fnn.Linear(784, 128), fnn.ReLU(), fnn.Linear(128, 64), fnn.ReLU(),
                           fnn.Linear(64, 10))
    runs = contiguous_runs(model.parameters())
    assert len(runs) == 1 and runs[0].data.size == model.num_parameters() == 109386
    flat = runs[0].data
    model[0].weight.data[0, 0] = 42.0
    assert flat[0] == 42.0                              # parameters are views, not copies
    model[4].bias.grad[...] = 1.0
    model.zero_grad()
    assert not runs[0].grad.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_buffers_start_on_a_cache_line(dtype):
    # The GEMMs write weight gradients in 64-byte vectors; NumPy alone promises 16 bytes.
    for sizes in ((3, 5), (784, 128), (1, 1), (129, 7)):
        model = fnn.Sequential(*[fnn.Linear(i, o, dtype=dtype) for i, o in zip(sizes, sizes[1:])])
        store = model.parameters()[0]._store
        for buf in (store.data, store.grad):
            assert buf.ctypes.data % 64 == 0 and buf.flags.c_contiguous and buf.dtype == dtype
            assert buf.size == model.num_parameters()
        assert not store.grad.any()
    lone = fnn.Parameter(np.ones(3, np.float32))
    assert lone._store.data.ctypes.data % 64 == 0 and lone.data.tolist() == [1.0, 1.0, 1.0]


def test_optimizer_created_before_the_model_is_stopped():
    layer = fnn.Linear(3, 2)
    opt = fnn.SGD(layer.parameters(), lr=0.1)
    fnn.Sequential(layer)                               # moves the parameters
    with pytest.raises(RuntimeError, match="create the optimizer after the model"):
        opt.step()


def test_parameter_assignment_copies_and_checks_shape():
    p = fnn.Parameter(np.zeros((2, 3)))
    view = p.data
    p.data = np.ones((2, 3))
    assert view.sum() == 6
    with pytest.raises(ValueError, match=re.escape("expected shape (2, 3), got (3, 2)")):
        p.data = np.ones((3, 2))


# ------------------------------------------------------------------------- state_dict
def test_state_dict_keys_follow_pytorch():
    model = fnn.Sequential(fnn.Linear(4, 8), fnn.ReLU(), fnn.Dropout(0.1), fnn.Linear(8, 2, bias=False))
    assert list(model.state_dict()) == ["0.weight", "0.bias", "3.weight"]
    assert dict(model.named_parameters())["3.weight"] is model[3].weight


def test_load_state_dict_checks_everything_before_changing_anything():
    model = fnn.Sequential(fnn.Linear(4, 8), fnn.ReLU(), fnn.Linear(8, 2))
    before = model.state_dict()
    bad = dict(before)
    bad["0.weight"] = np.zeros((8, 4))          # fine
    bad["2.weight"] = np.zeros((3, 8))          # wrong shape, comes later
    with pytest.raises(ValueError, match=re.escape("state_dict['2.weight'] has shape (3, 8)")):
        model.load_state_dict(bad)
    missing = {k: v for k, v in before.items() if k != "2.bias"}
    with pytest.raises(KeyError, match="missing keys \\['2.bias'\\]"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match="unexpected keys \\['9.weight'\\]"):
        model.load_state_dict({**before, "9.weight": np.zeros(1)})
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    model.load_state_dict(missing, strict=False)


# ------------------------------------------------------------------------- misuse
def test_wrong_input_width_names_shapes_and_fix():
    model = fnn.Sequential(fnn.Linear(784, 10))
    with pytest.raises(ValueError, match=re.escape("expected input with 784 features, got shape "
                                                   "(32, 28, 28); flatten it first")):
        model(np.zeros((32, 28, 28)))
    with pytest.raises(ValueError, match=re.escape("got shape (32, 100); the last dimension must be 784")):
        model(np.zeros((32, 100)))


def test_backward_before_forward():
    with pytest.raises(RuntimeError, match="before forward"):
        fnn.Linear(2, 2).backward(np.zeros((1, 2)))


def test_backward_with_the_wrong_shape():
    layer = fnn.ReLU()
    layer(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=re.escape("grad_out has shape (3, 2) but the forward output had shape (2, 3)")):
        layer.backward(np.zeros((3, 2)))


def test_step_has_no_backward():
    s = fnn.Step()
    s(np.zeros(3))
    with pytest.raises(RuntimeError, match="Step has no usable gradient"):
        s.backward(np.ones(3))


@pytest.mark.parametrize("make,err,msg", [
    (lambda: fnn.Dropout(1.0), ValueError, "p must be in \\[0, 1\\), got 1.0"),
    (lambda: fnn.Dropout(-0.1), ValueError, "p must be in \\[0, 1\\)"),
    (lambda: fnn.Linear(0, 3), ValueError, "in_features must be >= 1, got 0"),
    (lambda: fnn.Linear(3.5, 3), TypeError, "in_features must be an int"),
    (lambda: fnn.Linear(3, 3, init="magic"), ValueError, "unknown init 'magic'"),
    (lambda: fnn.Linear(3, 3, dtype=np.int32), TypeError, "dtype must be np.float32 or np.float64"),
    (lambda: fnn.Sequential(fnn.Linear(2, 2), "relu"), TypeError, "item 1 is str, not a fastnn layer"),
    (lambda: fnn.Sequential(fnn.Linear(2, 2), fnn.Linear(2, 2, dtype=np.float64)), ValueError, "share one dtype"),
    (lambda: fnn.MSELoss("avg"), ValueError, "reduction must be 'mean' or 'sum'"),
])
def test_invalid_layer_arguments(make, err, msg):
    with pytest.raises(err, match=msg):
        make()


def test_loss_errors():
    with pytest.raises(ValueError, match=re.escape("target.reshape((4, 1))")):
        fnn.MSELoss()(np.zeros((4, 1)), np.zeros(4))
    with pytest.raises(ValueError, match="class indices in \\[0, 3\\), got 3"):
        fnn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(TypeError, match="integer class labels, got 0.5 at index 1"):
        fnn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0.0, 0.5]))  # (whole floats are labels)
    with pytest.raises(TypeError, match="integer class labels for CrossEntropyLoss, got bool"):
        fnn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([True, False]))
    with pytest.raises(RuntimeError, match="before the loss was computed"):
        fnn.MSELoss().backward()


def test_residual_adds_its_paths_and_nests_state_dict_keys_as_pytorch(backend):
    fnn.manual_seed(0)
    block = fnn.Sequential(fnn.Linear(4, 4), fnn.ReLU())
    shortcut = fnn.Linear(4, 4, bias=False)
    model = fnn.Sequential(fnn.Residual(block, shortcut), fnn.Residual(fnn.Identity()))
    assert list(model.state_dict()) == ["0.block.0.weight", "0.block.0.bias", "0.shortcut.weight"]
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_allclose(model.forward(x), 2 * (block.forward(x) + shortcut.forward(x)), rtol=1e-6)
    with pytest.raises(ValueError, match="the block outputs shape \\(3, 2\\) but the shortcut gives \\(3, 4\\)"):
        fnn.Residual(fnn.Linear(4, 2)).forward(x)
    with pytest.raises(TypeError, match="block must be a fastnn layer"):
        fnn.Residual(lambda x: x)
    assert "Residual(\n    block=Sequential(" in repr(model)


def test_reprs_are_helpful():
    model = fnn.Sequential(fnn.Linear(4, 8), fnn.LeakyReLU(0.2), fnn.Dropout(0.1))
    assert repr(model) == ("Sequential(\n  (0): Linear(in_features=4, out_features=8, bias=True)\n"
                           "  (1): LeakyReLU(negative_slope=0.2)\n  (2): Dropout(p=0.1)\n)")
    assert repr(fnn.MSELoss("sum")) == "MSELoss(reduction='sum')"


IMAGE_LAYER_CASES = {  # layer, input shape (N, C, H, W)
    "Conv2d": (lambda: fnn.Conv2d(2, 3, 3, padding=1), (2, 2, 5, 4)),
    "Conv2d-stride-dilation": (lambda: fnn.Conv2d(2, 4, (2, 3), stride=2, dilation=(2, 1), padding=(1, 0)), (2, 2, 7, 6)),
    "Conv2d-groups-nobias": (lambda: fnn.Conv2d(4, 6, 3, groups=2, bias=False, padding="same"), (1, 4, 4, 5)),
    "Conv2d-depthwise": (lambda: fnn.Conv2d(3, 3, 3, groups=3, padding=1), (2, 3, 4, 4)),
    "Conv2d-same-even": (lambda: fnn.Conv2d(2, 2, 2, padding="same"), (2, 2, 3, 4)),
    "MaxPool2d": (lambda: fnn.MaxPool2d(2), (2, 3, 4, 6)),
    "MaxPool2d-stride-pad": (lambda: fnn.MaxPool2d(3, stride=2, padding=1), (2, 2, 5, 5)),
    "AvgPool2d": (lambda: fnn.AvgPool2d((2, 3), stride=1, padding=1), (2, 2, 4, 5)),
    "AdaptiveAvgPool2d": (lambda: fnn.AdaptiveAvgPool2d(1), (2, 3, 4, 5)),
    "BatchNorm2d": (lambda: fnn.BatchNorm2d(3), (4, 3, 3, 2)),
    "BatchNorm2d-eval": (lambda: fnn.BatchNorm2d(3).eval(), (4, 3, 3, 2)),
    "CNN": (lambda: fnn.Sequential(fnn.Conv2d(1, 4, 3, padding=1), fnn.BatchNorm2d(4), fnn.ReLU(), fnn.MaxPool2d(2),
                                   fnn.Residual(fnn.Sequential(fnn.Conv2d(4, 4, 3, padding=1), fnn.BatchNorm2d(4)),
                                                fnn.Conv2d(4, 4, 1)),
                                   fnn.AdaptiveAvgPool2d(1), fnn.Flatten(), fnn.Linear(4, 3)), (3, 1, 6, 6)),
}


@pytest.mark.parametrize("name", IMAGE_LAYER_CASES)
def test_image_layer_gradients_match_finite_differences(backend, name):
    fnn.manual_seed(1)
    make, shape = IMAGE_LAYER_CASES[name]
    layer = make()
    x = x_like(shape)
    if "MaxPool" in name:  # distinct values, so a small perturbation cannot change a window's max
        x = np.random.default_rng(0).permutation(x.size).reshape(shape) / x.size - 0.5
    assert fnn.gradcheck(layer, x)


@pytest.mark.parametrize("name", ["BatchNorm1d", "BatchNorm1d-eval", "BatchNorm1d-sequence"])
def test_batchnorm1d_gradients_match_finite_differences(backend, name):
    fnn.manual_seed(1)
    layer = fnn.BatchNorm1d(3)
    if name.endswith("eval"):
        layer.running_mean[...] = [0.5, -1.0, 2.0]
        layer.running_var[...] = [1.5, 0.25, 4.0]
        layer.eval()
    assert fnn.gradcheck(layer, x_like((5, 3, 4) if name.endswith("sequence") else (5, 3)))


def test_batchnorm_statistics_and_buffers(backend):
    bn = fnn.BatchNorm2d(2, momentum=0.25)
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (8, 2, 5, 5)).astype(np.float32)
    y = bn(x)
    # training: each channel normalized by the batch's mean and (biased) variance
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)
    # running statistics: momentum toward the batch's, the variance unbiased (n/(n−1)), as PyTorch
    n = 8 * 5 * 5
    np.testing.assert_allclose(bn.running_mean, 0.25 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var, 0.75 + 0.25 * x.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    assert list(bn.state_dict()) == ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    # eval: the running statistics, which forward leaves alone
    before = bn.state_dict()
    bn.eval()
    out = bn(x)
    np.testing.assert_allclose(out, (x - bn.running_mean[None, :, None, None])
                               / np.sqrt(bn.running_var[None, :, None, None] + 1e-5), rtol=1e-4, atol=1e-5)
    for k, v in before.items():
        np.testing.assert_array_equal(bn.state_dict()[k], v)
    # buffers are not parameters: optimizers and weight decay never see them
    assert len(bn.parameters()) == 2
    opt = fnn.SGD(fnn.Sequential(bn).parameters(), lr=1.0, weight_decay=0.5)
    opt.step()
    np.testing.assert_array_equal(bn.running_var, before["running_var"])


def test_image_layers_name_bad_shapes_and_the_fix():
    with pytest.raises(ValueError, match=re.escape("Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1)) expected a batch "
                                                   "of images (N, C, H, W), got shape (5, 28, 28); add the channel axis")):
        fnn.Conv2d(1, 8, 3)(np.zeros((5, 28, 28)))
    with pytest.raises(ValueError, match=re.escape("expected 3 input channels, got shape (2, 28, 28, 3); images are "
                                                   "NCHW: move the channels first with x.transpose(0, 3, 1, 2)")):
        fnn.Conv2d(3, 8, 3)(np.zeros((2, 28, 28, 3)))
    with pytest.raises(ValueError, match="needs images of at least 5×5 pixels .* got shape \\(1, 1, 4, 4\\)"):
        fnn.Conv2d(1, 1, 5)(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="needs images of at least 2×2 pixels"):
        fnn.MaxPool2d(2)(np.zeros((1, 1, 1, 3)))
    with pytest.raises(ValueError, match=re.escape("BatchNorm2d(4, eps=1e-05, momentum=0.1) expected images (N, C, H, W) "
                                                   "with C = 4, got shape (2, 3, 5, 5)")):
        fnn.BatchNorm2d(4)(np.zeros((2, 3, 5, 5)))
    with pytest.raises(ValueError, match="needs more than one value per channel in training"):
        fnn.BatchNorm1d(3)(np.zeros((1, 3)))
    for make, msg in [(lambda: fnn.Conv2d(3, 4, 3, groups=2), "must both be divisible by groups"),
                      (lambda: fnn.Conv2d(1, 4, 3, stride=2, padding="same"), "padding='same' needs stride 1"),
                      (lambda: fnn.Conv2d(1, 4, 0), "kernel_size must be >= 1"),
                      (lambda: fnn.MaxPool2d(2, padding=2), "padding \\(2, 2\\) must be at most half"),
                      (lambda: fnn.AdaptiveAvgPool2d(2), "only output_size=1"),
                      (lambda: fnn.BatchNorm2d(4, momentum=2), "momentum must be a number in \\[0, 1\\]")]:
        with pytest.raises(ValueError, match=msg):
            make()
    # fit refuses, before any step, a last batch of one sample through BatchNorm1d
    model = fnn.Sequential(fnn.Linear(4, 3), fnn.BatchNorm1d(3), fnn.Linear(3, 2))
    before = model.state_dict()
    with pytest.raises(ValueError, match="the last batch of 33 samples at batch_size=32 holds 1"):
        model.fit(np.ones((33, 4)), np.zeros(33, np.int64), verbose=0)
    for k, v in before.items():
        np.testing.assert_array_equal(model.state_dict()[k], v)


def test_fit_counts_values_per_channel_for_batchnorms_smallest_batch():
    # A BatchNorm2d of 1×1 images (after a 4×4 convolution of 4×4 images, or global pooling in
    # a residual branch) holds one value per channel per sample, as BatchNorm1d of (N, C): the
    # layer refuses one sample in training, as PyTorch, but fit's plan trained on it silently
    # (the running variance decayed by 0.9 a step)
    X, y = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32), np.array([0, 1, 0])
    for model in (fnn.Sequential(fnn.Conv2d(1, 2, 4), fnn.BatchNorm2d(2), fnn.ReLU(), fnn.Flatten(), fnn.Linear(2, 2)),
                  fnn.Sequential(fnn.Conv2d(1, 2, 3), fnn.Residual(fnn.Sequential(fnn.AdaptiveAvgPool2d(1),
                                                                                  fnn.BatchNorm2d(2)),
                                                                   fnn.AdaptiveAvgPool2d(1)),
                                 fnn.Flatten(), fnn.Linear(2, 2))):
        before = model.state_dict()
        with pytest.raises(ValueError, match="holds 1, and the model needs at least 2 per training batch"):
            model.fit(X, y, batch_size=2, verbose=0)
        for k, v in before.items():
            np.testing.assert_array_equal(model.state_dict()[k], v)
    # more than one value per channel in a sample: batches of one are fine, as in PyTorch
    fnn.Sequential(fnn.Conv2d(1, 2, 3), fnn.BatchNorm2d(2), fnn.Flatten(), fnn.Linear(8, 2)).fit(
        X, y, batch_size=1, verbose=0)
    fnn.Sequential(fnn.BatchNorm1d(1), fnn.Flatten(), fnn.Linear(4, 2)).fit(X[:, :, 0], y, batch_size=1, verbose=0)


def test_conv_layers_shapes_and_pytorch_init():
    fnn.manual_seed(0)
    conv = fnn.Conv2d(4, 8, (3, 5), groups=2)
    assert conv.weight.shape == (8, 2, 3, 5) and conv.bias.shape == (8,)
    bound = 1 / np.sqrt(2 * 3 * 5)  # fan_in = in_channels/groups · kH · kW, as PyTorch's default
    assert np.abs(conv.weight.data).max() <= bound and np.abs(conv.weight.data).max() > 0.9 * bound
    assert conv.output_shape((None, 4, 10, 12)) == (None, 8, 8, 8)
    same = fnn.Conv2d(1, 1, 4, padding="same", dilation=2)
    assert same(np.ones((1, 1, 9, 7))).shape == (1, 1, 9, 7)
    valid = fnn.Conv2d(1, 1, 3, padding="valid")  # PyTorch's other spelling: no padding
    assert valid.padding == (0, 0) and valid(np.ones((1, 1, 5, 6))).shape == (1, 1, 3, 4)
    with pytest.raises(ValueError, match="padding must be an int, a pair, 'valid' or 'same', got 'full'"):
        fnn.Conv2d(1, 1, 3, padding="full")
    assert fnn.MaxPool2d(3, 2, 1).output_shape((None, 8, 28, 28)) == (None, 8, 14, 14)
    assert repr(fnn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
