"""A PyTorch SiameseIM written from the official code's specification (OpenGVLab's
Siamese-Image-Modeling, `SiameseIMViT.forward_sim` and `compute_unigrad_loss`, as summarized in
../shared/reference/msn_sim.md), with Tessera's parameter names, so the same weights load on both
sides. Used by Tools/make_model_fixtures.py for the SIM parity fixture (developer-only; CI never runs
PyTorch).

What it follows from the official code:
  * online: patch embedding + fixed positions, visible view-1 tokens only, CLS (position 0), the
    encoder blocks without a final norm, `decoder_embed`, the projector blocks;
  * predictor input: CLS + row-first position 0 (zeros), visible tokens + their row-first sin-cos
    positions, and per view-2 patch `mask_token + decoder_pos_mlp(relative embedding)`, where the
    relative embedding is `get_2d_sincos_pos_embed_relative`'s [sin/cos of the row, of the column, of
    10·log(Δh), of 10·log(Δw)] with the column mirrored under a relative flip;
  * the predictor blocks, `decoder_pred`, the last L tokens;
  * target (no gradient): the EMA branch on all of view 2 with its CLS, patch tokens, LayerNorm
    without affine (eps 1e-5);
  * UniGrad: (mean ‖p − t‖² + w · mean diag(p C pᵀ)) / D with C = tᵀt / N.
Projector and predictor norms are LayerNorm (eps 1e-6) or BatchNorm over all tokens (the official
PermuteBN: BatchNorm1d over N and L, which is BatchNorm over the flattened rows).

Two inputs are given rather than drawn, so both sides see the same: the visible patches of each
image (in the order Tessera's encoder takes them; the official code keeps them in index order, which
changes no output: the blocks treat tokens as a set), and the crop geometry as the official
`rel_pos_21` tuple (Δi, Δj, Δh, Δw, relative flip, flipped Δj).
"""
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import Attention, Mlp, PatchEmbed  # noqa: E402


def sincos_row_first(dim, rows, cols):
    """[sin(y ω), cos(y ω), sin(x ω), cos(x ω)], ω_k = 10000^(−k/(dim/4)): SIM's util/pos_embed.py
    tables (row first), for float32 coordinate tensors of any shape [..., n]."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim / 4))
    a = rows.unsqueeze(-1) * omega
    b = cols.unsqueeze(-1) * omega
    return torch.cat([torch.sin(a), torch.cos(a), torch.sin(b), torch.cos(b)], dim=-1)


def grid_table(dim, grid):
    """The fixed table of a grid, computed in float64 as numpy does there, then float32."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    r = torch.arange(grid, dtype=torch.float64).repeat_interleave(grid)
    c = torch.arange(grid, dtype=torch.float64).repeat(grid)
    a, b = r.unsqueeze(-1) * omega, c.unsqueeze(-1) * omega
    return torch.cat([torch.sin(a), torch.cos(a), torch.sin(b), torch.cos(b)], dim=-1).float()


def relative_embedding(delta_i, delta_j, delta_h, delta_w, relative_flip, flip_delta_j, dim, grid):
    """get_2d_sincos_pos_embed_relative: per image [L, 2·dim] (position, then scale)."""
    rh = torch.arange(grid, dtype=torch.float32).repeat_interleave(grid) + 0.5
    rw = torch.arange(grid, dtype=torch.float32).repeat(grid) + 0.5
    gh = delta_h[:, None] * rh + (delta_i * grid)[:, None]
    gw = delta_w[:, None] * rw + (delta_j * grid)[:, None]
    flipped = -delta_w[:, None] * rw + (flip_delta_j * grid)[:, None]
    f = relative_flip.float()[:, None]
    gw = f * flipped + (1 - f) * gw
    pos = sincos_row_first(dim, gh - 0.5, gw - 0.5)
    scale = sincos_row_first(dim, 10 * torch.log(delta_h), 10 * torch.log(delta_w))
    return torch.cat([pos, scale[:, None, :].expand(-1, grid * grid, -1)], dim=-1), gh - 0.5, gw - 0.5


class TokenBN(nn.Module):
    """BatchNorm1d over every token of the batch; Tessera's names (weight, bias, running stats)."""
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x):
        rows = x.reshape(-1, x.shape[-1])
        y = nn.functional.batch_norm(rows, self.running_mean, self.running_var, self.weight, self.bias,
                                     training=True, momentum=0.1, eps=1e-5)
        self.num_batches_tracked += 1
        return y.reshape(x.shape)


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=4.0, norm="layer"):
        super().__init__()
        make = (lambda: nn.LayerNorm(dim, eps=1e-6)) if norm == "layer" else (lambda: TokenBN(dim))
        self.norm1 = make()
        self.attn = Attention(dim, heads)
        self.norm2 = make()
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Projected(nn.Module):
    """Encoder (no final norm in this path) → decoder_embed → projector blocks."""
    def __init__(self, img, p, c, dim, depth, heads, width, proj_depth, dec_heads, norm):
        super().__init__()
        grid = img // p
        self.patch_embed = PatchEmbed(p, c, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", torch.zeros(1, grid * grid + 1, dim))
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)   # in the state dict; not used by SIM's forward
        self.decoder_embed = nn.Linear(dim, width)
        self.projector_decoder_blocks = nn.ModuleList([Block(width, dec_heads, norm=norm) for _ in range(proj_depth)])

    def forward(self, x, keep=None):
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        if keep is not None:
            x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls = self.cls_token.expand(x.shape[0], -1, -1) + self.pos_embed[:, :1, :]
        x = torch.cat([cls, x], dim=1)
        for b in self.blocks:
            x = b(x)
        x = self.decoder_embed(x)
        for b in self.projector_decoder_blocks:
            x = b(x)
        return x


