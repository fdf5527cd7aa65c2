"""The PyTorch side of Bench/compare_pytorch.sh: training steps on the CPU, eager, under torch.compile, or
under torch.compile(mode="max-autotune") (Inductor benchmarks its GEMM candidates, its C++ GEMM
templates among them on CPU, at the first steps).

--method mae: as the official code runs them (models_mae.MaskedAutoencoderViT as reproduced in
Tools/mae_reference.py, random masking by argsort of uniform noise inside the forward, norm-pix loss,
AdamW (0.9, 0.95) with weight decay 0.05 on every tensor but 1-D ones and biases, as timm's
add_weight_decay).

--method msn: the same step as Tessera's MSN (Sources/Models/MSN.swift, the official recipe with the
view sizes adapted to small images): an EMA target network on one full view, an anchor network on a
full view with 15% of the patches dropped (one permutation for the batch) and on 4 focal views of
12 px (positions bicubically resized from the full grid), projection head fc1-BN-GELU-fc2-BN-GELU-fc3,
1024 prototypes, τ 0.1, sharpening T 0.25, 3 Sinkhorn iterations, ME-MAX, AdamW (0.9, 0.999) with
weight decay 0.04 (none on prototypes, 1-D tensors, biases), gradient clipping 3, EMA update.

--method sim: the same step as Tessera's SIM (Sources/Models/SIM.swift): online branch = encoder
without final norm on the 40% visible patches of view 1 (frozen patch projection), decoder_embed, 2
projector blocks; predictor = 4 blocks over [CLS, visible tokens + positions, mask token + MLP of the
relative positions of all view-2 patches]; target = EMA branch on the full view 2, LayerNorm without
affine; UniGrad loss; BatchNorm in projector and predictor blocks; AdamW (0.9, 0.95), clipping 1. The
block masks and relative positions, which Tessera computes per sample on the CPU, are replaced here by
random kept sets and random positions of the same shapes (their cost is not in the comparison).

Prints one JSON line: {"mode", "ms_per_step", "images_per_s", "steps"}; the caller measures memory.
"""
import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tools"))
from mae_reference import Block, PatchEmbed, mae_model, sincos_pos_embed  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--method", choices=["mae", "msn", "sim"], default="mae")
p.add_argument("--model", default="vit-tiny")
p.add_argument("--image-size", type=int, default=28)
p.add_argument("--channels", type=int, default=1)
p.add_argument("--patch-size", type=int, default=4)
p.add_argument("--depth", type=int, default=None)
p.add_argument("--batch-size", type=int, default=256)
p.add_argument("--threads", type=int, required=True)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--mode", choices=["eager", "compile", "max-autotune"], default="eager")
p.add_argument("--bf16", action="store_true",
               help="the forward under torch.autocast(\"cpu\", dtype=torch.bfloat16), the one line a PyTorch user adds for bf16")
a = p.parse_args()

torch.set_num_threads(a.threads)
torch.manual_seed(0)


