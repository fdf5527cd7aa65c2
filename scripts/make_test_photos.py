"""Writes the JPEG and PNG fixtures of Tests/DataTests/Photos (run once; the files are committed):
textured images of a few sizes in the encodings the loader must handle — 4:2:0 and 4:4:4 chroma,
progressive, grayscale, restart markers — small enough for the repository.

    Bench/.venv/bin/python scripts/make_test_photos.py Tests/DataTests/Photos
"""
import os, sys
import numpy as np
from PIL import Image

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)

def picture(w, h, gray=False):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c = 1 if gray else 3
    base = 0.5 + 0.3 * np.sin(xx[..., None] / rng.uniform(5, 25, c) + yy[..., None] / rng.uniform(7, 30, c))
    base += rng.normal(0, 0.05, (h, w, c))
    a = (np.clip(base, 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(a[..., 0] if gray else a)

picture(301, 217).save(f"{out}/a420.jpg", quality=90, subsampling=2)
picture(256, 333).save(f"{out}/b444.jpg", quality=92, subsampling=0)
picture(400, 300).save(f"{out}/c_progressive.jpg", quality=85, progressive=True)
picture(190, 250, gray=True).save(f"{out}/d_gray.jpg", quality=90)
picture(220, 180).save(f"{out}/e_restart.jpg", quality=90, restart_marker_blocks=3)
picture(97, 131).save(f"{out}/f.png")
