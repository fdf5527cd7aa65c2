"""Writes known-answer fixtures for the readers into Tests/DataTests/Photos (run once; the files are
committed): .npy images written by numpy itself (uint8 NHWC, float32 NCHW, uint8 NHW) with labels,
and a grayscale PNG written by Pillow. Every value is a formula of its index, which
ReaderKnownAnswerTests recomputes: pixel (n, y, x, c) = (n·50 + y·10 + x·3 + c·7) mod 256.

    Bench/.venv/bin/python scripts/make_reader_fixtures.py Tests/DataTests/Photos
"""
import os, sys
import numpy as np
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def values(n, h, w, c):
    nn, yy, xx, cc = np.meshgrid(np.arange(n), np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return (nn * 50 + yy * 10 + xx * 3 + cc * 7) % 256          # [n, h, w, c]

v = values(3, 4, 5, 3)
np.save(os.path.join(out, "known_u8_nhwc.npy"), v.astype(np.uint8))
np.save(os.path.join(out, "known_u8_nhwc-labels.npy"), np.array([2, 0, 1]))            # int64
np.save(os.path.join(out, "known_f32_nchw.npy"), (v.transpose(0, 3, 1, 2) / 255).astype(np.float32))
g = values(2, 4, 5, 1)[..., 0]
np.save(os.path.join(out, "known_u8_nhw.npy"), g.astype(np.uint8))
Image.fromarray(values(1, 6, 7, 1)[0, :, :, 0].astype(np.uint8), mode="L").save(os.path.join(out, "known_gray.png"))
