#!/usr/bin/env python3
"""Writes Tests/DataTests/Corpus: valid and malformed files for every reader (safetensors, IDX,
.npy, PNG, JPEG). The malformed ones must each give one clear error, never a crash; the test
(Tests/EngineTests/ReaderCorpusTests.swift) checks both, and scripts/fuzz.sh starts from these seeds.
Developer-only: needs numpy and pillow.  /root/torchenv/bin/python Tools/make_corpus.py
"""
import gzip
import io
import json
import os
import struct

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "EngineTests", "Corpus")
os.makedirs(OUT, exist_ok=True)


def w(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def st(header, data=b"", pad=True, length=None):
    h = header if isinstance(header, bytes) else json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


f32 = np.arange(6, dtype=np.float32).tobytes()
# valid
w("st_valid.safetensors", st({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
# malformed
w("st_bad_short.safetensors", b"\x08\x00\x00")
w("st_bad_huge_header.safetensors", struct.pack("<Q", 2**63) + b"{}")
w("st_bad_header_past_eof.safetensors", struct.pack("<Q", 4096) + b"{}      ")
w("st_bad_json.safetensors", st(b'{"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]', f32))
w("st_bad_not_utf8.safetensors", st(b'{"\xff\xfe": 1}'))
w("st_bad_dtype.safetensors", st({"a": {"dtype": "F33", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
w("st_bad_truncated.safetensors", st({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32[:20]))
w("st_bad_trailing.safetensors", st({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32 + b"xx"))
w("st_bad_overlap.safetensors", st({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                                    "b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}}, f32))
w("st_bad_gap.safetensors", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, f32[:8]))
w("st_bad_size.safetensors", st({"a": {"dtype": "I32", "shape": [2, 2], "data_offsets": [0, 4]}}, f32[:4]))
w("st_bad_overflow.safetensors", st({"a": {"dtype": "F32", "shape": [2, 18446744073709551614], "data_offsets": [0, 8]}}, f32[:8]))
w("st_bad_duplicate.safetensors", st(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', f32[:8]))
w("st_bad_metadata.safetensors", st({"__metadata__": {"format": 1}}))
w("st_bad_negative.safetensors", st(b'{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', f32[:4]))
w("st_bad_nested.safetensors", st(b"[" * 10000 + b"]" * 10000))

# IDX
imgs = (np.arange(2 * 4 * 4) % 256).astype(np.uint8)
idx = bytes([0, 0, 8, 3]) + struct.pack(">III", 2, 4, 4) + imgs.tobytes()
w("idx_valid.idx", idx)
w("idx_valid.idx.gz", gzip.compress(idx, mtime=0))
w("idx_bad_magic.idx", b"\x01\x02" + idx[2:])
w("idx_bad_type.idx", bytes([0, 0, 0x0D, 3]) + idx[4:])
w("idx_bad_truncated.idx", idx[:-5])
w("idx_bad_header.idx", idx[:9])
w("idx_bad_gzip.idx.gz", gzip.compress(idx, mtime=0)[:-12])
w("idx_bad_gzip_garbage.idx.gz", b"\x1f\x8b\x08\x00" + b"\x00" * 30)

# .npy
buf = io.BytesIO(); np.save(buf, np.zeros((2, 4, 4), dtype=np.uint8)); npy = buf.getvalue()
w("npy_valid.npy", npy)
w("npy_bad_magic.npy", b"\x93NUMPX" + npy[6:])
w("npy_bad_truncated.npy", npy[:-3])
buf = io.BytesIO(); np.save(buf, np.zeros((2, 4, 4), dtype=np.complex64)); w("npy_bad_dtype.npy", buf.getvalue())
w("npy_bad_header.npy", npy[:10] + b"{'descr': '|u1', 'shape': (2, 4, 4), }".ljust(len(npy) - 10 - 32) + npy[-32:])
w("npy_bad_shape.npy", npy.replace(b"(2, 4, 4)", b"(2, x, 4)"))

# PNG / JPEG
img = Image.fromarray((np.arange(8 * 8 * 3) % 256).astype(np.uint8).reshape(8, 8, 3))
buf = io.BytesIO(); img.save(buf, format="PNG"); png = buf.getvalue()
w("png_valid.png", png)
w("png_bad_truncated.png", png[: len(png) // 2])
w("png_bad_crc.png", png[:40] + bytes([png[40] ^ 0xFF]) + png[41:])
w("png_bad_huge.png", png[:16] + struct.pack(">II", 1 << 20, 1 << 20) + png[24:])
buf = io.BytesIO(); img.save(buf, format="JPEG", quality=90); jpg = buf.getvalue()
w("jpeg_valid.jpg", jpg)
w("jpeg_bad_truncated.jpg", jpg[: len(jpg) // 2])
w("jpeg_bad_garbage.jpg", jpg[:3] + b"\x00" * 64)
print("corpus written to", os.path.normpath(OUT))
