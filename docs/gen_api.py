"""Writes docs/api.md, fastnn's reference, from the docstrings of its public names:

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is not what the code says

Public names: fastnn's __all__, then the modules users import by name (fastnn.data,
fastnn.datasets, fastnn.distributed, fastnn.sklearn). For each: its signature and its
docstring; for a class, its public methods that have docstrings of their own. The tests run
--check, so the reference never drifts from the code.
"""
from __future__ import annotations

import inspect
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

SECTIONS = [
    ("Settings", ["__version__", "build_info", "get_backend", "set_backend", "use_backend", "get_num_threads",
                  "set_num_threads", "manual_seed"]),
    ("Layers", ["Parameter", "Layer", "Linear", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Step",
                "Dropout", "Flatten", "Identity", "Residual", "Conv2d", "MaxPool2d", "AvgPool2d",
                "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d"]),
    ("Models", ["Model", "Sequential"]),
    ("Losses", ["Loss", "MSELoss", "CrossEntropyLoss", "BCEWithLogitsLoss", "BCELoss"]),
    ("Optimizers and schedules", ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "StepLR", "CosineAnnealingLR",
                                  "LinearLR", "ReduceLROnPlateau", "clip_grad_norm_"]),
    ("Callbacks", ["Callback", "EarlyStopping", "ModelCheckpoint", "TerminateOnNaN", "LearningRateScheduler",
                   "History"]),
    ("Files and other libraries", ["save", "load", "read_safetensors", "export_onnx", "FormatError"]),
    ("Checks and the perceptron", ["gradcheck", "GradcheckError", "Perceptron", "ConvergenceWarning"]),
]
MODULES = [("fastnn.data", ["read_idx", "normalize", "batches", "train_test_split"]),
           ("fastnn.datasets", ["load", "load_digits", "load_directory", "cache_dir"]),
           ("fastnn.distributed", ["rank", "size", "is_main", "launched_by_mpi", "broadcast_parameters",
                                   "broadcast_optimizer_state", "broadcast_generator", "average_gradients",
                                   "shard_rows", "owned_shards", "subtrees", "tree_sum"]),
           ("fastnn.sklearn", ["MLPClassifier", "MLPRegressor"])]


def _sig(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def _doc(obj) -> str:
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else "(no docstring)"


def _entry(qual: str, obj) -> list[str]:
    out = []
    if inspect.isclass(obj):
        out += [f"### `{qual}{_sig(obj)}`", "", _doc(obj), ""]
        for name, member in vars(obj).items():
            if name.startswith("_") or not callable(member) or not getattr(member, "__doc__", None):
                continue
            base_doc = next((getattr(b, name).__doc__ for b in obj.__mro__[1:] if hasattr(b, name)), None)
            if member.__doc__ == base_doc:
                continue
            out += [f"- `{name}{_sig(member)}`: " + " ".join(_doc(member).split("\n\n")[0].split()), ""]
    elif callable(obj):
        out += [f"### `{qual}{_sig(obj)}`", "", _doc(obj), ""]
    else:
        out += [f"### `{qual}`", "", f"`{obj!r}`", ""]
    return out


def render() -> str:
    import importlib

    import fastnn
    lines = ["# fastnn API reference", "",
             "Generated from the docstrings by `python docs/gen_api.py`; the tests check it is current.",
             "Import as `import fastnn as fnn`.", ""]
    covered = {n for _, names in SECTIONS for n in names} | {"init", "data", "datasets"}
    missing = [n for n in fastnn.__all__ if n not in covered]
    if missing:
        raise SystemExit(f"docs/gen_api.py: place {missing} in a section")
    for title, names in SECTIONS:
        lines += [f"## {title}", ""]
        for n in names:
            lines += _entry(f"fnn.{n}", getattr(fastnn, n))
    for mod, names in MODULES:
        m = importlib.import_module(mod)
        lines += [f"## `{mod}`", "", " ".join(_doc(m).split("\n\n")[0].split()), ""]
        for n in names:
            lines += _entry(f"{mod}.{n}", getattr(m, n))
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = os.path.join(HERE, "api.md")
    text = render()
    if "--check" in argv:
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
                return 1
        return 0
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