def compiled(fn):
    """fn as --mode runs it: itself (eager), torch.compile(fn), or torch.compile(fn, mode="max-autotune");
    with --bf16, called under bf16 autocast (the backward then follows the forward's dtypes)."""
    if a.mode != "eager":
        fn = torch.compile(fn, mode="max-autotune" if a.mode == "max-autotune" else None)
    if not a.bf16:
        return fn

    def autocast(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return fn(*args, **kwargs)
    return autocast


SIZES = {"vit-tiny": (192, 12, 3), "vit-small": (384, 12, 6), "vit-base": (768, 12, 12)}


def param_groups(named):
    """timm's add_weight_decay: no decay on 1-D tensors and biases."""
    decay = [q for n, q in named if q.ndim > 1 and not n.endswith(".bias")]
    rest = [q for n, q in named if not (q.ndim > 1 and not n.endswith(".bias"))]
    return decay, rest


def online_and_target(net_class):
    """The online network and its EMA target (a frozen copy), at the size --model/--depth ask for."""
    dim, depth, heads = SIZES[a.model]
    depth = a.depth or depth
    online, target = net_class(dim, depth, heads), net_class(dim, depth, heads)
    target.load_state_dict(online.state_dict())
    for q in target.parameters():
        q.requires_grad_(False)
    return dim, online, target


@torch.no_grad()
def ema_update(target, source, m):
    for t, s_ in zip(target.parameters(), source.parameters()):
        t.mul_(m).add_(s_, alpha=1 - m)


class ViTTrunk(nn.Module):
    """Tessera's ViTEncoder: patch embedding, CLS token, fixed sin-cos positions (bicubically resized for
    a smaller view), blocks. `keep` selects patches: [K] shared by the batch, or [B, K] per sample."""
    def __init__(self, dim, depth, heads):
        super().__init__()
        self.grid = a.image_size // a.patch_size
        self.patch_embed = PatchEmbed(a.patch_size, a.channels, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_pos_embed(dim, self.grid))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])

    def tokens(self, x, keep=None):
        x = self.patch_embed(x)
        g = int(round(x.shape[1] ** 0.5))
        pos = self.pos_embed[:, 1:]
        if g != self.grid:
            pos = pos.reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
            pos = F.interpolate(pos, size=(g, g), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, g * g, -1)
        x = x + pos
        if keep is not None:
            x = x[:, keep] if keep.ndim == 1 else torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1) + self.pos_embed[:, :1], x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return x


class MSNEncoder(ViTTrunk):
    """The trunk with the final norm; MSN uses the CLS token."""
    def __init__(self, dim, depth, heads):
        super().__init__(dim, depth, heads)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x, keep=None):
        return self.norm(self.tokens(x, keep))[:, 0]


class MSNNet(nn.Module):
    def __init__(self, dim, depth, heads, hidden=2048, out=256):
        super().__init__()
        self.encoder = MSNEncoder(dim, depth, heads)
        self.fc = nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.GELU(),
                                nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, x, keep=None):
        return self.fc(self.encoder(x, keep))


