"""How far from float64 a float32 3×3 convolution lands by the direct sum, by Winograd F(2×2, 3×3)
(what fastnn runs) and by F(4×4, 3×3) (what it does not): the evidence behind that choice.

F(4×4, 3×3) takes 36 multiplies per 4×4 output pixels where F(2×2, 3×3) takes 64, so it would
make a CNN's 3×3 convolutions faster; but its transforms carry coefficients up to 8 (and 1/24),
and in float32 its error is an order of magnitude above the direct sum's, while F(2×2, 3×3)'s
is below it. Everything here is float32 NumPy in the kernels' order: each transformed position
is one chain over the input channels in order (as `conv_wino_avx512`'s GEMMs), and the direct
sum one chain over (c, kh, kw) in order (as the direct kernel); the reference is float64.

    python bench/winograd_error.py [--channels 16 32 64] [--size 14] [--seed 0]
"""
import argparse

import numpy as np

F32 = np.float32
# F(2×2, 3×3) (Lavin and Gray, 2015), as winograd_avx512.cpp: Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A
F2 = dict(m=2, BT=[[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
          G=[[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]],
          AT=[[1, 1, 1, 0], [0, 1, -1, -1]])
# F(4×4, 3×3) with the points 0, ±1, ±2, ∞ (Lavin and Gray's, as oneDNN and NNPACK take it)
F4 = dict(m=4, BT=[[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
          G=[[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
             [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
          AT=[[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])


def direct(x, w):
    """out[o, i, j] = Σ_(c, kh, kw in order) w[o, c, kh, kw] · x[c, i + kh, j + kw], float32 chains."""
    OC, C = w.shape[:2]
    H, W = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((OC, H, W), x.dtype)
    for c in range(C):
        for kh in range(3):
            for kw in range(3):
                out += w[:, c, kh, kw, None, None] * x[None, c, kh:kh + H, kw:kw + W]
    return out


def winograd(x, w, f):
    """The same convolution by Winograd F(m×m, 3×3), every step in float32."""
    m, BT, G, AT = f["m"], np.array(f["BT"], F32), np.array(f["G"], F32), np.array(f["AT"], F32)
    r = m + 2
    OC, C = w.shape[:2]
    H, W = x.shape[1] - 2, x.shape[2] - 2
    TH, TW = -(-H // m), -(-W // m)
    grid = np.zeros((C, TH * m + 2, TW * m + 2), F32)  # the input on a zero grid of whole tiles
    grid[:, :H + 2, :W + 2] = x
    U = (G @ w @ G.T).astype(F32)  # (OC, C, r, r)
    out = np.zeros((OC, TH * m, TW * m), F32)
    for ti in range(TH):
        for tj in range(TW):
            d = grid[:, ti * m:ti * m + r, tj * m:tj * m + r]
            V = (BT @ d @ BT.T).astype(F32)  # (C, r, r)
            M = np.zeros((OC, r, r), F32)
            for c in range(C):  # one chain over the channels in order per position
                M += U[:, c] * V[c]
            out[:, ti * m:ti * m + m, tj * m:tj * m + m] = AT @ M @ AT.T
    return out[:, :H, :W]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--size", type=int, default=14, help="the output's height and width (padding 1)")
    ap.add_argument("--out-channels", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    print(f"max |error| against float64, {a.out_channels} output channels of {a.size}×{a.size}, padding 1, "
          "x ~ N(0, 1), w ~ N(0, 1/(9C)):")
    print(f"{'C':>4} {'direct':>10} {'F(2×2,3×3)':>12} {'F(4×4,3×3)':>12}")
    for C in a.channels:
        x = np.zeros((C, a.size + 2, a.size + 2), F32)
        x[:, 1:-1, 1:-1] = rng.standard_normal((C, a.size, a.size))
        w = (rng.standard_normal((a.out_channels, C, 3, 3)) / np.sqrt(9 * C)).astype(F32)
        want = direct(x.astype(np.float64), w.astype(np.float64))
        errs = [np.abs(got.astype(np.float64) - want).max() for got in (direct(x, w), winograd(x, w, F2),
                                                                        winograd(x, w, F4))]
        print(f"{C:>4} {errs[0]:>10.2e} {errs[1]:>12.2e} {errs[2]:>12.2e}")


if __name__ == "__main__":
    main()
