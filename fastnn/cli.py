"""The `fastnn` command (also `python -m fastnn`): train, evaluate, predict, demo, bench, info.

User mistakes (a missing file, a corrupt IDX, a wrong input width, a bad option) print one
line starting "fastnn: error:" and exit with status 2, without a traceback. Ctrl-C during
training stops cleanly: the model file is written only after training, and atomically.
"""
from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

import numpy as np

import fastnn as fnn
from fastnn import cnn_models
from fastnn import distributed as dist


class UserError(Exception):
    """A mistake in the command line or its files: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        raise UserError(f"{message} (see `{self.prog} --help`)")


ACTIVATIONS = {"relu": fnn.ReLU, "tanh": fnn.Tanh, "sigmoid": fnn.Sigmoid, "gelu": fnn.GELU,
               "leaky_relu": fnn.LeakyReLU}
OPTIMIZERS = {"sgd": fnn.SGD, "adam": fnn.Adam, "adamw": fnn.AdamW, "rmsprop": fnn.RMSprop}


# ------------------------------------------------------------------------------- helpers
def _settings(args) -> None:
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        fnn.set_num_threads(args.threads)
    if getattr(args, "backend", None):
        fnn.set_backend(args.backend)


def _layer_sizes(args, n_in: int, n_out: int) -> list[int]:
    text = args.layers if args.layers else f"{n_in}-{args.hidden.replace(',', '-')}-{n_out}"
    try:
        sizes = [int(s) for s in text.strip("-").split("-") if s]
    except ValueError:
        raise UserError(f"--layers must look like 784-128-64-10, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise UserError(f"--layers needs at least an input and an output size, all >= 1; got {text!r}")
    if sizes[0] != n_in:
        raise UserError(f"--layers starts with {sizes[0]} inputs but the dataset has {n_in} features "
                        f"per image; use {n_in}-...")
    if sizes[-1] < n_out:
        raise UserError(f"--layers ends with {sizes[-1]} outputs but the dataset has {n_out} classes")
    return sizes


def _load_dataset(name):
    try:
        (X, y), (Xt, yt) = fnn.datasets.load(name)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    return (X, y), (Xt, yt)


def _image_input(model) -> tuple[bool, int | None]:
    """(whether the model takes images (N, C, H, W), their channel count if its first layer
    says): a Conv2d, BatchNorm2d, pool or residual block first, inside Sequentials too."""
    layer = model
    while True:
        if isinstance(layer, fnn.Sequential):
            if not layer.layers:
                return False, None
            layer = layer.layers[0]
        elif isinstance(layer, fnn.Residual):
            layer = layer.block
        else:
            break
    if isinstance(layer, fnn.Conv2d):
        return True, layer.in_channels
    if isinstance(layer, fnn.BatchNorm2d):
        return True, layer.num_features
    return isinstance(layer, (fnn.MaxPool2d, fnn.AvgPool2d, fnn.AdaptiveAvgPool2d)), None


def _prepare(X, meta: dict, model=None) -> np.ndarray:
    """Images as the model takes them — rows for an MLP, (N, C, H, W) for a CNN — normalised
    the way the model was trained. A CNN also takes (N, H, W) grey images, one (H, W) image and,
    with several channels, one (C, H, W) image."""
    X = np.asarray(X, dtype=np.float32)
    images, channels = _image_input(model) if model is not None else (False, None)
    if meta.get("model") in ("cnn", "resnet") or images:
        size = [int(d) for d in meta.get("input_shape") or []]
        if X.ndim == 2 and len(size) == 2 and size[0] > 1 and X.shape[1] == size[0] * size[1]:
            X = X.reshape(len(X), *size)  # rows of pixels, as the training images flattened
        if X.ndim == 3 and channels not in (None, 1) and X.shape[0] == channels:
            X = X[None]  # one image (C, H, W)
        elif X.ndim == 3:
            X = X[:, None]  # (N, H, W) -> one grey channel
        elif X.ndim == 2:
            X = X[None, None]  # one grey image (H, W)
    else:
        X = X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(1, -1)
    norm = meta.get("normalize", {"mean": 0.5, "std": 0.5})
    return fnn.data.normalize(X, norm["mean"], norm["std"], scale=1.0)


def _load_model(path):
    if not os.path.isfile(path):
        raise UserError(f"no model file at {path!r}; train one with `fastnn train --out {path}`")
    return fnn.load(path)


def _check_width(model, X, source, shape=None):
    """A clear error where X cannot feed the model's first layer (shape: X's as the user gave it)."""
    first = model.layers[0] if getattr(model, "layers", None) else None
    if isinstance(first, fnn.Linear) and X.shape[1] != first.in_features:
        raise UserError(f"{source} has {X.shape[1]} features per sample but the model expects "
                        f"{first.in_features}")
    images, channels = _image_input(model)
    if images and (X.ndim != 4 or (channels is not None and X.shape[1] != channels)):
        c = "C" if channels is None else channels
        raise UserError(f"{source} holds an array of shape {tuple(X.shape if shape is None else shape)}, but the "
                        f"model takes images (N, {c}, H, W)" + (" or grey ones (N, H, W)" if channels == 1 else ""))


# ------------------------------------------------------------------------------- train
def cmd_train(args) -> int:
    _settings(args)
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UserError("--plot needs matplotlib: pip install 'fastnn-cpu[plot]' (or matplotlib)") from None
    for name in ("epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    # everything is checked before the data is loaded: a bad option never costs a training run
    for opt in ("out", "plot"):
        where = getattr(args, opt)
        if where and not os.path.isdir(os.path.dirname(os.path.abspath(where))):
            raise UserError(f"--{opt} {where!r}: the directory does not exist")
    if args.plot:
        _plot_format(args.plot)
    if not 0.0 <= args.val_split < 1.0:
        raise UserError(f"--val-split must be in [0, 1), got {args.val_split}")
    if not 0.0 <= args.dropout < 1.0:
        raise UserError(f"--dropout must be in [0, 1), got {args.dropout}")
    if args.momentum and args.optimizer not in ("sgd", "rmsprop"):
        raise UserError(f"--momentum applies to --optimizer sgd or rmsprop; {args.optimizer} has none (drop it)")
    if args.model != "mlp" and (args.layers or args.hidden != "128,64" or args.activation != "relu"):
        raise UserError(f"--layers, --hidden and --activation shape an MLP; --model {args.model} has its own "
                        "layers (see `fastnn train --help`)")
    if args.batchnorm and args.model != "cnn":
        raise UserError("--batchnorm applies to --model cnn" +
                        (" (resnet has BatchNorm after every convolution)" if args.model == "resnet" else ""))
    if args.dropout and args.model == "resnet":
        raise UserError("--dropout applies to --model mlp or cnn; resnet has no Dropout layer")
    # Under `mpiexec -n K fastnn train ...` every rank trains its shards of each batch
    # (fastnn/distributed.py) and rank 0 alone prints and saves.
    distributed = dist.launched_by_mpi()
    if distributed and dist.rank() != 0:
        sys.stdout = open(os.devnull, "w")
        args.out = args.plot = None
    (X, y), (Xt, yt) = _load_dataset(args.dataset)
    meta = {"dataset": str(args.dataset), "model": args.model, "input_shape": list(X.shape[1:]),
            "normalize": {"mean": 0.5, "std": 0.5},
            "class_names": fnn.datasets.CLASS_NAMES.get(str(args.dataset), [str(i) for i in range(10)])}
    size = X.shape[1:]
    X, Xt = _prepare(X, meta), _prepare(Xt, meta)
    n_classes = int(max(y.max(), yt.max())) + 1

    fnn.manual_seed(args.seed)
    if args.model != "mlp":
        if len(size) != 2:
            raise UserError(f"--model {args.model} takes images (N, H, W); the dataset's samples have shape "
                            f"{tuple(size)}")
        if args.model == "cnn" and min(size) < 4:
            raise UserError(f"--model cnn needs images of at least 4×4 pixels, the dataset's are {size[0]}×{size[1]}")
        model = cnn_models.build(args.model, tuple(size), n_classes, args.batchnorm, args.dropout)
        description = ("the ResNet of 3×2 residual blocks (16-32-64 channels)" if args.model == "resnet" else
                       f"the CNN conv 32-64{' + BatchNorm' if args.batchnorm else ''}")
    else:
        sizes = _layer_sizes(args, X.shape[1], n_classes)
        layers: list[fnn.Layer] = []
        for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
            layers.append(fnn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(ACTIVATIONS[args.activation]())
                if args.dropout:
                    layers.append(fnn.Dropout(args.dropout))
        model = fnn.Sequential(*layers)
        description = f"{'-'.join(map(str, sizes))} ({args.activation})"
    kw = {"lr": args.lr}
    if args.optimizer in ("sgd", "rmsprop"):
        kw["momentum"] = args.momentum
    if args.weight_decay is not None:
        kw["weight_decay"] = args.weight_decay
    optimizer = OPTIMIZERS[args.optimizer](model.parameters(), **kw)

    print(f"Training {description} on {args.dataset}: {len(X)} training / "
          f"{len(Xt)} test samples; {args.optimizer} lr {args.lr}, {_plural(args.epochs, 'epoch')}, batch "
          f"{args.batch_size}; {_plural(fnn.get_num_threads(), 'thread')}, {fnn.get_backend()} backend"
          + (f", {dist.size()} MPI ranks" if distributed else ""), flush=True)
    try:
        history = model.fit(X, y, loss=fnn.CrossEntropyLoss(), optimizer=optimizer, epochs=args.epochs,
                            batch_size=args.batch_size, validation_split=args.val_split,
                            verbose=args.verbose, distributed=distributed)
    except KeyboardInterrupt:
        print("\ninterrupted: training stopped" + (f"; {args.out} was not written" if args.out else ""),
              file=sys.stderr)
        return 130
    result = model.evaluate(Xt, yt)
    print(f"test accuracy: {result['accuracy']:.4f}  (test loss {result['loss']:.4f})")
    if args.out:
        fnn.save(model, args.out, metadata=meta)
        print(f"saved the model to {args.out}")
    if args.plot:
        _plot(history, args.plot, f"{description} on {args.dataset}")
        print(f"wrote the training curves to {args.plot}")
    return 0


PLOT_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg"}


def _plot_format(path) -> str:
    fmt = PLOT_FORMATS.get(os.path.splitext(str(path))[1].lower())
    if fmt is None:
        raise UserError(f"--plot {path!r}: name a .png, .svg, .pdf or .jpg file (the format follows the extension)")
    return fmt


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _plot(history, path, title) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    h = history.history
    epochs = np.arange(1, len(h["loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for key, ax in (("loss", ax_loss), ("accuracy", ax_acc)):
        ax.plot(epochs, h[key], "o-", label="training")
        if "val_" + key in h:
            ax.plot(epochs, h["val_" + key], "o-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fmt = _plot_format(path)
    fnn.serialization.atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=100))
    plt.close(fig)


# ------------------------------------------------------------------------------- evaluate / predict
def cmd_evaluate(args) -> int:
    _settings(args)
    model = _load_model(args.model)
    meta = model.metadata
    dataset = args.dataset or meta.get("dataset")
    if not dataset:
        raise UserError("pass --dataset (the model file does not say which dataset it was trained on)")
    _, (Xt, yt) = _load_dataset(dataset)
    shape = Xt.shape
    Xt = _prepare(Xt, meta, model)
    _check_width(model, Xt, f"dataset {dataset!r}", shape)
    result = model.evaluate(Xt, yt, loss=fnn.CrossEntropyLoss())
    print(f"{dataset}: test accuracy {result['accuracy']:.4f}, test loss {result['loss']:.4f} "
          f"({len(Xt)} samples)")
    return 0


def _read_input(path) -> np.ndarray:
    if not os.path.isfile(path):
        raise UserError(f"no input file at {path!r}")
    if path.endswith(".npy"):
        try:
            X = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        if X.dtype.kind not in "biuf":
            raise UserError(f"{path}: holds {X.dtype}, not numbers")
    else:
        X = fnn.data.read_idx(path)
    if X.size == 0:
        raise UserError(f"{path}: holds no samples (an array of shape {X.shape})")
    if X.dtype == np.uint8:  # raw pixels, as in IDX files
        X = X.astype(np.float32) / np.float32(255)
    return X


def cmd_predict(args) -> int:
    _settings(args)
    model = _load_model(args.model)
    meta = model.metadata
    X = _read_input(args.input)
    shape = meta.get("input_shape")
    if shape and list(X.shape) == list(shape):
        X = X[None]  # a single image
    finite = X[np.isfinite(X)] if X.dtype.kind == "f" else X[:0]  # (a non-finite value: predict names it)
    if finite.size and (float(finite.min()) < -0.05 or float(finite.max()) > 1.05):
        print(f"fastnn: warning: {args.input} holds values in [{finite.min():.3g}, {finite.max():.3g}]; the model "
              "was trained on pixels as uint8 0-255 or floats 0-1, so its answers may mean nothing", file=sys.stderr)
    shape = X.shape
    X = _prepare(X, meta, model)
    _check_width(model, X, args.input, shape)
    try:
        out = model.predict(X)
    except ValueError as e:  # (images of another size: say how the file was read)
        if not _image_input(model)[0] or not np.isfinite(X).all():
            raise
        read = "" if X.shape == shape else f", read as images {tuple(X.shape)} (N, C, H, W)"
        raise UserError(f"{args.input} holds an array of shape {tuple(shape)}{read}, which the model cannot "
                        f"take: {e}") from None
    shown = out if args.limit is None else out[:args.limit]
    loss = getattr(model, "_last_loss", None)
    if out.ndim == 2 and out.shape[1] == 1:
        # one output: a binary classifier's probability (by the loss it was trained with), else a value
        binary = isinstance(loss, (fnn.BCEWithLogitsLoss, fnn.BCELoss))
        values = model.predict_proba(X[:len(shown)]) if binary else shown
        print("sample  " + ("probability" if binary else "value"))
        for i, v in enumerate(values[:, 0]):
            print(f"{i:6d}  {float(v):.4f}")
    else:
        probs = fnn.Softmax()(shown)
        names = meta.get("class_names") or [str(i) for i in range(probs.shape[1])]
        print("sample  class  probability  name")
        for i, p in enumerate(probs):
            k = int(np.argmax(p))
            print(f"{i:6d}  {k:5d}  {p[k]:11.4f}  {names[k] if k < len(names) else k}")
    if len(shown) < len(out):
        print(f"... {len(out) - len(shown)} more (use --limit to show more)")
    return 0


# ------------------------------------------------------------------------------- demo / info
def demo_dir() -> Path:
    """Where the example scripts are: installed with the package, or examples/ in a checkout."""
    installed = Path(__file__).with_name("demos")
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "examples"


def demos() -> dict[str, Path]:
    found = {p.stem: p for p in sorted(demo_dir().glob("*.py"))}
    for alias, name in DEMO_ALIASES.items():
        if name in found:
            found[alias] = found[name]
    return found


DEMO_ALIASES = {"backprop": "backprop_by_hand"}  # names that also run a demo, not listed twice


def cmd_demo(args) -> int:
    available = demos()
    if not args.name:
        print("demos (fastnn demo NAME [options]):")
        for name, path in available.items():
            if name in DEMO_ALIASES:
                continue
            # the docstring's first paragraph, on one line
            first = path.read_text(encoding="utf-8").split('"""')[1].strip().split("\n\n")[0]
            print(f"  {name:22s} {' '.join(first.split())}")
        return 0
    if args.name not in available:
        raise UserError(f"no demo {args.name!r}; choose one of {', '.join(available)}")
    path = available[args.name]
    saved = sys.argv
    sys.argv = [str(path), *args.args]
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as e:  # a demo's own argparse
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    finally:
        sys.argv = saved
    return 0


