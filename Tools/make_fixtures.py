#!/usr/bin/env python3
"""Writes the PyTorch golden fixtures checked by Tests/CKernelsTests (developer-only; CI never runs it).

    python3 -m venv .venv && .venv/bin/pip install torch numpy
    .venv/bin/python Tools/make_fixtures.py

Each fixture is a small JSON file {"name": {"shape": [...], "data": [...]}} of float32 values. The
PyTorch side follows the official MAE code (models_mae.py, util/pos_embed.py) and torch.nn semantics.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "CKernelsTests", "Fixtures")
torch.manual_seed(0)


def T(t):
    t = torch.as_tensor(t).detach().to(torch.float32).contiguous()
    return {"shape": list(t.shape), "data": [float(v) for v in t.reshape(-1).tolist()]}


def save(name, **tensors):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump({k: T(v) for k, v in tensors.items()}, f)
    print("wrote", name, {k: list(torch.as_tensor(v).shape) for k, v in tensors.items()})


def mae_patchify(imgs, p):
    # models_mae.py patchify, with h and w taken separately and the channel count from the input.
    n, c, H, W = imgs.shape
    h, w = H // p, W // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


def probe(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g) * 2 - 1


# 1. patchify order, RGB and single-channel, non-square image.
imgs3 = torch.randn(2, 3, 8, 12)
imgs1 = torch.randn(2, 1, 8, 8)
save("patchify", imgs3=imgs3, patches3=mae_patchify(imgs3, 4), imgs1=imgs1, patches1=mae_patchify(imgs1, 2))

# 2. LayerNorm eps 1e-6 (MAE's norm_layer), forward and backward.
x = torch.randn(5, 24, requires_grad=True)
ln = torch.nn.LayerNorm(24, eps=1e-6)
with torch.no_grad():
    ln.weight.copy_(torch.randn(24)); ln.bias.copy_(torch.randn(24))
y = ln(x); r = probe(y.shape, 1); (y * r).sum().backward()
save("layernorm", x=x, weight=ln.weight, bias=ln.bias, out=y, probe=r, dx=x.grad, dweight=ln.weight.grad, dbias=ln.bias.grad)

# 3. exact-erf GELU (nn.GELU()), including the tails.
x = torch.cat([torch.linspace(-8, 8, 41), torch.randn(23)]).requires_grad_()
y = torch.nn.GELU()(x); r = probe(y.shape, 2); (y * r).sum().backward()
save("gelu", x=x, out=y, probe=r, dx=x.grad)

# 4. timm attention: one qkv Linear output, reshape (B, N, 3, H, D), scale D^-0.5.
B, N, H, D = 2, 7, 2, 8
qkv = torch.randn(B, N, 3 * H * D, requires_grad=True)
q, k, v = qkv.reshape(B, N, 3, H, D).permute(2, 0, 3, 1, 4)
attn = ((q @ k.transpose(-2, -1)) * D ** -0.5).softmax(dim=-1)
y = (attn @ v).transpose(1, 2).reshape(B, N, H * D)
sdpa = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, H * D)
assert torch.allclose(y, sdpa, atol=1e-5)
r = probe(y.shape, 3); (y * r).sum().backward()
save("attention", qkv=qkv, out=y, probe=r, dqkv=qkv.grad)


# 5. MAE's 2-D sin-cos table, as util/pos_embed.py computes it (float64, then float32).
def get_1d(E, pos):
    omega = np.arange(E // 2, dtype=np.float64) / (E / 2.0)
    omega = 1.0 / 10000 ** omega
    out = np.einsum("m,d->md", pos.reshape(-1), omega)
    return np.concatenate([np.sin(out), np.cos(out)], axis=1)


def get_2d(E, G, cls):
    gh = np.arange(G, dtype=np.float32); gw = np.arange(G, dtype=np.float32)
    grid = np.meshgrid(gw, gh)  # w goes first
    grid = np.stack(grid, axis=0).reshape([2, 1, G, G])
    emb = np.concatenate([get_1d(E // 2, grid[0]), get_1d(E // 2, grid[1])], axis=1)
    if cls:
        emb = np.concatenate([np.zeros([1, E]), emb], axis=0)
    return emb


save("sincos", d16_g3=get_2d(16, 3, True)[None], d192_g7=get_2d(192, 7, True)[None])

# 6. AdamW against torch.optim.AdamW with MAE's groups (decay on the matrix, not on the bias).
w = torch.randn(3, 4, requires_grad=True); b = torch.randn(4, requires_grad=True)
w0, b0 = w.detach().clone(), b.detach().clone()
opt = torch.optim.AdamW([{"params": [w], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.0}],
                        lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
grads, after = {}, {}
for step in range(3):
    gw_, gb_ = torch.randn(3, 4), torch.randn(4)
    w.grad, b.grad = gw_.clone(), gb_.clone()
    opt.step()
    grads[f"gw{step}"], grads[f"gb{step}"] = gw_, gb_
    after[f"w{step}"], after[f"b{step}"] = w.detach().clone(), b.detach().clone()
save("adamw", w_init=w0, b_init=b0, **grads, **after)

# 7. softmax / log-softmax / soft-target cross-entropy, with large logits for stability.
x = (torch.randn(4, 9) * 30).requires_grad_()
t = torch.softmax(torch.randn(4, 9), dim=-1)
sm = torch.softmax(x, -1); lsm = torch.log_softmax(x, -1); ce = -(t * torch.log_softmax(x, -1)).sum(-1)
r1, r2, r3 = probe(sm.shape, 4), probe(lsm.shape, 5), probe(ce.shape, 6)
dx_sm, = torch.autograd.grad((sm * r1).sum(), x)
dx_lsm, = torch.autograd.grad((lsm * r2).sum(), x)
dx_ce, = torch.autograd.grad((ce * r3).sum(), x)
save("softmax", x=x, target=t, softmax=sm, log_softmax=lsm, cross_entropy=ce, r_softmax=r1, r_log_softmax=r2,
     r_cross_entropy=r3, dx_softmax=dx_sm, dx_log_softmax=dx_lsm, dx_cross_entropy=dx_ce)

# 8. MAE norm-pix target: unbiased variance, eps 1e-6 inside the sqrt.
x = torch.randn(6, 12) * 3 + 1
mean = x.mean(dim=-1, keepdim=True); var = x.var(dim=-1, keepdim=True)
save("normpix", x=x, out=(x - mean) / (var + 1.e-6) ** .5)

# 9. BatchNorm1d in training mode: output, running statistics after one batch, gradients.
bn = torch.nn.BatchNorm1d(5)
with torch.no_grad():
    bn.weight.copy_(torch.randn(5)); bn.bias.copy_(torch.randn(5))
x = (torch.randn(8, 5) * 2 + 0.5).requires_grad_()
y = bn(x); r = probe(y.shape, 7); (y * r).sum().backward()
bn.eval(); y_eval = bn(x.detach())
save("batchnorm", x=x, weight=bn.weight, bias=bn.bias, out=y, probe=r, dx=x.grad, dweight=bn.weight.grad,
     dbias=bn.bias.grad, running_mean=bn.running_mean, running_var=bn.running_var, out_eval=y_eval)

# 10. MAE random_masking and the decoder's unshuffle (models_mae.py), as float tensors.
Bm, L, Dm, ratio = 3, 16, 4, 0.75
len_keep = int(L * (1 - ratio))
noise = torch.rand(Bm, L)
ids_shuffle = torch.argsort(noise, dim=1); ids_restore = torch.argsort(ids_shuffle, dim=1)
ids_keep = ids_shuffle[:, :len_keep]
xin = torch.randn(Bm, L, Dm)
x_masked = torch.gather(xin, 1, ids_keep.unsqueeze(-1).repeat(1, 1, Dm))
mask = torch.ones(Bm, L); mask[:, :len_keep] = 0; mask = torch.gather(mask, 1, ids_restore)
cls = torch.randn(Bm, 1, Dm); mask_token = torch.randn(1, 1, Dm)
xd = torch.cat([cls, x_masked], 1)
mask_tokens = mask_token.repeat(Bm, L + 1 - xd.shape[1], 1)
x_ = torch.cat([xd[:, 1:, :], mask_tokens], 1)
x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, Dm))
unshuffled = torch.cat([xd[:, :1, :], x_], 1)
save("masking", noise=noise, x=xin, x_masked=x_masked, mask=mask, ids_restore=ids_restore.float(),
     ids_keep=ids_keep.float(), decoder_in=xd, mask_token=mask_token, unshuffled=unshuffled)
