#!/usr/bin/env python3
"""Fits the polynomial behind ck_normal_cdf (Sources/CKernels/ck_internal.h).

erfc(z) = t · exp(−z²) · Q(t) with t = 1 / (1 + z/2), z ≥ 0. Q is smooth on t ∈ (0, 1]
(Q(0) = 1/(2√π), Q(1) = 1), so a degree-10 polynomial fits it; exp(−z²) = exp(−x²/2) for
z = |x|/√2 is the same exponential the GELU backward needs for the normal pdf, so the backward
evaluates one exp per element instead of two.

Least squares in relative error over 4000 Chebyshev nodes in t; prints the float32 coefficients
(lowest degree first) and the largest relative error of Q evaluated in float32 Horner form on a
grid of 4001 points. Needs numpy and mpmath (both come with `pip install torch`).

    python3 Tools/fit_erfc.py
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 30
DEGREE = 10


def q_exact(t):
    t = mp.mpf(t)
    if t == 0:
        return 1 / (2 * mp.sqrt(mp.pi))
    z = 2 * (1 / t - 1)
    return mp.erfc(z) * mp.exp(z * z) / t


nodes = np.cos(np.pi * (np.arange(4000) + 0.5) / 4000) * 0.5 + 0.5
values = np.array([float(q_exact(t)) for t in nodes])
fit = np.polynomial.chebyshev.Chebyshev.fit(nodes, values, DEGREE, domain=[0, 1], w=1 / values)
coef = fit.convert(kind=np.polynomial.Polynomial, domain=[0, 1], window=[0, 1]).coef.astype(np.float32)

grid = np.linspace(0, 1, 4001).astype(np.float32)
acc = np.full_like(grid, coef[-1])
for a in coef[-2::-1]:
    acc = (acc * grid + a).astype(np.float32)
exact = np.array([float(q_exact(float(t))) for t in grid])
print("coefficients:", ", ".join(f"{float(c):.9e}f" for c in coef))
print(f"max relative error of Q in float32: {np.max(np.abs(acc / exact - 1)):.3e}")
