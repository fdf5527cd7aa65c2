#!/usr/bin/env python3
"""The [2/4] reference protocol in PyTorch (developer tool, not part of CI): MAE with the official
architecture (Tools/mae_reference.py) on Fashion-MNIST, trained and probed exactly as `tessera
pretrain --depth 6 --epochs 10` and `tessera eval` do, to compare Tessera's accuracy with PyTorch's.

    python3 Tools/pytorch_reference_protocol.py --data /usr/share/datasets/fashion-mnist [--device cuda]
    python3 Tools/pytorch_reference_protocol.py --method sim [--epochs 10]   # SiameseIM, see below
    python3 Tools/pytorch_reference_protocol.py --method sim --blr 1e-3 --run DIR   # resumable: rerun it
    python3 Tools/pytorch_reference_protocol.py --method rcmae --run DIR            # RC-MAE, see below

With --run DIR the model, optimizer, epoch and random states are saved to DIR/last.pt after every epoch
(written to a temporary file, then renamed) and a rerun with the same --run resumes from it, so a run of
hours on CPUs survives an interruption; the data order and augmentations after a resume are those of an
uninterrupted run (each epoch's loader workers are seeded from the saved generator).

Recipe: vit-tiny encoder depth 6, decoder 128/2/4, patch 4 on 28x28x1, mask 0.75, norm-pix loss, batch
256, AdamW (0.9, 0.95) lr 1.5e-4 (blr 1.5e-4 x 256/256), weight decay 0.05 except 1-D tensors and
biases, per-iteration linear warmup (1 epoch) then cosine to 0, 10 epochs, RandomResizedCrop(28,
scale 0.2-1, bicubic) + horizontal flip + Normalize(0.286, 0.353). Probes on the CLS token after the
final norm: weighted kNN (cosine, k 20, T 0.07) and the linear probe of Tessera's Probes.linearProbe
(standardized features, AdamW lr 1e-3, batch 256, 30 epochs, cosine, no weight decay), and RankMe of
the test features. Rerun on a finished --run, it loads the last epoch and prints the probes again.

--method rcmae: RC-MAE (Lee et al., 2023) as `tessera pretrain --method rcmae --depth 6`: the MAE above as
the student plus an EMA copy of the whole MAE (encoder and decoder) as the teacher, which sees the same
images with the same mask; loss = MAE loss + 1 · MSE(student prediction, teacher prediction) over the
removed patches (per patch mean over its pixels, then mean over removed patches); teacher momentum
0.996 rising to 1 on a half cosine over all optimizer steps, updated after each step over every trained
tensor. The teacher is the probed model, as `tessera eval` probes the teacher a checkpoint holds.

--method sim: SiameseIM (Tools/sim_reference.py, the official forward and UniGrad loss) with Tessera's
`--method sim --depth 6` recipe: vit-tiny encoder depth 6 (patch embedding frozen), width 192,
projector 2 and predictor 4 BatchNorm blocks of 4 heads, block-wise mask of round(0.6 · 49) = 29 patches
(rectangles of at least 4), UniGrad negative weight 0.02 · 768 / 192, batch 256, AdamW (0.9, 0.95) lr
1e-3 (the release's lr; `--blr 6.25e-5` is its blr scaled linearly to batch 256), weight decay 0.05, gradient norm clipped to 1, warmup 1 epoch then cosine, EMA momentum
cosine 0.995 → 1. Views: RandomResizedCrop(28, scale 0.08-1, bicubic) + flip each, their boxes kept for
the geometry; on these one-channel images the photometric part is brightness/contrast jitter 0.4 (p 0.8)
on both, Gaussian blur (sigma 0.1-2 px at 224 px, scaled to 28 px) p 1.0 on view 1 and 0.1 on view 2,
solarize p 0.2 on view 2.
"""
import argparse
import gzip
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import MaskedAutoencoderViT  # noqa: E402
from sim_reference import SiameseIM, rel_pos_21  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
ap.add_argument("--method", choices=["mae", "rcmae", "sim"], default="mae")
ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
ap.add_argument("--epochs", type=int, default=10)
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--workers", type=int, default=8)
ap.add_argument("--limit", type=int, default=None, help="train on the first N images only (a quick check of the script)")
ap.add_argument("--blr", type=float, default=None, help="base learning rate (lr = blr x 256 / 256); default MAE 1.5e-4, SIM 1e-3 (Tessera's SIM recipe; the release's linear scaling: 6.25e-5)")
ap.add_argument("--run", default=None, help="checkpoint directory: saved after every epoch, resumed from when present")
args = ap.parse_args()
torch.manual_seed(args.seed)
np.random.seed(args.seed)
random.seed(args.seed)
dev = torch.device(args.device)


def idx(split):
    p = os.path.join(args.data, "train" if split == "train" else "t10k")
    x = np.frombuffer(gzip.open(p + "-images-idx3-ubyte.gz").read(), np.uint8, offset=16).reshape(-1, 28, 28)
    y = np.frombuffer(gzip.open(p + "-labels-idx1-ubyte.gz").read(), np.uint8, offset=8).astype(np.int64)
    return x, y


