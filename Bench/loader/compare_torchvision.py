"""Loader throughput, Tessera vs torchvision, per worker, on the same ImageFolder: read + decode +
RandomResizedCrop(224, scale=(0.2, 1), bicubic) + horizontal flip + normalize, batches of 64,
alternating A/B rounds, medians.

    python Bench/loader/compare_torchvision.py ROOT [--workers 1,2] [--rounds 3] [--batches 4] [--tessera .build/release/tessera]

torchvision: ImageFolder + DataLoader(num_workers=w, shuffle=True), images/s over --batches batches
after one warm-up batch per round (each DataLoader iterator starts its w worker processes first; that
start is not timed). Tessera: `tessera bench --data ROOT --loader-only --rounds 3 --loader-workers w` (the median
of 3 rounds of 2 batches after a warm-up batch), with its
default reduced decoding and with --full-decode (whole JPEG at full size, as PIL decodes it).
"""
import argparse, re, statistics, subprocess, time
import torch
from torchvision import datasets, transforms

ap = argparse.ArgumentParser()
ap.add_argument("root")
ap.add_argument("--workers", default="1,2")
ap.add_argument("--rounds", type=int, default=3)
ap.add_argument("--batches", type=int, default=12)
ap.add_argument("--batch-size", type=int, default=64)
ap.add_argument("--tessera", default=".build/release/tessera")
a = ap.parse_args()
workers = [int(w) for w in a.workers.split(",")]
torch.set_num_threads(1)
tf = transforms.Compose([
    transforms.RandomResizedCrop(224, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
    transforms.RandomHorizontalFlip(), transforms.ToTensor(),
    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
ds = datasets.ImageFolder(a.root, transform=tf)

def torchvision_rate(w):
    loader = torch.utils.data.DataLoader(ds, batch_size=a.batch_size, shuffle=True, num_workers=w, prefetch_factor=2,
                                         persistent_workers=False)
    it = iter(loader)
    next(it)   # workers started, warm
    t0 = time.perf_counter()
    n = 0
    for _ in range(a.batches):
        n += next(it)[0].shape[0]
    dt = time.perf_counter() - t0
    del it
    return n / dt

def tessera_rate(w, full):
    cmd = [a.tessera, "bench", "--data", a.root, "--loader-only", "--rounds", "3", "--loader-workers", str(w), "--threads", "1",
           "--", "--patch-size", "16", "--batch-size", str(a.batch_size)] + (["--full-decode"] if full else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    m = re.search(r"^\s*%d workers?\s+([0-9.]+) images/s" % w, out, re.M)
    return float(m.group(1))

results = {}
for r in range(a.rounds):
    for w in workers:
        sides = [("torchvision", lambda: torchvision_rate(w)), ("tessera", lambda: tessera_rate(w, False)),
                 ("tessera --full-decode", lambda: tessera_rate(w, True))]
        sides = sides[r % 3:] + sides[:r % 3]   # rotate the order per round
        for name, f in sides:
            v = f()
            results.setdefault((w, name), []).append(v)
            print(f"round {r + 1}, {w} worker(s): {name} {v:.1f} images/s", flush=True)

print(f"\n{a.root}: {len(ds)} images, batch {a.batch_size}, {a.rounds} rounds, medians (images/s per worker)")
print("| workers | torchvision (PIL) | Tessera | ratio | Tessera --full-decode | ratio |")
print("|---|---|---|---|---|---|")
for w in workers:
    tv = statistics.median(results[(w, "torchvision")]) / w
    te = statistics.median(results[(w, "tessera")]) / w
    tf_ = statistics.median(results[(w, "tessera --full-decode")]) / w
    print(f"| {w} | {tv:.1f} | {te:.1f} | {te / tv:.2f}x | {tf_:.1f} | {tf_ / tv:.2f}x |")