def cmd_info(args) -> int:
    for key, value in fnn.build_info().items():
        if isinstance(value, list):
            value = ", ".join(value)
        print(f"{key:15} {value}")
    return 0


# ------------------------------------------------------------------------------- parser
class _Defaults(argparse.HelpFormatter):
    """Help that shows each option's default (when it has one worth showing)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and not any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _nonnegative(text: str) -> int:
    v = int(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastnn", description="Fast neural networks on CPUs: train, evaluate, "
                     "predict, run the demos.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def common(p):
        p.add_argument("--threads", type=int, help="threads for the C++ kernels (default: all this process may use)")
        p.add_argument("--backend", choices=["cpp", "numpy"], help="kernel backend (default: cpp)")

    p = sub.add_parser("train", help="train an MLP or CNN classifier and report its test accuracy",
                       description="Train an MLP (or a CNN) on a dataset (default: the bundled 8x8 digits) "
                       "and print its test accuracy.", formatter_class=_Defaults)
    p.add_argument("--dataset", default="digits",
                   help="digits (bundled), fashion-mnist, mnist, or a directory of IDX files")
    p.add_argument("--model", choices=["mlp", "cnn", "resnet"], default="mlp",
                   help="mlp: Linear layers (--layers or --hidden, --activation); cnn: Conv2d(1,32,3)-ReLU-"
                   "MaxPool(2)-Conv2d(32,64,3)-ReLU-MaxPool(2)-Linear(..,128)-ReLU-Linear; resnet: a 3×3 stem "
                   "of 16 channels, three stages of two residual blocks (16, 32, 64 channels; stages 2 and 3 "
                   "halve the image), BatchNorm throughout, global average pooling, Linear")
    p.add_argument("--batchnorm", action="store_true", help="cnn: BatchNorm2d after each convolution")
    p.add_argument("--layers", help="all layer sizes, e.g. 784-128-64-10 (overrides --hidden)")
    p.add_argument("--hidden", default="128,64", help="hidden layer sizes")
    p.add_argument("--activation", choices=list(ACTIVATIONS), default="relu", help="mlp: hidden activation")
    p.add_argument("--optimizer", choices=list(OPTIMIZERS), default="adam", help="update rule")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--momentum", type=float, default=0.0, help="momentum (sgd and rmsprop only)")
    p.add_argument("--weight-decay", type=float, default=None, help="L2 penalty (default: the optimizer's, 0)")
    p.add_argument("--epochs", type=int, default=10, help="passes over the training data")
    p.add_argument("--batch-size", type=int, default=32, help="samples per step")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="dropout after each hidden layer (cnn: before the last Linear)")
    p.add_argument("--val-split", type=float, default=0.0, help="fraction of training data held out")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and dropout")
    p.add_argument("--out", help="save the trained model to this file")
    p.add_argument("--plot", help="write loss/accuracy curves to this .png/.svg/.pdf/.jpg (needs matplotlib)")
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1, help="0 quiet, 1 bar, 2 line per epoch")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="test accuracy of a saved model")
    p.add_argument("model")
    p.add_argument("--dataset", help="default: the dataset the model was trained on")
    common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="classes and probabilities for inputs in an .npy or IDX file",
                       description="Classes and probabilities (or, for a one-output model, values) for the "
                       "samples in INPUT: images as the model was trained on them, either raw pixels (uint8 "
                       "0-255, as IDX files hold them) or floats in [0, 1]; one sample or a batch.",
                       formatter_class=_Defaults)
    p.add_argument("model")
    p.add_argument("input", help=".npy array or IDX file (one sample or a batch)")
    p.add_argument("--limit", type=_nonnegative, default=20, help="rows to print")
    common(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="run an example of the articles fastnn grew from (no NAME: list them)")
    p.add_argument("name", nargs="?")
    p.add_argument("args", nargs=argparse.REMAINDER, help="options passed to the demo")
    p.set_defaults(func=cmd_demo)

    sub.add_parser("bench", help="time fastnn against its NumPy twin and PyTorch in one run "
                   "(--threads N --repeats N --quick)")  # handled in main(): fastnn/bench.py

    p = sub.add_parser("info", help="show version, compiler, OpenMP, SIMD path and threads")
    p.set_defaults(func=cmd_info)
    return parser


def _error(e) -> None:
    # under mpiexec every rank meets the same error: rank 0 alone reports it
    if not dist.launched_by_mpi() or os.environ.get("OMPI_COMM_WORLD_RANK", os.environ.get("PMI_RANK", "0")) == "0":
        print(f"fastnn: error: {e}", file=sys.stderr)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from fastnn import bench
        return bench.main(argv[1:])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return args.func(args)
    except UserError as e:
        _error(e)
        return 2
    except (ValueError, TypeError, OSError, RuntimeError) as e:  # bad files and values, reported by fastnn
        if os.environ.get("FASTNN_DEBUG"):
            raise  # FASTNN_DEBUG=1 shows the traceback
        _error(e)
        return 2
    except KeyboardInterrupt:
        print("\nfastnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
