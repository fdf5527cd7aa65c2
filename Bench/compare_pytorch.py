"""Tessera vs PyTorch (eager, torch.compile, torch.compile(mode="max-autotune"), and bf16 autocast eager and
compiled — the one line a PyTorch user adds for bf16; where the CPU multiplies bf16 slowly that side
simply loses) on the same training step (MAE, MSN or SIM), same machine, same thread count. Tessera
runs its default, --precision auto. Each round runs every side once, each in its own
process, in an order that rotates from round to round; a side's figure is its median ms/step over
--steps timed steps (after warm-up). Per round the ratio is Tessera's images/s over the fastest
PyTorch side's; the summary gives medians. max-autotune benchmarks GEMM candidates while it
compiles, which can take long on a few cores: a max-autotune process that has not finished within
--autotune-timeout seconds (or fails) counts as not finishing that round, is reported so, and the
ratio is then to the faster of eager and compile.
Peak resident memory is each process's maximum RSS (wait4), PyTorch's including its own libraries;
the ratio is to the larger of eager's and compile's.

Run through Bench/compare_pytorch.sh, which builds Tessera and finds or installs PyTorch.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CONFIGS = {
    # name: (method, model, image size, channels, patch, batch)
    "mae-tiny": ("mae", "vit-tiny", 28, 1, 4, 256),
    "mae-small": ("mae", "vit-small", 32, 3, 4, 128),
    "mae-base": ("mae", "vit-base", 224, 3, 16, 16),
    "msn-tiny": ("msn", "vit-tiny", 28, 1, 4, 256),
    "sim-tiny": ("sim", "vit-tiny", 28, 1, 4, 256),
}

p = argparse.ArgumentParser()
p.add_argument("--configs", default="mae-tiny,mae-small,mae-base")
p.add_argument("--threads", type=int, default=os.cpu_count())
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--python", default=sys.executable, help="a Python with torch")
p.add_argument("--tessera", default=os.path.join(ROOT, ".build", "release", "tessera"))
p.add_argument("--onednn", action="store_true",
               help="also run Tessera with its oneDNN GEMM (TESSERA_GEMM=onednn; needs libdnnl) as another side")
p.add_argument("--no-openblas", action="store_true", help="skip the Tessera side on OpenBLAS (TESSERA_GEMM=openblas)")
p.add_argument("--no-compile", action="store_true", help="skip the torch.compile side")
p.add_argument("--no-max-autotune", action="store_true", help="skip the torch.compile(mode=\"max-autotune\") side")
p.add_argument("--no-bf16", action="store_true", help="skip PyTorch's bf16 autocast sides (eager and compiled)")
p.add_argument("--autotune-timeout", type=float, default=1800,
               help="seconds a max-autotune process may take, compilation included (default 1800)")
a = p.parse_args()


class DidNotFinish(Exception):
    """A side that may fail (max-autotune) timed out or exited non-zero; the message says which."""


def run(cmd, env, timeout=None, may_fail=False):
    """Runs cmd; returns (its output, peak RSS in MiB). A failure ends the comparison, unless may_fail,
    which raises DidNotFinish instead; so does running past timeout seconds. The child runs in its own
    process group (a kill then also ends the compile workers Inductor starts), which is killed
    whenever run() leaves early, Ctrl-C included."""
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, text=True, start_new_session=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:   # wait4, not Popen.wait: it also gives the child's peak RSS
                pid, status, usage = os.wait4(proc.pid, 0 if deadline is None else os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    raise DidNotFinish(f"did not finish in {timeout:.0f} s")
                time.sleep(0.5)
        except BaseException:
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            raise
        log.seek(0)
        out = log.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        if may_fail:
            last = out.strip().splitlines()[-1] if out.strip() else "no output"
            raise DidNotFinish(f"failed ({proc.returncode}): {last[:200]}")
        sys.exit(f"compare_pytorch: {' '.join(cmd[:3])} … failed ({proc.returncode}):\n{out[-3000:]}")
    return out, usage.ru_maxrss / 1024.0


def tessera_side(cfg, env, gemm):
    method, model, size, ch, patch, batch = CONFIGS[cfg]
    env = dict(env, TESSERA_GEMM=gemm)
    cmd = [a.tessera, "bench", "--rounds", "1", "--steps", str(a.steps), "--image-size", str(size),
           "--channels", str(ch), "--threads", str(a.threads), "--", "--method", method,
           "--model", model, "--patch-size", str(patch), "--batch-size", str(batch)]
    out, rss = run(cmd, env)
    m = re.search(r"median: ([0-9.]+) ms/step, ([0-9.]+) images/s.*?= (\d+)% of the sgemm rate \(([0-9.]+) GFLOP/s\)"
                  r" = (\d+)% of the FMA peak", out)
    if not m:
        sys.exit(f"compare_pytorch: could not read tessera bench's summary line:\n{out[-2000:]}")
    ms = float(m.group(1))   # images/s from ms/step: tessera bench prints images/s rounded to whole images
    return {"ms": ms, "ips": batch * 1000.0 / ms, "share": int(m.group(5)), "rss": rss}


def torch_side(cfg, mode, env):
    """One PyTorch process; None when a max-autotune one does not finish (the reason printed)."""
    method, model, size, ch, patch, batch = CONFIGS[cfg]
    base = mode.removesuffix("-bf16")
    cmd = [a.python, os.path.join(HERE, "pytorch_step.py"), "--method", method, "--model", model, "--image-size", str(size),
           "--channels", str(ch), "--patch-size", str(patch), "--batch-size", str(batch),
           "--threads", str(a.threads), "--steps", str(a.steps), "--mode", base,
           "--warmup", "2" if base == "eager" else "3"] + (["--bf16"] if mode.endswith("-bf16") else [])
    autotune = mode == "max-autotune"
    try:
        out, rss = run(cmd, env, timeout=a.autotune_timeout if autotune else None, may_fail=autotune)
    except DidNotFinish as e:
        print(f"  ({mode} {e})")
        return None
    line = [l for l in out.splitlines() if l.startswith("{")]
    if not line:
        sys.exit(f"compare_pytorch: no result from pytorch_step.py:\n{out[-2000:]}")
    r = json.loads(line[-1])
    return {"ms": r["ms_per_step"], "ips": r["images_per_s"], "rss": rss}


env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
TORCH_SIDES = (["eager"] + ([] if a.no_compile else ["compile"]) + ([] if a.no_max_autotune else ["max-autotune"])
               + ([] if a.no_bf16 else ["eager-bf16"] + ([] if a.no_compile else ["compile-bf16"])))
sides = (["tessera"] + ([] if a.no_openblas else ["tessera-openblas"]) + (["tessera-onednn"] if a.onednn else [])
         + TORCH_SIDES)
# side → TESSERA_GEMM: Tessera's own GEMM, the linked OpenBLAS, the optional oneDNN
TESSERA_SIDES = {"tessera": "tessera", "tessera-openblas": "openblas", "tessera-onednn": "onednn"}
def cpu():
    """The CPU's model name and the flags that decide the products' speed (lscpu's, Linux)."""
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    name = re.search(r"model name\s*:\s*(.*)", text)
    flags = set((re.search(r"flags\s*:\s*(.*)", text) or re.search("(.*)", "")).group(1).split())
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return f"{name.group(1).strip() if name else 'unknown CPU'} ({' '.join(wanted) or 'no AVX2'})"


print(f"compare_pytorch: {cpu()}; {a.threads} threads, {a.rounds} rounds, {a.steps} timed steps per side per round")
rows = []
for cfg in a.configs.split(","):
    if cfg not in CONFIGS:
        sys.exit(f"compare_pytorch: unknown config {cfg!r}; use one of {', '.join(CONFIGS)}")
    method, model, size, ch, patch, batch = CONFIGS[cfg]
    print(f"\n{cfg}: {method.upper()} {model}/{patch} on {size}x{size}x{ch}, batch {batch}")
    res = {s: [] for s in sides}
    ratios = {s: [] for s in TESSERA_SIDES if s in sides}
    for r in range(a.rounds):
        order = sides[r % len(sides):] + sides[:r % len(sides)]
        got = {}
        for s in order:
            got[s] = tessera_side(cfg, env, TESSERA_SIDES[s]) if s in TESSERA_SIDES else torch_side(cfg, s, env)
            if got[s] is not None:
                res[s].append(got[s])
        best_torch = max(got[s]["ips"] for s in TORCH_SIDES if got[s] is not None)
        for t in ratios:
            ratios[t].append(got[t]["ips"] / best_torch)
        print(f"  round {r + 1} ({' → '.join(order)}): " +
              ", ".join(f"{s} {got[s]['ips']:.1f} img/s" if got[s] else f"{s} did not finish" for s in sides) + "; ratio " +
              ", ".join(f"{t} {ratios[t][-1]:.2f}x" for t in ratios))
    med = {s: statistics.median(x["ips"] for x in res[s]) for s in sides if res[s]}
    rss = {s: max(x["rss"] for x in res[s]) for s in sides if res[s]}
    # PyTorch's peak RSS: the larger of eager and compile, as before max-autotune was a side (its
    # autotuning processes would raise the bar the memory target is measured against)
    torch_rss = max(rss[s] for s in ("eager", "compile") if s in rss)
    for t in ratios:
        share = statistics.median(x["share"] for x in res[t])
        rows.append((t, method, model, patch, size, ch, batch, med, statistics.median(ratios[t]), share, rss[t], torch_rss))


def torch_cell(med, s):
    """A PyTorch side's median img/s; — when not run or it never finished."""
    return f"{med[s]:.1f}" if s in med else "—"


print(f"\nCPU: {cpu()}")
print("\n| configuration | Tessera GEMM | Tessera img/s | PyTorch eager | PyTorch compile | PyTorch max-autotune "
      "| PyTorch bf16 autocast eager | PyTorch bf16 autocast compile "
      "| ratio to the fastest PyTorch side (median of rounds) | Tessera FLOP/s share of the FMA peak | peak RSS Tessera / PyTorch (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for t, method, model, patch, size, ch, batch, med, ratio, share, trss, torch_rss in rows:
    build = {"tessera": "Tessera's own", "tessera-openblas": "OpenBLAS", "tessera-onednn": "oneDNN"}[t]
    print(f"| {method.upper()} {model}/{patch}, {size}×{size}×{ch}, batch {batch} | {build} | {med[t]:.1f} | "
          f"{torch_cell(med, 'eager')} | {torch_cell(med, 'compile')} | {torch_cell(med, 'max-autotune')} | "
          f"{torch_cell(med, 'eager-bf16')} | {torch_cell(med, 'compile-bf16')} | "
          f"{ratio:.2f}x | {share}% | {trss:.0f} / {torch_rss:.0f} ({trss / torch_rss:.2f}) |")
