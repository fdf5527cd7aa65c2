"""Tessera vs PyTorch (eager and torch.compile) on the same MAE training step, same machine, same thread
count. Each round runs the three sides once, each in its own process, in an order that rotates from
round to round; a side's figure is its median ms/step over --steps timed steps (after warm-up). Per
round the ratio is Tessera's images/s over the faster PyTorch side's; the summary gives medians.
Peak resident memory is each process's maximum RSS (wait4), PyTorch's including its own libraries.

Run through Bench/compare_pytorch.sh, which builds Tessera and finds or installs PyTorch.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    # name: (model, image size, channels, patch, batch)
    "mae-tiny": ("vit-tiny", 28, 1, 4, 256),
    "mae-small": ("vit-small", 32, 3, 4, 128),
    "mae-base": ("vit-base", 224, 3, 16, 16),
}

p = argparse.ArgumentParser()
p.add_argument("--configs", default="mae-tiny,mae-small,mae-base")
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--python", default=sys.executable, help="a Python with torch")
p.add_argument("--tessera", default=os.path.join(ROOT, ".build", "release", "tessera"))
p.add_argument("--no-compile", action="store_true", help="skip the torch.compile side")
a = p.parse_args()


def run(cmd, env):
    """Runs cmd; returns (stdout, peak RSS in MiB)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"compare_pytorch: {' '.join(cmd[:3])} … failed ({proc.returncode}):\n{out[-3000:]}")
    return out, usage.ru_maxrss / 1024.0


def tessera_side(cfg, env):
    model, size, ch, patch, batch = CONFIGS[cfg]
    cmd = [a.tessera, "bench", "--rounds", "1", "--steps", str(a.steps), "--image-size", str(size),
           "--channels", str(ch), "--threads", str(a.threads), "--",
           "--model", model, "--patch-size", str(patch), "--batch-size", str(batch)]
    out, rss = run(cmd, env)
    m = re.search(r"median: ([0-9.]+) ms/step, ([0-9.]+) images/s.*?= (\d+)% of the sgemm rate \(([0-9.]+) GFLOP/s\)", out)
    if not m:
        sys.exit(f"compare_pytorch: could not read tessera bench's summary line:\n{out[-2000:]}")
    return {"ms": float(m.group(1)), "ips": float(m.group(2)), "share": int(m.group(3)), "rss": rss}


def torch_side(cfg, mode, env):
    model, size, ch, patch, batch = CONFIGS[cfg]
    cmd = [a.python, os.path.join(HERE, "pytorch_step.py"), "--model", model, "--image-size", str(size),
           "--channels", str(ch), "--patch-size", str(patch), "--batch-size", str(batch),
           "--threads", str(a.threads), "--steps", str(a.steps), "--mode", mode,
           "--warmup", "3" if mode == "compile" else "2"]
    out, rss = run(cmd, env)
    line = [l for l in out.splitlines() if l.startswith("{")]
    if not line:
        sys.exit(f"compare_pytorch: no result from pytorch_step.py:\n{out[-2000:]}")
    r = json.loads(line[-1])
    return {"ms": r["ms_per_step"], "ips": r["images_per_s"], "rss": rss}


env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
sides = ["tessera", "eager"] + ([] if a.no_compile else ["compile"])
print(f"compare_pytorch: {a.threads} threads, {a.rounds} rounds, {a.steps} timed steps per side per round")
rows = []
for cfg in a.configs.split(","):
    if cfg not in CONFIGS:
        sys.exit(f"compare_pytorch: unknown config {cfg!r}; use one of {', '.join(CONFIGS)}")
    model, size, ch, patch, batch = CONFIGS[cfg]
    print(f"\n{cfg}: MAE {model}/{patch} on {size}x{size}x{ch}, batch {batch}")
    res = {s: [] for s in sides}
    ratios = []
    for r in range(a.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        got = {}
        for s in order:
            got[s] = tessera_side(cfg, env) if s == "tessera" else torch_side(cfg, s, env)
            res[s].append(got[s])
        best_torch = max(got[s]["ips"] for s in sides if s != "tessera")
        ratios.append(got["tessera"]["ips"] / best_torch)
        print(f"  round {r + 1} ({' → '.join(order)}): " +
              ", ".join(f"{s} {got[s]['ips']:.1f} img/s" for s in sides) + f"; ratio {ratios[-1]:.2f}x")
    med = {s: statistics.median(x["ips"] for x in res[s]) for s in sides}
    rss = {s: max(x["rss"] for x in res[s]) for s in sides}
    share = statistics.median(x["share"] for x in res["tessera"])
    torch_rss = max(rss[s] for s in sides if s != "tessera")
    rows.append((cfg, model, patch, size, ch, batch, med, statistics.median(ratios), share, rss, torch_rss))

print("\n| configuration | Tessera img/s | PyTorch eager | PyTorch compile | ratio (median of rounds) "
      "| Tessera FLOP/s share of sgemm | peak RSS Tessera / PyTorch (MiB) |")
print("|---|---|---|---|---|---|---|")
for cfg, model, patch, size, ch, batch, med, ratio, share, rss, torch_rss in rows:
    comp = f"{med['compile']:.1f}" if "compile" in med else "—"
    print(f"| MAE {model}/{patch}, {size}×{size}×{ch}, batch {batch} | {med['tessera']:.1f} | {med['eager']:.1f} | "
          f"{comp} | {ratio:.2f}x | {share}% | {rss['tessera']:.0f} / {torch_rss:.0f} ({rss['tessera'] / torch_rss:.2f}) |")