def rel_pos_21(boxes1, boxes2, source_width):
    """The official `rel_pos_21` tuple (Δi, Δj, Δh, Δw, relative flip, flipped Δj) of view 2 in view 1
    from crop boxes [B, 5] (top, left, height, width, flipped) in a source `source_width` wide; each
    box in its view's flipped frame (a view cut at `left` and mirrored starts at W − left − width)."""
    top1, left1, h1, w1, f1 = boxes1.float().unbind(-1)
    top2, left2, h2, w2, f2 = boxes2.float().unbind(-1)
    j1 = torch.where(f1 > 0, source_width - left1 - w1, left1)
    j2 = torch.where(f2 > 0, source_width - left2 - w2, left2)
    return (top2 - top1) / h1, (j2 - j1) / w1, h2 / h1, w2 / w1, f1 != f2, (source_width - j1 - j2) / w1


def tessera_names(state_dict):
    """A SiameseIM state dict under the names Tessera's SIM writes: the online network flat, the target
    under `mm.`."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith("online."):
            out[k[len("online."):]] = v
        elif k.startswith("target."):
            out["mm." + k[len("target."):]] = v
        else:
            out[k] = v
    return out


class SiameseIM(nn.Module):
    def __init__(self, img=16, p=4, c=1, dim=32, depth=2, heads=2, width=32, proj_depth=1, pred_depth=1, dec_heads=2,
                 norm="batch", neg_weight=0.02):
        super().__init__()
        self.grid, self.width, self.neg_weight = img // p, width, neg_weight
        args = (img, p, c, dim, depth, heads, width, proj_depth, dec_heads, norm)
        self.online = Projected(*args)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_mlp = nn.Linear(2 * width, width)
        self.decoder_blocks = nn.ModuleList([Block(width, dec_heads, norm=norm) for _ in range(pred_depth)])
        self.decoder_pred = nn.Linear(width, width)
        self.target = Projected(*args)
        for q in self.target.parameters():
            q.requires_grad = False
        self.target_norm = nn.LayerNorm(width, eps=1e-5, elementwise_affine=False)

    def initialize(self):
        """The official initialize_weights: fixed row-first tables, xavier-uniform linears and patch
        projection, tokens N(0, 0.02), norms 1 and 0; the target starts as a copy of the online branch."""
        table = torch.cat([torch.zeros(1, self.online.pos_embed.shape[-1]), grid_table(self.online.pos_embed.shape[-1], self.grid)])
        self.online.pos_embed.copy_(table.unsqueeze(0))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, TokenBN)) and getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.online.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.online.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.target.load_state_dict(self.online.state_dict())
        self.online.patch_embed.proj.weight.requires_grad = False   # frozen random patch projection
        self.online.patch_embed.proj.bias.requires_grad = False
        return self

    @torch.no_grad()
    def update_target(self, momentum):
        """EMA of every target tensor (encoder, decoder_embed, projector) from its online counterpart."""
        for o, t in zip(self.online.parameters(), self.target.parameters()):
            t.mul_(momentum).add_(o, alpha=1 - momentum)

    def tessera_state_dict(self):
        return tessera_names(self.state_dict())

    def forward(self, x1, x2, keep, rel_pos_21):
        B, L, D = x1.shape[0], self.grid ** 2, self.width
        proj = self.online(x1, keep)                                          # [B, 1 + K, D]
        table = grid_table(D, self.grid)                                      # decoder_pos_embed[1:], row first
        vis_pos = table[keep]                                                 # [B, K, D]
        rel, _, _ = relative_embedding(*rel_pos_21, D, self.grid)
        queries = self.mask_token + self.decoder_pos_mlp(rel)
        x = torch.cat([proj[:, :1], proj[:, 1:] + vis_pos, queries], dim=1)  # CLS position is zero
        for b in self.decoder_blocks:
            x = b(x)
        pred = self.decoder_pred(x)[:, -L:]
        with torch.no_grad():
            t = self.target_norm(self.target(x2)[:, 1:])
        p, t = pred.reshape(-1, D), t.reshape(-1, D)
        pos = ((p - t) ** 2).sum(-1).mean()
        corr = t.T @ t / t.shape[0]
        neg = torch.diagonal(p @ corr @ p.T).mean()
        loss = (pos + self.neg_weight * neg) / D
        return loss, pos, neg