xtr, ytr = idx("train")
xtr, ytr = xtr[:args.limit], ytr[:args.limit]
xte, yte = idx("test")
MEAN, STD = 0.286, 0.353
train_tf = transforms.Compose([transforms.RandomResizedCrop(28, scale=(0.2, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.RandomHorizontalFlip(), transforms.ToTensor(), transforms.Normalize([MEAN], [STD])])


class DS(torch.utils.data.Dataset):
    def __len__(self):
        return len(xtr)

    def __getitem__(self, i):
        return train_tf(Image.fromarray(xtr[i], mode="L"))


def sim_view(img, blur_p, solarize_p):
    """One SIM view of a PIL image: crop box (top, left, height, width, flipped) and the tensor."""
    t, l, h, w = transforms.RandomResizedCrop.get_params(img, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3))
    v = img.crop((l, t, l + w, t + h)).resize((28, 28), Image.BICUBIC)
    flipped = random.random() < 0.5
    if flipped:
        v = v.transpose(Image.FLIP_LEFT_RIGHT)
    if random.random() < 0.8:
        v = transforms.ColorJitter(brightness=0.4, contrast=0.4)(v)
    if random.random() < blur_p:
        v = v.filter(ImageFilter.GaussianBlur(radius=random.uniform(0.1, 2.0) * 28 / 224))
    if random.random() < solarize_p:
        v = ImageOps.solarize(v, 128)
    box = torch.tensor([t, l, h, w, float(flipped)])
    return box, transforms.Normalize([MEAN], [STD])(transforms.ToTensor()(v))


def block_mask(grid=7, count=29, min_patches=4):
    """BEiT's block-wise generator as SIM uses it: rectangles (area ≥ min_patches, aspect 0.3-3.3) until
    `count` patches are masked, topped up at random to exactly `count`. True = masked."""
    mask = np.zeros((grid, grid), dtype=bool)
    masked = 0
    while masked < count:
        room, delta = count - masked, 0
        for _ in range(10):
            area = random.uniform(min(min_patches, room), room)
            aspect = math.exp(random.uniform(math.log(0.3), math.log(1 / 0.3)))
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if not (0 < h < grid and 0 < w < grid):
                continue
            top, left = random.randint(0, grid - h), random.randint(0, grid - w)
            new = h * w - mask[top:top + h, left:left + w].sum()
            if 0 < new <= room:
                mask[top:top + h, left:left + w] = True
                delta = new
                break
        if delta == 0:
            break
        masked += delta
    free = np.flatnonzero(~mask.reshape(-1))
    extra = np.random.choice(free, count - masked, replace=False) if count > masked else []
    flat = mask.reshape(-1)
    flat[extra] = True
    return flat


class SimDS(torch.utils.data.Dataset):
    def __len__(self):
        return len(xtr)

    def __getitem__(self, i):
        img = Image.fromarray(xtr[i], mode="L")
        b1, v1 = sim_view(img, 1.0, 0.0)
        b2, v2 = sim_view(img, 0.1, 0.2)
        keep = torch.from_numpy(np.flatnonzero(~block_mask()))   # visible patches, index order (official)
        return v1, v2, b1, b2, keep


def seed_worker(worker):
    # torch gives each epoch's workers base_seed + worker, base_seed drawn from the main generator: the
    # augmentations follow --seed and survive a resume (the generator's state is in the checkpoint).
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


loader = torch.utils.data.DataLoader(SimDS() if args.method == "sim" else DS(), batch_size=256, shuffle=True, drop_last=True,
                                     num_workers=args.workers, worker_init_fn=seed_worker)


def make_model():
    if args.method == "sim":
        return SiameseIM(img=28, p=4, c=1, dim=192, depth=6, heads=3, width=192, proj_depth=2, pred_depth=4, dec_heads=4,
                         norm="batch", neg_weight=0.02 * 768 / 192).initialize().to(dev)
    return MaskedAutoencoderViT(img_size=28, patch_size=4, in_chans=1, embed_dim=192, depth=6, num_heads=3,
                                decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4, norm_pix_loss=True).to(dev)


def features(model, x):
    model.eval()
    out = []
    t = (torch.tensor(x).float().div(255).unsqueeze(1) - MEAN) / STD   # a copy: x may be a read-only buffer
    with torch.no_grad():
        for i in range(0, len(t), 1000):
            if args.method == "sim":   # the online encoder's CLS after its final norm, as `tessera eval`
                enc = model.online
                x = enc.patch_embed(t[i:i + 1000].to(dev)) + enc.pos_embed[:, 1:]
                x = torch.cat([enc.cls_token.expand(len(x), -1, -1) + enc.pos_embed[:, :1], x], dim=1)
                for b in enc.blocks:
                    x = b(x)
                out.append(enc.norm(x)[:, 0].float().cpu())
                continue
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


def rankme(f):
    """RankMe (Garrido et al., 2023) as `tessera eval`: exp of the entropy of sigma_k / sum(sigma) over the
    singular values of the uncentered feature matrix; 1 = collapsed, the width = a flat spectrum."""
    s = torch.linalg.svdvals(f.double())
    p = s[s > 0] / s.sum()
    return math.exp(-(p * p.log()).sum().item())


def evaluate(model, name):
    ftr, fte = features(model, xtr), features(model, xte)
    print(f"{name}: kNN {knn(ftr, fte) * 100:.2f}%  linear {linear_probe(ftr, fte) * 100:.2f}%  "
          f"RankMe {rankme(fte):.1f}", flush=True)


def ema_update(teacher, student, m):
    """RC-MAE's teacher: teacher <- m * teacher + (1 - m) * student over every trained tensor."""
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), student.parameters()):
            if s.requires_grad:
                t.mul_(m).add_(s.detach(), alpha=1 - m)


