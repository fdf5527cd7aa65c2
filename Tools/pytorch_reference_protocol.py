#!/usr/bin/env python3
"""The [2/4] reference protocol in PyTorch (developer tool, not part of CI): MAE with the official
architecture (Tools/mae_reference.py) on Fashion-MNIST, trained and probed exactly as `tessera
pretrain --depth 6 --epochs 10` and `tessera eval` do, to compare Tessera's accuracy with PyTorch's.

    python3 Tools/pytorch_reference_protocol.py --data /usr/share/datasets/fashion-mnist [--device cuda]

Recipe: vit-tiny encoder depth 6, decoder 128/2/4, patch 4 on 28x28x1, mask 0.75, norm-pix loss, batch
256, AdamW (0.9, 0.95) lr 1.5e-4 (blr 1.5e-4 x 256/256), weight decay 0.05 except 1-D tensors and
biases, per-iteration linear warmup (1 epoch) then cosine to 0, 10 epochs, RandomResizedCrop(28,
scale 0.2-1, bicubic) + horizontal flip + Normalize(0.286, 0.353). Probes on the CLS token after the
final norm: weighted kNN (cosine, k 20, T 0.07) and the linear probe of Tessera's Probes.linearProbe
(standardized features, AdamW lr 1e-3, batch 256, 30 epochs, cosine, no weight decay).
"""
import argparse
import gzip
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import MaskedAutoencoderViT  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--workers", type=int, default=8)
args = ap.parse_args()
torch.manual_seed(args.seed)
np.random.seed(args.seed)
dev = torch.device(args.device)


def idx(split):
    p = os.path.join(args.data, "train" if split == "train" else "t10k")
    x = np.frombuffer(gzip.open(p + "-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(p + "-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
    return x, y


xtr, ytr = idx("train")
xte, yte = idx("test")
MEAN, STD = 0.286, 0.353
train_tf = transforms.Compose([transforms.RandomResizedCrop(28, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize([MEAN], [STD])])


class DS(torch.utils.data.Dataset):
    def __len__(self):
        return len(xtr)

    def __getitem__(self, i):
        return train_tf(Image.fromarray(xtr[i], mode="L"))


loader = torch.utils.data.DataLoader(DS(), batch_size=256, shuffle=True, drop_last=True, num_workers=args.workers,
                                     persistent_workers=True)


def make_model():
    return MaskedAutoencoderViT(img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3,
                                decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, norm_pix_loss=True).to(dev)


def features(model, x):
    model.eval()
    out = []
    t = (torch.from_numpy(x).float().div(255).unsqueeze(1) - MEAN) / STD
    with torch.no_grad():
        for i in range(0, len(t), 1000):
            latent, _, _ = model.forward_encoder(t[i:i + 1000].to(dev), mask_ratio=0.0)
            out.append(latent[:, 0].float().cpu())
    return torch.cat(out)


def knn(tr, te, k=20, T=0.07):
    tr, te = F.normalize(tr, dim=1), F.normalize(te, dim=1)
    yt = torch.from_numpy(ytr)
    correct = 0
    for i in range(0, len(te), 1000):
        d, ix = (te[i:i + 1000] @ tr.T).topk(k, dim=1)
        votes = torch.zeros(len(d), 10).scatter_add_(1, yt[ix], (d / T).exp())
        correct += (votes.argmax(1) == torch.from_numpy(yte[i:i + 1000])).sum().item()
    return correct / len(te)


def linear_probe(tr, te, epochs=30):
    mean, std = tr.mean(0), tr.std(0, unbiased=False) + 1e-6
    tr, te = (tr - mean) / std, (te - mean) / std
    g = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(tr.shape[1], 10)
    torch.nn.init.zeros_(head.weight)
    torch.nn.init.zeros_(head.bias)
    opt = torch.optim.AdamW([{"params": [head.weight], "weight_decay": 0.0}, {"params": [head.bias], "weight_decay": 0.0}], lr=1e-3)
    y = torch.from_numpy(ytr)
    steps = math.ceil(len(tr) / 256)
    total, it = epochs * steps, 0
    for _ in range(epochs):
        perm = torch.randperm(len(tr), generator=g)
        for s in range(steps):
            ix = perm[s * 256:(s + 1) * 256]
            for pg in opt.param_groups:
                pg["lr"] = 1e-3 * 0.5 * (1 + math.cos(math.pi * it / total))
            loss = F.cross_entropy(head(tr[ix]), y[ix])
            opt.zero_grad()
            loss.backward()
            opt.step()
            it += 1
    with torch.no_grad():
        return (head(te).argmax(1) == torch.from_numpy(yte)).float().mean().item()


def evaluate(model, name):
    ftr, fte = features(model, xtr), features(model, xte)
    print(f"{name}: kNN {knn(ftr, fte) * 100:.2f}%  linear {linear_probe(ftr, fte) * 100:.2f}%", flush=True)


evaluate(make_model(), "random init")
model = make_model()
decay, no_decay = [], []
for n, p in model.named_parameters():
    if not p.requires_grad:
        continue
    (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=1.5e-4, betas=(0.9, 0.95))
ipe = len(loader)
t0 = time.time()
for epoch in range(args.epochs):
    model.train()
    tot = 0.0
    for i, imgs in enumerate(loader):
        e = epoch + i / ipe
        lr = 1.5e-4 * e if e < 1 else 1.5e-4 * 0.5 * (1 + math.cos(math.pi * (e - 1) / (args.epochs - 1)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        loss, _, _ = model(imgs.to(dev, non_blocking=True), mask_ratio=0.75)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tot += loss.item()
    print(f"epoch {epoch + 1}: loss {tot / ipe:.4f} ({time.time() - t0:.0f} s)", flush=True)
evaluate(model, f"MAE {args.epochs} epochs")
