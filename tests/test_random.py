"""fastnn.random.uniform and its C++ fill (csrc/random.cpp) against NumPy's own PCG64: the
same values bit for bit and the same generator state afterwards, for every count, both
dtypes, with and without a kept 32-bit half, on 1 and 2 threads."""
import numpy as np
import pytest

import fastnn as fnn
from fastnn import _core
from fastnn import random as fr

MASK = (1 << 64) - 1


def core_fill(g, n, dtype):
    """The C++ fill called directly (fr.uniform only calls it for large n)."""
    st = g.bit_generator.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    out = np.full(n, np.nan, dtype)
    hi, lo, has, u32 = _core.pcg64_uniform(out, s >> 64, s & MASK, inc >> 64, inc & MASK,
                                           bool(st["has_uint32"]), st["uinteger"])
    g.bit_generator.state = {"bit_generator": "PCG64", "state": {"state": (hi << 64) | lo, "inc": inc},
                             "has_uint32": int(has), "uinteger": u32}
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("kept", [0, 1])   # a float32 drawn before: a 32-bit half is kept
def test_pcg64_fill_is_numpys_stream(dtype, threads, kept):
    fnn.set_num_threads(threads)
    for seed in (0, 12345):
        for n in (0, 1, 2, 3, 7, 64, 65, 1001, 1 << 15, (1 << 15) + 1, 300_001):
            mine, ref = np.random.default_rng(seed), np.random.default_rng(seed)
            for g in (mine, ref):
                g.random(kept, dtype=np.float32)
            got = core_fill(mine, n, dtype)
            want = ref.random(n, dtype=dtype)
            assert got.dtype == want.dtype
            np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=f"n={n}")
            assert mine.bit_generator.state == ref.bit_generator.state, n
            # and the streams go on together, in either dtype
            np.testing.assert_array_equal(mine.random(3, dtype=np.float32), ref.random(3, dtype=np.float32))
            np.testing.assert_array_equal(mine.random(3), ref.random(3))


def test_uniform_follows_the_fastnn_generator():
    for n in (10, 1 << 16):
        fnn.manual_seed(3)
        a = fr.uniform(n, np.float32)
        after = fr.generator().bit_generator.state
        fnn.manual_seed(3)
        np.testing.assert_array_equal(a, fr.generator().random(n, dtype=np.float32))
        assert fr.generator().bit_generator.state == after
        assert a.min() >= 0 and a.max() < 1
    assert abs(a.mean() - 0.5) < 0.01                     # the large draw (C++) is uniform


def test_pcg64_fill_rejects_bad_output():
    with pytest.raises(ValueError, match="out must be 1-D"):
        _core.pcg64_uniform(np.empty((2, 2), np.float32), 0, 1, 0, 1, False, 0)
    with pytest.raises(TypeError):
        _core.pcg64_uniform(np.empty(4, np.int32), 0, 1, 0, 1, False, 0)


@pytest.mark.parametrize("delta", [0, 1, 7, 1 << 40, 3 << 40, (1 << 64) - 1])
def test_pcg64_jump_is_numpys_advance(delta):
    # its twin is NumPy's own PCG64.advance (which also drops a kept half-output)
    g = np.random.default_rng(5)
    g.random(3, dtype=np.float32)  # leave a kept half
    st = g.bit_generator.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    hi, lo, has, u32 = _core.pcg64_jump(s >> 64, s & (2**64 - 1), inc >> 64, inc & (2**64 - 1), delta)
    g.bit_generator.advance(delta)
    want = g.bit_generator.state
    assert ((hi << 64) | lo, has, u32) == (want["state"]["state"], bool(want["has_uint32"]), want["uinteger"])
