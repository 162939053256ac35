"""Long local fuzzing runs: the fuzz tests of tests/test_fuzz.py with a large budget and new
random examples each run (CI runs them with 200 fixed examples per test).

    python fuzz/run.py                      # 20,000 examples per target, every target
    python fuzz/run.py --examples 100000 --target kernels --target files

Targets: kernels (C++ against the NumPy twin over drawn shapes, dtypes, layouts and values),
files (byte- and header-mutated model files, fastnn's and safetensors), idx (mutated IDX files), calls (bad fit/predict
calls), cnns (small random CNNs trained by fit against the manual loop, and predicting against
the eval-mode layers, bit for bit; a quarter of the examples each), mlps (test_plan's random
MLPs, losses and optimizers through fit against the layers; a quarter of the examples), torch
(small random CNNs against a PyTorch twin: forward, gradients, running statistics; a quarter). A failure prints the smallest failing example Hypothesis found; it is also kept in
.hypothesis/ and replayed first by the next run. Run it with the package installed (pip
install -e ".[test]"); under the sanitizer build it checks memory safety too (see .ci/run).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = [os.path.join(HERE, "..", "tests", name) for name in ("test_fuzz.py", "test_torch_parity.py")]
TARGETS = {
    "kernels": "test_fuzzed_kernel_calls_agree_with_the_twin_or_both_refuse",
    "files": "files_load_or_raise_format_error",
    "idx": "test_mutated_idx_files_read_or_raise_value_error",
    "calls": "test_bad_fit_and_predict_calls_raise_clearly_and_change_nothing",
    "cnns": "test_random_cnns_train or test_random_cnns_predict",
    "mlps": "test_random_mlps_train_by_fit_to_the_layers_bits",
    "torch": "test_random_cnns_match_pytorch",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=20_000, help="examples per fuzz test")
    ap.add_argument("--target", action="append", choices=sorted(TARGETS), help="default: all")
    args = ap.parse_args(argv)
    chosen = args.target or sorted(TARGETS)
    env = {**os.environ, "FASTNN_FUZZ_EXAMPLES": str(args.examples)}
    cmd = [sys.executable, "-m", "pytest", *TESTS, "-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics",
           "-k", " or ".join(TARGETS[t] for t in chosen)]
    # from a neutral directory: from the repository root `import fastnn` would find the sources
    return subprocess.call(cmd, env=env, cwd=os.path.dirname(TESTS[0]))


if __name__ == "__main__":
    sys.exit(main())
