"""The PyTorch side of Bench/compare_pytorch.sh: MAE training steps on the CPU, as the official code
runs them (models_mae.MaskedAutoencoderViT as reproduced in Tools/mae_reference.py, random masking by
argsort of uniform noise inside the forward, norm-pix loss, AdamW (0.9, 0.95) with weight decay 0.05
on every tensor but 1-D ones and biases, as timm's add_weight_decay), eager or under torch.compile.

Prints one JSON line: {"mode", "ms_per_step", "images_per_s", "steps"}; the caller measures memory.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tools"))
from mae_reference import mae_model  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--model", default="vit-tiny")
p.add_argument("--image-size", type=int, default=28)
p.add_argument("--channels", type=int, default=1)
p.add_argument("--patch-size", type=int, default=4)
p.add_argument("--depth", type=int, default=None)
p.add_argument("--batch-size", type=int, default=256)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--mode", choices=["eager", "compile"], default="eager")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = mae_model(a.model, a.image_size, a.patch_size, a.channels, depth=a.depth)
model.train()
decay = [q for n, q in model.named_parameters() if q.ndim > 1 and not n.endswith(".bias")]
no_decay = [q for n, q in model.named_parameters() if q.ndim <= 1 or n.endswith(".bias")]
opt = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                        lr=1.5e-4, betas=(0.9, 0.95))
run = torch.compile(model) if a.mode == "compile" else model
imgs = torch.randn(a.batch_size, a.channels, a.image_size, a.image_size)


def step():
    loss, _, _ = run(imgs, mask_ratio=0.75)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


for _ in range(a.warmup):   # torch.compile compiles here
    step()
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
print(json.dumps({"mode": a.mode, "ms_per_step": med * 1e3, "images_per_s": a.batch_size / med, "steps": a.steps}))
