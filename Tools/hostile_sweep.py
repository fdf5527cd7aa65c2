#!/usr/bin/env python3
"""A hostile sweep of the `tessera` command: every subcommand, every input kind, as a hostile but
realistic user would try them (docs/reliability.md, "Hostile sweep").

Each case builds its inputs in a scratch folder, runs one command with a 120 s bound, and checks:
- it ended by itself (no signal, no hang);
- a refusal is one line on stderr, "error: ..." naming what it should, with a non-zero status;
- a refused command left the scratch folder (and any file it was pointed at) exactly as it was;
- a command that should succeed did, with the right answer where there is one.

Usage: python3 Tools/hostile_sweep.py [--tessera PATH] [--markdown]
Needs only Python's standard library. Prints one line per case and a summary; --markdown prints the
table docs/reliability.md holds. Exit status 1 if any case fails.
"""
import argparse
import fcntl
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
import zlib

BOUND = 120
TINY = ["--depth", "1", "--dim", "32", "--heads", "2", "--decoder-dim", "16", "--decoder-depth", "1",
        "--decoder-heads", "2", "--batch-size", "16", "--epochs", "1"]


# ---------------------------------------------------------------- inputs

def band(c, i, channels=1):
    """A 16x16 image of class c: a bright band in rows 5c..5c+4 (deterministic noise)."""
    out = bytearray()
    for p in range(16 * 16 * channels):
        y = p // channels // 16
        out.append((200 if y // 5 == c % 3 else 30) + (i * 7 + p * 13) % 40)
    return bytes(out)


def write_npy(path, shape, data, descr):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + data)


def npy(dir, name, count=48, channels=1):
    """`count` uint8 images [N,16,16(,C)] with labels i % 3 beside them."""
    px = b"".join(band(i % 3, i, channels) for i in range(count))
    shape = (count, 16, 16) if channels == 1 else (count, 16, 16, channels)
    write_npy(f"{dir}/{name}.npy", shape, px, "|u1")
    write_npy(f"{dir}/{name}-labels.npy", (count,), struct.pack(f"<{count}q", *[i % 3 for i in range(count)]), "<i8")
    return f"{dir}/{name}.npy"


def png(path, pixels, w=16, h=16):
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def folder(root, classes, bands=("a", "b", "c"), per_class=8):
    for cls in classes:
        os.makedirs(f"{root}/{cls}", exist_ok=True)
        for i in range(per_class):
            png(f"{root}/{cls}/{i}.png", band(bands.index(cls) if cls in bands else 0, i))


def safetensors_meta(path, **changes):
    """Rewrites a safetensors file's __metadata__ entries (in place)."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    header["__metadata__"].update(changes)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data[8 + n:])


def config_of(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(json.loads(data[8:8 + n])["__metadata__"]["config"])


# ---------------------------------------------------------------- running

def snapshot(*roots):
    """Every path under `roots` with its type, and for files their size and modification time."""
    seen = {}
    for root in roots:
        if not os.path.lexists(root):
            continue
        paths = [root]
        if os.path.isdir(root) and not os.path.islink(root):
            for d, dirs, files in os.walk(root):
                paths += [os.path.join(d, x) for x in dirs + files]
        for p in paths:
            st = os.lstat(p)
            # A folder's own time changes when an entry is made and removed in it: not compared.
            directory = stat.S_ISDIR(st.st_mode)
            seen[p] = (stat.S_IFMT(st.st_mode), 0 if directory else st.st_size, 0 if directory else st.st_mtime_ns)
    return seen


class Sweep:
    def __init__(self, tessera):
        self.tessera = tessera
        self.rows = []
        self.base = tempfile.mkdtemp(prefix="tessera-sweep-")
        self.env = dict(os.environ, TESSERA_THREADS="2")

    def run(self, args, timeout=None):
        timeout = timeout or BOUND
        start = time.time()
        p = subprocess.Popen([self.tessera] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             env=self.env)
        try:
            out, err = p.communicate(timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            hung = True
        return p.returncode, out.decode(errors="replace"), err.decode(errors="replace"), time.time() - start, hung

    def scratch(self, name):
        d = os.path.join(self.base, name)
        os.makedirs(d)
        return d

    def finished_run(self, d):
        data = npy(d, "tiny")
        rc, _, err, _, _ = self.run(["pretrain", "--data", data, "--run", d + "/run"] + TINY)
        assert rc == 0, err
        return d + "/run", data

    def case(self, command, defect, what, args, expect, mentions="", watch=(), check=None, timeout=None):
        """One case. expect: 'refused' (one line naming `mentions`, nothing changed under `watch`) or
        'ok' (status 0; `check(stdout, stderr)` returns an error text or None)."""
        before = snapshot(*watch)
        rc, out, err, secs, hung = self.run(args, timeout)
        problems = []
        if hung:
            problems.append(f"hung ({BOUND} s)")
        elif rc < 0:
            problems.append(f"killed by signal {-rc}")
        elif expect == "refused":
            lines = [l for l in err.splitlines() if l.startswith("error: ")]
            if rc == 0:
                problems.append("exit 0")
            if len(lines) != 1:
                problems.append(f"{len(lines)} error lines")
            if mentions and mentions not in err:
                problems.append(f"'{mentions}' not named")
            after = snapshot(*watch)
            if after != before:
                changed = sorted(set(after.items()) ^ set(before.items()))
                problems.append("left changes: " + ", ".join(sorted({os.path.relpath(p, self.base) for p, _ in changed}))[:200])
        else:
            if rc != 0:
                problems.append(f"exit {rc}: {err.strip()[:200]}")
            elif check:
                c = check(out, err)
                if c:
                    problems.append(c)
        message = (err.strip().splitlines() or [""])[-1] if expect == "refused" else (check and "as expected") or "ok"
        self.rows.append((command, defect, what, "pass" if not problems else "FAIL: " + "; ".join(problems),
                          message[:160], secs))
        print(f"{'PASS' if not problems else 'FAIL'} {command:11} {what}: {'; '.join(problems) or message[:120]}", flush=True)


def contains(*texts, where="stdout"):
    def check(out, err):
        t = out if where == "stdout" else err
        missing = [x for x in texts if x not in t]
        return f"{where} lacks {missing}" if missing else None
    return check


# ---------------------------------------------------------------- the cases

def sweep(s):
    # pretrain
    d = s.scratch("lock")
    os.makedirs(d + "/run")
    fd = os.open(d + "/run/.tessera.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    s.case("pretrain", 1, "a second start on a folder in use (data not even readable)",
           ["pretrain", "--data", d + "/absent.npy", "--run", d + "/run"] + TINY, "refused", "in use", [d])
    os.close(fd)
    d = s.scratch("finished")
    run, data = s.finished_run(d)
    s.case("pretrain", 1, "a fresh start over a finished run", ["pretrain", "--data", data, "--run", run] + TINY, "refused", "--resume", [d])
    s.case("pretrain", 8, "--resume --epochs at the epochs done", ["pretrain", "--run", run, "--resume", "--epochs", "1"], "refused", "--epochs", [d])
    s.case("pretrain", 8, "--accum above the batches of an epoch", ["pretrain", "--data", data, "--run", d + "/r2", "--accum", "4"] + TINY,
           "refused", "--accum", [d])
    s.case("pretrain", 4, "MSN with --batch-size 1", ["pretrain", "--method", "msn", "--data", data, "--run", d + "/r3", "--batch-size", "1",
                                                      "--depth", "1", "--dim", "32", "--heads", "2", "--epochs", "1", "--limit", "4"], "refused", "--batch-size", [d])
    rgb = npy(d, "rgb", channels=3)
    s.case("pretrain", 4, "--eval-data with other channels", ["pretrain", "--data", data, "--eval-data", rgb, "--knn-every", "1",
                                                              "--run", d + "/r4"] + TINY, "refused", "3-channel", [d])
    s.case("pretrain", 0, "--run under /proc", ["pretrain", "--data", data, "--run", "/proc/tessera-run"] + TINY, "refused", "/proc", [d])
    s.case("pretrain", 0, "--data that does not exist", ["pretrain", "--data", d + "/none.npy", "--run", d + "/r5"] + TINY, "refused", "none.npy", [d])
    state = run + "/last.train-state.safetensors"
    saved = open(state, "rb").read()
    for key, value in [("epoch", "-1"), ("step", str(2 ** 63 - 1))]:
        safetensors_meta(state, **{key: value})
        s.case("pretrain", 4, f"--resume from a train state claiming {key} {value}", ["pretrain", "--run", run, "--resume", "--epochs", "2"],
               "refused", "last.train-state.safetensors", [d])
        open(state, "wb").write(saved)
    npy(d, "tiny", count=40)
    s.case("pretrain", 8, "--resume after the data shrank", ["pretrain", "--run", run, "--resume", "--epochs", "2"], "refused", "steps per epoch", [d])
    shutil.copy(rgb, data)
    shutil.copy(rgb.replace(".npy", "-labels.npy"), data.replace(".npy", "-labels.npy"))
    s.case("pretrain", 4, "--resume after the data changed channels", ["pretrain", "--run", run, "--resume", "--epochs", "2"], "refused", "3-channel", [d])
    d = s.scratch("locklink")
    open(d + "/victim", "w").write("precious")
    os.makedirs(d + "/run")
    os.symlink(d + "/victim", d + "/run/.tessera.lock")
    s.case("pretrain", 2, "a symlink as the folder's lock file", ["pretrain", "--data", npy(d, "t"), "--run", d + "/run"] + TINY,
           "refused", ".tessera.lock", [d])
    d = s.scratch("broken")
    folder(d + "/src", ["a", "b"])
    open(d + "/src/a/0.png", "wb").write(b"\x89PNG\x00\x01\x02")
    s.case("pretrain", 9, "an unreadable image in the first batch", ["pretrain", "--data", d + "/src", "--channels", "1", "--run", d + "/out/run"] + TINY,
           "refused", "0.png", [d])
    d = s.scratch("fifo-folder")
    folder(d + "/src", ["a", "b"])
    os.mkfifo(d + "/src/b/zz.png")
    s.case("pretrain", 5, "a FIFO named .png in the image folder", ["pretrain", "--data", d + "/src", "--channels", "1", "--run", d + "/r"] + TINY,
           "refused", "zz.png", [d])
    d = s.scratch("fifo-metrics")
    os.makedirs(d + "/run")
    os.mkfifo(d + "/run/metrics.csv")
    s.case("pretrain", 5, "a FIFO as the run folder's metrics.csv", ["pretrain", "--data", npy(d, "t"), "--run", d + "/run"] + TINY,
           "refused", "metrics.csv", [d])
    d = s.scratch("loops")
    folder(d + "/src", ["a", "b"])
    os.symlink(".", d + "/src/a/x"); os.symlink(".", d + "/src/a/y"); os.symlink("..", d + "/src/b/up")
    s.case("pretrain", 5, "self-symlinks and a link to the root in class folders",
           ["pretrain", "--data", d + "/src", "--channels", "1", "--run", d + "/r", "--batch-size", "8"] + TINY[:-4] + ["--epochs", "1"],
           "ok", check=contains("16 images, 2 classes"))
    d = s.scratch("firstsave")
    run, data = s.finished_run(d)
    os.unlink(run + "/last.train-state.safetensors")
    s.case("pretrain", 10, "a model file without its train state (cut first save): --resume", ["pretrain", "--run", run, "--resume", "--epochs", "2"],
           "refused", "drop --resume", [d])
    s.case("pretrain", 10, "the same folder: a new start", ["pretrain", "--data", data, "--run", run] + TINY, "ok",
           check=contains("replaces it", where="stderr"))
    # shards
    d = s.scratch("shards")
    folder(d + "/src", ["a", "b", "c"])
    s.run(["pack", d + "/src", d + "/shards"])
    shard = d + "/shards/shard-000000.tar"
    whole = open(shard, "rb").read()
    for cut, what in [(6 * 1024, "at a member boundary"), (6 * 1024 + 200, "inside a member header")]:
        open(shard, "wb").write(whole[:cut])
        if os.path.exists(shard + ".idx"):
            os.unlink(shard + ".idx")
        s.case("pretrain", 6, f"a shard truncated {what}", ["pretrain", "--data", d + "/shards", "--channels", "1", "--image-size", "16",
                                                           "--run", d + "/r"] + TINY, "refused", "truncated", [d + "/r"])
    d = s.scratch("stale")
    for split in ["train", "test"]:
        folder(f"{d}/src/{split}", ["a", "b", "c"])
        s.run(["pack", f"{d}/src/{split}", f"{d}/shards/{split}"])
    s.run(["pack", d + "/src/train", d + "/other", "--seed", "7"])
    os.unlink(d + "/shards/train/shard-000000.tar")
    shutil.copy(d + "/other/shard-000000.tar", d + "/shards/train/shard-000000.tar")
    s.case("eval", 3, "a shard replaced by a re-shuffled pack of the same size (stale .idx)",
           ["eval", "--pixels", "--data", d + "/shards", "--few-shot", "none", "--no-linear"], "ok", check=contains("100.00%"))
    # eval
    d = s.scratch("classes")
    folder(d + "/sub/train", ["a", "b", "c"]); folder(d + "/sub/test", ["c"])
    s.case("eval", 3, "a test split with one class, the third of training", ["eval", "--pixels", "--data", d + "/sub", "--few-shot", "none", "--no-linear"],
           "ok", check=contains("100.00%"))
    folder(d + "/extra/train", ["a", "b"]); folder(d + "/extra/test", ["a", "b", "c"])
    s.case("eval", 3, "a test class the training split lacks", ["eval", "--pixels", "--data", d + "/extra", "--few-shot", "none"], "refused", "'c'", [d])
    folder(d + "/only/train", ["a", "b", "c"])
    s.case("eval", 3, "a folder with train/ only", ["eval", "--pixels", "--data", d + "/only", "--few-shot", "none", "--no-linear"], "ok",
           check=lambda o, e: None if "24 train / 24 test, not held out" in o and "no test split" in e else "reuse not said")
    flat = npy(d, "flat")
    s.case("eval", 3, "a .npy (no test split)", ["eval", "--pixels", "--data", flat, "--few-shot", "none", "--no-linear"], "ok",
           check=contains("no test split", where="stderr"))
    folder(d + "/onlytest/test", ["a", "b"])
    s.case("eval", 3, "a folder with test/ only", ["eval", "--pixels", "--data", d + "/onlytest"], "refused", "no train/", [d])
    d = s.scratch("ckpt")
    run, data = s.finished_run(d)
    os.mkfifo(d + "/fifo.safetensors")
    for cmd in (["inspect"], ["eval"], ["embed", "--out", d + "/e.npy"], ["reconstruct", "--out", d + "/e.png"]):
        s.case(cmd[0], 5, "a FIFO as the checkpoint", [cmd[0], d + "/fifo.safetensors"] + cmd[1:], "refused", "fifo.safetensors", [d])
    s.case("inspect", 0, "a directory as the checkpoint", ["inspect", d], "refused", "not a regular file", [d])
    cfg = config_of(run + "/last.safetensors")
    (cfg["encoder"] if "formatVersion" in cfg else cfg["mae"]["encoder"]).update(depth=128, dim=4096, heads=64)
    shutil.copy(run + "/last.safetensors", d + "/huge.safetensors")
    safetensors_meta(d + "/huge.safetensors", config=json.dumps(cfg))
    for cmd in (["eval"], ["embed", "--out", d + "/e.npy"], ["reconstruct", "--out", d + "/e.png"]):
        s.case(cmd[0], 7, "a small checkpoint whose config claims 128 blocks 4096 wide", [cmd[0], d + "/huge.safetensors"] + cmd[1:],
               "refused", "does not match", [d])
    open(d + "/garbage.safetensors", "wb").write(struct.pack("<Q", 2 ** 40) + b"\0" * (64 << 20))
    s.case("inspect", 7, "64 MB whose header length says 1 TB", ["inspect", d + "/garbage.safetensors"], "refused", "header length", [d])
    whole = open(run + "/last.safetensors", "rb").read()
    open(d + "/cut.safetensors", "wb").write(whole[:len(whole) // 2])
    s.case("eval", 0, "a checkpoint cut in half", ["eval", d + "/cut.safetensors"], "refused", "cut.safetensors", [d])
    s.case("reconstruct", 0, "an encoder-only checkpoint", ["reconstruct", run + "/last.encoder.safetensors", "--out", d + "/x.png"],
           "refused", "decoder", [d])
    npy(d, "many", count=256)
    s.case("reconstruct", 7, "--count 256 --scale 64 (a 1 GB grid)", ["reconstruct", run + "/last.safetensors", "--data", d + "/many.npy",
                                                                       "--count", "256", "--scale", "64", "--out", d + "/big.png"], "refused", "--scale", [d])
    # A character device of the sweep's own (a copy of /dev/null's numbers; the real one is never
    # named: a build with the defect would replace it for the whole machine). Root only; else a FIFO.
    device = d + "/null"
    try:
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        kind = "a character device"
    except PermissionError:
        os.mkfifo(device)
        kind = "a FIFO"
    for out, what in ((device, f"{kind} (like /dev/null)"), (d + "/nodir/x.png", "in a missing folder")):
        s.case("reconstruct", 2, f"--out {what} (with --save-noise)",
               ["reconstruct", run + "/last.safetensors", "--count", "2", "--out", out, "--save-noise", d + "/noise.npy"], "refused",
               "not a regular file" if out == device else "nodir", [d])
    os.mkfifo(d + "/out.npy")
    s.case("embed", 2, "--out a FIFO", ["embed", run + "/last.encoder.safetensors", "--out", d + "/out.npy"], "refused", "not a regular file", [d])
    os.makedirs(d + "/elsewhere")
    open(d + "/elsewhere/t.npy", "w").write("old")
    os.symlink(d + "/elsewhere/t.npy", d + "/link.npy")
    s.case("embed", 2, "--out a symlink (followed, the link kept)", ["embed", run + "/last.encoder.safetensors", "--out", d + "/link.npy"], "ok",
           check=lambda o, e: None if os.path.islink(d + "/link.npy") and os.path.getsize(d + "/elsewhere/t.npy") > 3 else "link replaced")
    nan = bytearray(open(run + "/last.encoder.safetensors", "rb").read())
    n = struct.unpack("<Q", nan[:8])[0]
    begin = json.loads(nan[8:8 + n])["norm.weight"]["data_offsets"][0] + 8 + n
    nan[begin:begin + 4] = struct.pack("<f", float("nan"))
    open(d + "/nan.safetensors", "wb").write(nan)
    s.case("eval", 11, "NaN in the weights", ["eval", d + "/nan.safetensors", "--few-shot", "none", "--no-linear"], "ok",
           check=contains("NaN", where="stderr"))
    # pack
    d = s.scratch("pack")
    folder(d + "/p", ["a", "b"])
    os.mkfifo(d + "/p/b/9.png")
    s.case("pack", 9, "a FIFO image half way (then a rerun)", ["pack", d + "/p", d + "/out", "--shard-size", "2", "--no-shuffle"],
           "refused", "9.png", [d])
    os.unlink(d + "/p/b/9.png")
    s.case("pack", 9, "the rerun after removing it", ["pack", d + "/p", d + "/out", "--shard-size", "2"], "ok", check=contains("packed 16 images"))
    s.case("pack", 0, "into a folder that holds shards", ["pack", d + "/p", d + "/out"], "refused", "already holds", [d])
    s.case("pack", 0, "a source that does not exist", ["pack", d + "/none", d + "/out2"], "refused", "none", [d])
    s.case("bench", 0, "an unknown option", ["bench", "--", "--bogus"], "refused", "bogus", [d])


def main():
    global BOUND
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tessera", default=".build/release/tessera")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--bound", type=float, default=BOUND, help="seconds before a command counts as hung (default 120)")
    args = ap.parse_args()
    BOUND = args.bound
    s = Sweep(os.path.abspath(args.tessera))
    try:
        sweep(s)
    finally:
        shutil.rmtree(s.base, ignore_errors=True)
    failed = [r for r in s.rows if r[3] != "pass"]
    if args.markdown:
        print("\n| command | defect | case | verdict | what it said | s |\n|---|---|---|---|---|---|")
        for c, defect, what, verdict, message, secs in s.rows:
            print(f"| {c} | {defect or ''} | {what} | {verdict} | {message.replace('|', '/').replace(s.base, 'DIR')} | {secs:.1f} |")
    print(f"sweep: {len(s.rows) - len(failed)} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
