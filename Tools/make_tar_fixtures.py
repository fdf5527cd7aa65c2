"""Writes the tar shards of Tests/DataTests/Corpus that Python's `tarfile` makes (the way most
WebDataset shards are written), one per format the reader must take: GNU (long names in 'L'
members), PAX (long and non-ASCII paths in 'x' headers), ustar (a path split into prefix and name),
Python's default, Python's default with every size field in GNU's base-256 form, and one whose member
size field is not octal. Each valid shard holds three samples,
KEY.png + KEY.cls with labels 0, 1, 2 and KEY a long path. Standard library only; run once, the files
are committed:

    python3 Tools/make_tar_fixtures.py Tests/DataTests/Corpus
"""
import io
import os
import struct
import sys
import tarfile
import zlib

out = sys.argv[1]


def png(value):
    """A 2x2 gray PNG of one value."""
    raw = b"".join(b"\x00" + bytes([value, value]) for _ in range(2))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def shard(path, fmt, keys):
    with tarfile.open(path, "w", format=fmt) as tar:
        for label, key in enumerate(keys):
            for ext, data in ((".png", png(40 * (label + 1))), (".cls", str(label).encode())):
                info = tarfile.TarInfo(key + ext)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))


deep = "train/" + "very_long_folder_name_" * 5 + "/"   # 117 characters: past ustar's 100-byte name field
shard(f"{out}/tar_valid_gnu_longnames.tar", tarfile.GNU_FORMAT, [deep + f"sample{i:03d}" for i in range(3)])
shard(f"{out}/tar_valid_pax_paths.tar", tarfile.PAX_FORMAT, [deep + f"échantillon{i:03d}" for i in range(3)])
shard(f"{out}/tar_valid_ustar_prefix.tar", tarfile.USTAR_FORMAT, [deep + f"s{i}" for i in range(3)])
shard(f"{out}/tar_valid_python_default.tar", tarfile.DEFAULT_FORMAT, [f"n{i:02d}" for i in range(3)])
# The first member's size field replaced by letters (its checksum recomputed, so only the size is wrong).
data = bytearray(open(f"{out}/tar_valid_python_default.tar", "rb").read())
data[124:136] = b"0000000zzzz\x00"
data[148:156] = b"        "
data[148:156] = b"%06o\x00 " % sum(data[:512])
open(f"{out}/tar_bad_size_field.tar", "wb").write(bytes(data))
# Every member's size field in GNU's base-256 form (0x80, then the size big-endian in 11 bytes), which
# GNU tar writes for sizes past 8 GiB and readers must take at any size; checksums recomputed.
data = bytearray(open(f"{out}/tar_valid_python_default.tar", "rb").read())
at = 0
while at + 512 <= len(data) and any(data[at:at + 512]):
    size = int(data[at + 124:at + 136].split(b"\x00")[0].strip() or b"0", 8)
    data[at + 124:at + 136] = b"\x80" + size.to_bytes(11, "big")
    data[at + 148:at + 156] = b"        "
    data[at + 148:at + 156] = b"%06o\x00 " % sum(data[at:at + 512])
    at += 512 + (size + 511) // 512 * 512
open(f"{out}/tar_valid_base256_sizes.tar", "wb").write(bytes(data))
with tarfile.open(f"{out}/tar_valid_base256_sizes.tar") as check:   # Python reads it back
    assert [m.size for m in check.getmembers()] == [m.size for m in tarfile.open(f"{out}/tar_valid_python_default.tar").getmembers()]
for name in sorted(os.listdir(out)):
    if name.startswith("tar_"):
        print(name, os.path.getsize(f"{out}/{name}"))