def teacher_momentum(step, total, start):
    """Cosine from `start` (step 0) to 1 (the last step), as Tessera's EMA schedules."""
    return 1 - (1 - start) * (math.cos(math.pi * min(step / total, 1.0)) + 1) / 2


ckpt = os.path.join(args.run, "last.pt") if args.run else None
resume = torch.load(ckpt, weights_only=False) if ckpt and os.path.exists(ckpt) else None
if resume is None:
    evaluate(make_model(), "random init")
model = make_model()
teacher = None
if args.method == "rcmae":   # an identical start, never trained by the optimizer
    teacher = make_model()
    teacher.load_state_dict(model.state_dict())
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
decay, no_decay = [], []
for n, p in model.named_parameters():
    if not p.requires_grad:
        continue
    (no_decay if p.ndim <= 1 or n.endswith(".bias") else decay).append(p)
base_lr = args.blr if args.blr is not None else 1e-3 if args.method == "sim" else 1.5e-4   # blr · 256 / 256
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=base_lr, betas=(0.9, 0.95))
ipe = len(loader)
t0 = time.time()
first = 0
settings = {"method": args.method, "blr": base_lr, "epochs": args.epochs, "seed": args.seed, "limit": args.limit}
if resume is not None:
    if resume["settings"] != settings:
        sys.exit(f"{ckpt} was written with {resume['settings']}; rerun with those settings or another --run")
    model.load_state_dict(resume["model"])
    if teacher is not None:
        teacher.load_state_dict(resume["teacher"])
    opt.load_state_dict(resume["optimizer"])
    torch.set_rng_state(resume["torch_rng"])
    np.random.set_state(resume["numpy_rng"])
    random.setstate(resume["python_rng"])
    first = resume["epoch"]
    print(f"resumed from {ckpt} after epoch {first}", flush=True)
elif args.run:
    os.makedirs(args.run, exist_ok=True)
for epoch in range(first, args.epochs):
    model.train()
    tot = 0.0
    for i, batch in enumerate(loader):
        e = epoch + i / ipe
        lr = base_lr * e if e < 1 else base_lr * 0.5 * (1 + math.cos(math.pi * (e - 1) / (args.epochs - 1)))
        for pg in opt.param_groups:
            pg["lr"] = lr
        if args.method == "sim":
            v1, v2, b1, b2, keep = batch
            loss, _, _ = model(v1.to(dev), v2.to(dev), keep.to(dev), [r.to(dev) for r in rel_pos_21(b1, b2, 28)])
        elif args.method == "rcmae":
            x = batch.to(dev, non_blocking=True)
            noise = torch.rand(x.shape[0], model.pos_embed.shape[1] - 1, device=dev)   # one mask for both
            mae_loss, pred, mask = model(x, mask_ratio=0.75, noise=noise)
            with torch.no_grad():
                latent, _, ids_restore = teacher.forward_encoder(x, 0.75, noise)
                target = teacher.forward_decoder(latent, ids_restore)
            consistency = (((pred - target) ** 2).mean(dim=-1) * mask).sum() / mask.sum()
            loss = mae_loss + consistency   # gamma = 1, Tessera's RC-MAE default
        else:
            loss, _, _ = model(batch.to(dev, non_blocking=True), mask_ratio=0.75)
        opt.zero_grad()
        loss.backward()
        if args.method == "sim":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step, total = epoch * ipe + i + 1, args.epochs * ipe   # counted after the update, as Tessera's
        if args.method == "sim":
            model.update_target(teacher_momentum(step, total, 0.995))
        if teacher is not None:
            ema_update(teacher, model, teacher_momentum(step, total, 0.996))
        tot += loss.item()
    print(f"epoch {epoch + 1}: loss {tot / ipe:.4f} ({time.time() - t0:.0f} s)", flush=True)
    if ckpt:
        state = {"settings": settings, "epoch": epoch + 1, "model": model.state_dict(),
                 "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                 "python_rng": random.getstate()}
        if teacher is not None:
            state["teacher"] = teacher.state_dict()
        torch.save(state, ckpt + ".tmp")
        os.replace(ckpt + ".tmp", ckpt)
evaluate(teacher if teacher is not None else model, f"{args.method.upper()} {args.epochs} epochs")
