"""Writes Tests/DataTests/Photos/modes: one small image in each mode an ImageNet-style folder holds,
and what PIL makes of it, as torchvision's loader reads it (`Image.open(f).convert("RGB")`) and for
1-channel training (`.convert("L")`). The decoder must give the same pixels (ReaderKnownAnswerTests).
Run once with Pillow and NumPy; the files are committed, so CI needs neither.

    python3 scripts/make_mode_fixtures.py Tests/DataTests/Photos/modes
"""
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, PngImagePlugin

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1)
W, H = 23, 17


def smooth(c, lo=0, hi=255):
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    v = 0.5 + 0.45 * np.sin(xx[..., None] / rng.uniform(2, 6, c) + yy[..., None] / rng.uniform(2, 6, c) + rng.uniform(0, 6, c))
    return np.clip(lo + v * (hi - lo) + rng.normal(0, 3, (H, W, c)), lo, hi)


def save_npy(name, image):
    np.save(f"{out}/{name}", np.asarray(image, dtype=np.uint8))


made = []
rgb = smooth(3).astype(np.uint8)
gray = smooth(1)[..., 0].astype(np.uint8)
alpha = smooth(1)[..., 0].astype(np.uint8)

Image.fromarray(gray, "L").save(f"{out}/png_L.png"); made.append("png_L.png")
Image.fromarray(np.dstack([gray, alpha]), "LA").save(f"{out}/png_LA.png"); made.append("png_LA.png")
Image.fromarray(rgb, "RGB").save(f"{out}/png_RGB.png"); made.append("png_RGB.png")
Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(f"{out}/png_RGBA.png"); made.append("png_RGBA.png")
pal = Image.fromarray(rgb, "RGB").quantize(colors=37, method=Image.Quantize.MEDIANCUT)
pal.save(f"{out}/png_P.png"); made.append("png_P.png")
pal.info["transparency"] = 5
pal.save(f"{out}/png_P_trns.png", transparency=5); made.append("png_P_trns.png")
Image.fromarray(gray > 128).convert("1").save(f"{out}/png_1.png"); made.append("png_1.png")
# 16 bits per sample: gray (PIL mode I;16) and RGB (PIL keeps the high byte), written with zlib directly.


def png16(path, samples, color_type):
    h, w = samples.shape[:2]
    rows = b"".join(b"\x00" + samples[y].astype(">u2").tobytes() for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


png16(f"{out}/png_RGB16.png", (smooth(3) * 257).astype(np.uint16), 2); made.append("png_RGB16.png")
png16(f"{out}/png_I16.png", (smooth(1)[..., 0] * 257).astype(np.uint16), 0); made.append("png_I16.png")
png16(f"{out}/png_LA16.png", (smooth(2) * 257).astype(np.uint16), 4); made.append("png_LA16.png")
# A gAMA chunk that is not sRGB's: PIL ignores it (torchvision's pixels are the stored ones).
info = PngImagePlugin.PngInfo()
info.add(b"gAMA", struct.pack(">I", 100000))
Image.fromarray(rgb, "RGB").save(f"{out}/png_gamma.png", pnginfo=info); made.append("png_gamma.png")
Image.fromarray(gray, "L").save(f"{out}/jpg_L.jpg", quality=92); made.append("jpg_L.jpg")
Image.fromarray(rgb, "RGB").save(f"{out}/jpg_RGB.jpg", quality=92); made.append("jpg_RGB.jpg")
Image.fromarray(rgb, "RGB").convert("CMYK").save(f"{out}/jpg_CMYK.jpg", quality=92); made.append("jpg_CMYK.jpg")

for name in made:
    im = Image.open(f"{out}/{name}")
    stem = name.rsplit(".", 1)[0]
    save_npy(f"{stem}.rgb.npy", im.convert("RGB"))
    save_npy(f"{stem}.l.npy", Image.open(f"{out}/{name}").convert("L"))
    print(name, im.mode)