def msn_loss(za, zt, protos, B, tau=0.1, T=0.25, iters=3):
    pn = F.normalize(protos, dim=1)
    logits = F.normalize(za, dim=1) @ pn.t() / tau
    with torch.no_grad():
        t = F.softmax(F.normalize(zt, dim=1) @ pn.t() / tau, dim=1) ** (1 / T)
        t = t / t.sum(1, keepdim=True)
        q = t / t.sum()
        K = q.shape[1]
        for _ in range(iters):
            q = q / (q.sum(0, keepdim=True) * K)
            q = q / (q.sum(1, keepdim=True) * B)
        targets = (q * B).repeat(za.shape[0] // B, 1)
    ce = torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()
    mp = F.softmax(logits, dim=1).mean(0)
    return ce + torch.sum(mp * torch.log(mp)) + math.log(mp.shape[0])


class TokenBN(nn.Module):
    """BatchNorm1d over all tokens of a [B, N, D] sequence (SIM's block norm)."""
    def __init__(self, dim):
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, x):
        return self.bn(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def bn_block(dim, heads):
    blk = Block(dim, heads)
    blk.norm1, blk.norm2 = TokenBN(dim), TokenBN(dim)
    return blk


class SIMBranch(ViTTrunk):
    """The trunk without final norm, decoder_embed, and the projector blocks."""
    def __init__(self, dim, depth, heads):
        super().__init__(dim, depth, heads)
        self.decoder_embed = nn.Linear(dim, dim)
        self.projector = nn.ModuleList([bn_block(dim, 4) for _ in range(2)])   # SIMOptions.decoderHeads

    def forward(self, x, keep=None):
        x = self.decoder_embed(self.tokens(x, keep))
        for blk in self.projector:
            x = blk(x)
        return x


imgs = torch.randn(a.batch_size, a.channels, a.image_size, a.image_size)
if a.method == "mae":
    model = mae_model(a.model, a.image_size, a.patch_size, a.channels, depth=a.depth)
    model.train()
    decay, no_decay = param_groups(list(model.named_parameters()))
    opt = torch.optim.AdamW([{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                            lr=1.5e-4, betas=(0.9, 0.95))
    run = compiled(model)

    def step():
        loss, _, _ = run(imgs, mask_ratio=0.75)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
elif a.method == "sim":
    dim, online, target = online_and_target(SIMBranch)
    for q in online.patch_embed.parameters():
        q.requires_grad_(False)
    mask_token = nn.Parameter(torch.zeros(1, 1, dim))
    pos_mlp = nn.Linear(2 * dim, dim)
    predictor = nn.ModuleList([bn_block(dim, 4) for _ in range(4)])
    pred_head = nn.Linear(dim, dim)
    extra = nn.ModuleList([pos_mlp, predictor, pred_head])
    named = [(n, q) for n, q in online.named_parameters() if q.requires_grad] + list(extra.named_parameters())
    decay, no_decay = param_groups(named)
    opt = torch.optim.AdamW([{"params": no_decay + [mask_token], "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.05}],
                            lr=1e-4, betas=(0.9, 0.95))
    online.train(); target.train(); extra.train()
    x2 = torch.randn(a.batch_size, a.channels, a.image_size, a.image_size)
    L = (a.image_size // a.patch_size) ** 2
    K = L - int(round(0.6 * L))
    rel = torch.randn(a.batch_size, L, 2 * dim)
    vis_pos = torch.randn(a.batch_size, K, dim)
    tnorm = nn.LayerNorm(dim, eps=1e-5, elementwise_affine=False)

    def forward_loss(x1, x2, keep):
        proj = online(x1, keep)
        queries = pos_mlp(rel) + mask_token
        seq = torch.cat([proj[:, :1], proj[:, 1:] + vis_pos, queries], dim=1)
        for blk in predictor:
            seq = blk(seq)
        p = pred_head(seq[:, 1 + K:]).reshape(-1, dim)
        with torch.no_grad():
            t = tnorm(target(x2)[:, 1:].reshape(-1, dim))
            C = t.t() @ t / t.shape[0]
        w = 0.02 * 768 / dim
        return (((p - t) ** 2).sum(1).mean() + w * ((p @ C) * p).sum(1).mean()) / dim

    run = compiled(forward_loss)
    params = [q for _, q in named] + [mask_token]

    def step():
        keep = torch.rand(a.batch_size, L).argsort(dim=1)[:, :K]
        loss = run(imgs, x2, keep)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema_update(target, online, 0.995)
else:
    dim, anchor, target = online_and_target(MSNNet)
    protos = nn.Parameter(torch.empty(1024, 256).uniform_(-1 / 16, 1 / 16))
    decay, no_decay = param_groups(list(anchor.named_parameters()))
    opt = torch.optim.AdamW([{"params": no_decay + [protos], "weight_decay": 0.0}, {"params": decay, "weight_decay": 0.04}],
                            lr=1e-3, betas=(0.9, 0.999))
    anchor.train(); target.train()
    focal = torch.randn(4 * a.batch_size, a.channels, 12, 12)
    L = (a.image_size // a.patch_size) ** 2
    keep_n = L - int(L * 0.15)

    def forward_loss(x, xf, keep):
        with torch.no_grad():
            zt = target(x)
        za = torch.cat([anchor(x, keep), anchor(xf)], dim=0)
        return msn_loss(za, zt, protos, x.shape[0])

    run = compiled(forward_loss)

    def step():
        keep = torch.randperm(L)[:keep_n].sort().values
        loss = run(imgs, focal, keep)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(anchor.parameters()) + [protos], 3.0)
        opt.step()
        ema_update(target, anchor, 0.996)


for _ in range(a.warmup):   # torch.compile compiles (and max-autotune benchmarks) here
    step()
times = []
for _ in range(a.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
print(json.dumps({"method": a.method, "mode": a.mode + ("-bf16" if a.bf16 else ""), "ms_per_step": med * 1e3, "images_per_s": a.batch_size / med, "steps": a.steps}))
