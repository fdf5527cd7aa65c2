"""Writes Tests/ModelsTests/Fixtures/probe_logreg.safetensors (developer-only; CI never runs it).

The probes' logistic regression (Probes.fitLogisticRegression) re-implemented in numpy, in float64,
on a small labeled set whose classes overlap (so the answer depends on every detail: the
standardization, the zero start, the cosine learning rate, AdamW's bias corrections and its decoupled
decay on the weight only, the mean cross-entropy). Two fits, the two ways Tessera's probes call it:

  linear:  the linear probe on 180 training rows (one batch of <= 256, so the shuffled order cannot
           change the result): 2000 steps (Probes.minimumProbeSteps), lr 1e-3, no weight decay;
  fewshot: 7, 4 and 2 rows of the classes (full batch; no class at 1/3, whose bias gradient would
           start at 0), statistics of the whole training set, 300 steps,
           lr 1e-2, weight decay 0.05.

Stored: the data (float32, as Tessera reads it), the subset, each fit's weight, bias, test logits and
test accuracy. As a second, independent check the script also fits scikit-learn's unregularized
LogisticRegression (lbfgs, to convergence) and reports how many test predictions the 2000-step probe
shares with that optimum.

    /work/exp/venv/bin/pip install numpy safetensors scikit-learn
    python3 Tools/make_probe_fixture.py
"""
import math
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelsTests", "Fixtures", "probe_logreg.safetensors")

rng = np.random.default_rng(2026)
classes, dim = 3, 6
centers = rng.normal(0.0, 1.0, (classes, dim))
scale = np.array([0.01, 0.1, 1.0, 10.0, 100.0, 3.0])   # standardization matters
offset = np.array([5.0, -3.0, 0.0, 40.0, -200.0, 1.0])


def draw(n):
    # unbalanced classes (5:3:2): with balanced ones the bias gradient at the zero start is 0 up to
    # rounding, and Adam's first steps (size lr whatever the gradient's) would follow the rounding
    y = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2])[np.arange(n) % 10]
    x = (centers[y] + rng.normal(0.0, 1.0, (n, dim))) * scale + offset
    return x.astype(np.float32), y


train_x, train_y = draw(180)
test_x, test_y = draw(120)
subset = np.concatenate([np.nonzero(train_y == c)[0][:k] for c, k in enumerate([7, 4, 2])])


def statistics(x):
    x = x.astype(np.float64)
    mean = x.mean(0)
    std = np.sqrt(np.maximum((x * x).mean(0) - mean * mean, 0)) + 1e-6
    return mean, std


def fit(x, y, steps, lr, wd, stats):
    mean, std = stats
    z = (x.astype(np.float64) - mean) / std
    n = len(y)
    onehot = np.eye(classes)[y]
    w, b = np.zeros((classes, dim)), np.zeros(classes)
    mw, vw, mb, vb = np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)
    b1, b2, eps = 0.9, 0.999, 1e-8
    for it in range(steps):
        rate = 0.5 * lr * (1 + math.cos(math.pi * it / steps))
        logits = z @ w.T + b
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        d = (p - onehot) / n
        gw, gb = d.T @ z, d.sum(0)
        t = it + 1
        step_size, bc2 = rate / (1 - b1 ** t), math.sqrt(1 - b2 ** t)
        mw = b1 * mw + (1 - b1) * gw
        vw = b2 * vw + (1 - b2) * gw * gw
        mb = b1 * mb + (1 - b1) * gb
        vb = b2 * vb + (1 - b2) * gb * gb
        w = w * (1 - rate * wd) - step_size * mw / (np.sqrt(vw) / bc2 + eps)
        b = b - step_size * mb / (np.sqrt(vb) / bc2 + eps)
    return w, b


def test_logits(w, b, stats):
    mean, std = stats
    return ((test_x.astype(np.float64) - mean) / std) @ w.T + b


out = {"train_x": train_x, "train_y": train_y.astype(np.float32), "test_x": test_x, "test_y": test_y.astype(np.float32),
       "fewshot_subset": subset.astype(np.float32)}
full = statistics(train_x)
for name, rows, steps, lr, wd in [("linear", np.arange(len(train_y)), 2000, 1e-3, 0.0),
                                  ("fewshot", subset, 300, 1e-2, 0.05)]:
    w, b = fit(train_x[rows], train_y[rows], steps, lr, wd, full)
    logits = test_logits(w, b, full)
    acc = float((logits.argmax(1) == test_y).mean())
    out[f"{name}_weight"], out[f"{name}_bias"] = w.astype(np.float32), b.astype(np.float32)
    out[f"{name}_test_logits"] = logits.astype(np.float32)
    out[f"{name}_test_accuracy"] = np.array([acc], dtype=np.float32)
    print(f"{name}: test accuracy {acc:.4f}, |w| max {np.abs(w).max():.3f}")

try:
    from sklearn.linear_model import LogisticRegression
    mean, std = full
    clf = LogisticRegression(C=np.inf, max_iter=10000, tol=1e-10).fit((train_x - mean) / std, train_y)
    agree = (clf.predict((test_x - mean) / std) == out["linear_test_logits"].argmax(1)).mean()
    print(f"scikit-learn optimum: test accuracy {clf.score((test_x - mean) / std, test_y):.4f}; "
          f"the probe's predictions agree on {agree:.1%}")
except ImportError:
    print("scikit-learn not installed: no cross-check")

save_file(out, OUT, metadata={"format": "np"})
print("wrote", os.path.relpath(OUT))
