"""Writes an ImageFolder of JPEGs for the loader benchmarks: Fashion-MNIST images, each scaled up to
about 400x350 (sizes vary), tinted, with texture noise, saved at quality 90 with 4:2:0 chroma as
ImageNet's photos are (~400x350, tens of kB each).

    python Bench/loader/make_jpeg_folder.py OUT N [--classes 10] [--seed 0]

Needs numpy and Pillow (Bench/.venv has them after Bench/loader/compare_torchvision.sh).
"""
import argparse, gzip, os
import numpy as np
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out"); ap.add_argument("n", type=int)
ap.add_argument("--classes", type=int, default=10); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--mnist", default="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
a = ap.parse_args()
with gzip.open(a.mnist) as f:
    raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
rng = np.random.default_rng(a.seed)
for c in range(a.classes):
    os.makedirs(os.path.join(a.out, f"class{c:04d}"), exist_ok=True)
for i in range(a.n):
    w, h = int(rng.integers(340, 460)), int(rng.integers(300, 400))
    img = Image.fromarray(raw[i % len(raw)]).resize((w, h), Image.BICUBIC)
    x = np.asarray(img, np.float32)[..., None] / 255
    tint = rng.uniform(0.3, 1.0, 3)
    bg = rng.uniform(0, 0.5, 3)
    y = x * tint + (1 - x) * bg
    y += rng.normal(0, 0.06, (h, w, 3))                       # texture
    yy, xx = np.mgrid[0:h, 0:w]
    y += 0.15 * np.sin(xx[..., None] / rng.uniform(8, 40) + rng.uniform(0, 6, 3))   # structure
    Image.fromarray((np.clip(y, 0, 1) * 255).astype(np.uint8)).save(
        os.path.join(a.out, f"class{i % a.classes:04d}", f"img{i:08d}.jpg"), quality=90, subsampling=2)
