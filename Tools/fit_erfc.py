#!/usr/bin/env python3
"""Fits the polynomial behind ck_normal_cdf (Sources/CKernels/ck_internal.h).

erfc(z) = t · exp(−z²) · Q(t) with t = 1 / (1 + z/2), z ≥ 0. Q is smooth on t ∈ (0, 1]
(Q(0) = 1/(2√π), Q(1) = 1). exp(−z²) = exp(−x²/2) for z = |x|/√2 is the same exponential the GELU
backward needs for the normal pdf, so the backward evaluates one exp per element instead of two.

Q is fitted by least squares over 4000 Chebyshev nodes in t, weighted for the absolute error of
Φ(x) = ½ t exp(−z²) Q(t) (weight ½ t exp(−z²)), at degree 6: the absolute error of Φ evaluated in
float32 is then at float32's own rounding (~1.2e-7, the same as a degree-10 fit for relative error,
whose GELU forward was 10-25% slower in one-thread in-cache runs), while the relative error in the
far left tail, where Φ is below 1e-9, grows to ~1e-3 of a value that small. PyTorch's vectorized erf (Abramowitz-Stegun
7.1.26) has the same absolute accuracy and a larger tail error.

Prints the float32 coefficients (lowest degree first), the largest absolute error of Φ over
x ∈ [−14, 14] (step 1e-3, float32 evaluation, exp in float64) and the largest relative error for
−6 < x < 0. Needs numpy and mpmath (both come with `pip install torch`).

    python3 Tools/fit_erfc.py
"""
import mpmath as mp
import numpy as np

mp.mp.dps = 30
DEGREE = 6


def q_exact(t):
    t = mp.mpf(t)
    if t == 0:
        return 1 / (2 * mp.sqrt(mp.pi))
    z = 2 * (1 / t - 1)
    return mp.erfc(z) * mp.exp(z * z) / t


nodes = np.cos(np.pi * (np.arange(4000) + 0.5) / 4000) * 0.5 + 0.5
values = np.array([float(q_exact(t)) for t in nodes])
z = 2 * (1 / nodes - 1)
weight = 0.5 * nodes * np.exp(-z * z) + 1e-30
fit = np.polynomial.chebyshev.Chebyshev.fit(nodes, values, DEGREE, domain=[0, 1], w=weight)
coef = fit.convert(kind=np.polynomial.Polynomial, domain=[0, 1], window=[0, 1]).coef.astype(np.float32)

x = np.linspace(-14, 14, 28001).astype(np.float32)
t = (np.float32(1) / (np.float32(1) + np.float32(0.5 * 0.7071067811865476) * np.abs(x))).astype(np.float32)
q = np.full_like(t, coef[-1])
for a in coef[-2::-1]:
    q = (q * t + a).astype(np.float32)
e = np.exp(-0.5 * x.astype(np.float64) ** 2).astype(np.float32)
half = (np.float32(0.5) * t * e * q).astype(np.float32)
phi = np.where(x >= 0, np.float32(1) - half, half).astype(np.float64)
exact = np.array([float(0.5 * mp.erfc(-mp.mpf(float(v)) / mp.sqrt(2))) for v in x])
tail = (x < 0) & (x > -6)
print("coefficients:", ", ".join(f"{float(c):.9e}f" for c in coef))
print(f"max absolute error of Phi: {np.max(np.abs(phi - exact)):.3e}")
print(f"max relative error of Phi for -6 < x < 0: {np.max(np.abs(phi[tail] / exact[tail] - 1)):.3e}")
