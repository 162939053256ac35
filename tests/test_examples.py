"""Every script in examples/ runs as a learner would run it and prints the numbers of SEEDS.md."""
import os
import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")


def run(name, *args, tmp_path):
    r = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_every_example_has_a_test():
    tested = {"neuron_and_perceptron.py", "xor_mlp.py", "gradient_descent.py", "backprop_by_hand.py",
              "linear_regression.py", "curve_fitting.py", "mnist_classifier.py",
              "sigmoid_softmax_net.py", "dropout_overfitting.py", "cnn.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_neuron_and_perceptron(tmp_path):
    out = run("neuron_and_perceptron.py", tmp_path=tmp_path)
    assert "θ = 0.7: AND = [0, 0, 0, 1]" in out and "θ = 0.5: OR = [0, 1, 1, 1]" in out
    assert "perceptron on AND: converged" in out and "perceptron on OR: converged" in out
    assert "perceptron on XOR: did NOT converge in 20 epochs" in out
    assert "hand-set weights: XOR = [0, 1, 1, 0]" in out


def test_xor_mlp(tmp_path):
    assert "accuracy: 100%" in run("xor_mlp.py", tmp_path=tmp_path)


def test_gradient_descent(tmp_path):
    out = run("gradient_descent.py", tmp_path=tmp_path)
    assert "η = 0.1: x = 3, 2.6, 2.28, 2.024" in out and "after 100 steps x = 1," in out
    assert "η = 1.0: x = 3, -1, 3, -1, 3, -1, 3; after 6 steps x = 3," in out
    assert "η = 1.1: x = 3, -1.4, 3.88," in out


def test_backprop_by_hand(tmp_path):
    out = run("backprop_by_hand.py", tmp_path=tmp_path)
    assert "z1 = 4, a1 = 4, z2 = 0, a2 = 0, y = 5, J = 4.5" in out
    assert "∂J/∂w11 = 3," in out
    assert ("w11 = 0.97, w21 = 0.94, b11 = 0.97, w12 = 1, w22 = -1, b12 = 1, wa1 = 0.88, wa2 = -1, "
            "b21 = 0.97") in out


def test_linear_regression(tmp_path):
    out = run("linear_regression.py", tmp_path=tmp_path)
    assert "after (x=0, t=1): w = 0.50000, b = 0.60400" in out
    assert "after (x=1, t=2.9): w = 0.51796, b = 0.62196" in out
    assert "w = 1.99" in out and "b = 0.99" in out


def test_curve_fitting(tmp_path):
    out = run("curve_fitting.py", tmp_path=tmp_path)
    assert "decreasing at every step: True" in out
    mse = float(out.split("MLP 1-100-1 on sin(x): mean squared error ")[1].split()[0])
    assert mse < 1e-3


def test_mnist_classifier_on_digits(tmp_path):
    out = run("mnist_classifier.py", "--dataset", "digits", "--epochs", "30", tmp_path=tmp_path)
    assert "Total params: 17,226" in out                      # 64-128-64-10
    acc = float(out.split("test accuracy ")[1].split(",")[0])
    assert acc > 0.9


@pytest.mark.skipif(not os.environ.get("CI") and not FASHION.is_dir(), reason="needs apt-get install dataset-fashion-mnist (.ci/run does it)")
def test_mnist_classifier_on_fashion_mnist_subset(tmp_path):
    out = run("mnist_classifier.py", "--limit", "6000", "--epochs", "2", "--optimizer", "adam", tmp_path=tmp_path)
    assert "Total params: 109,386" in out
    assert float(out.split("test accuracy ")[1].split(",")[0]) > 0.7


def test_sigmoid_softmax_net(tmp_path):
    out = run("sigmoid_softmax_net.py", "--dataset", "digits", "--epochs", "40", tmp_path=tmp_path)
    assert "(784·50 + 50) + (50·100 + 100) + (100·10 + 10) = 45360" in out
    assert float(out.split("test accuracy: ")[1].split()[0]) > 0.85
    assert out.count("probabilities sum to 1.000000") == 3


def test_dropout_overfitting(tmp_path):
    out = run("dropout_overfitting.py", "--dataset", "digits", "--train-size", "300", "--epochs", "40",
              tmp_path=tmp_path)
    gaps = [float(line.split("gap ")[1]) for line in out.splitlines() if "gap " in line]
    assert len(gaps) == 2 and gaps[1] < gaps[0]
    assert "training mode, same input twice, same output: False" in out
    assert "inference (predict), same input twice, same output: True" in out


def test_cnn(tmp_path):
    out = run("cnn.py", tmp_path=tmp_path)
    # the hand-set Sobel filter answers the edge between columns 2 and 3, pooling keeps it
    assert "[[ 0  0  3  3  0 -3]" in out and "[[0 4 0]" in out
    assert "Residual" in out and "(None, 16, 4, 4)" in out and "Total params: 9,818" in out
    acc = float(out.split("test accuracy ")[1].split()[0])
    assert acc > 0.95                                             # digits, 10 epochs, seed 0
    assert "after 230 batches" in out                              # BatchNorm counted every batch
