#!/usr/bin/env python3
"""Writes Tests/ModelsTests/Fixtures/sim_tiny.safetensors (developer-only; CI never runs it): a tiny
SiameseIM from Tools/sim_reference.py (the official forward_sim and UniGrad loss) with BatchNorm and
with LayerNorm projector/predictor, its weights under Tessera's names, two views, the visible
patches, the two views' crop boxes, and PyTorch's loss terms and gradients. The Swift test
(SIMParityTests) loads the same weights, computes the geometry from the boxes with
SIM.relativePositions, and compares.

    Bench/.venv/bin/python Tools/make_sim_fixture.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import sincos_pos_embed  # noqa: E402
from sim_reference import SiameseIM, rel_pos_21  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelsTests", "Fixtures")
IMG, P, C, DIM, WIDTH, B, SRC = 16, 4, 1, 32, 32, 3, 28
G = IMG // P
L, KEEP = G * G, 8            # mask ratio 0.5: round(0.5 · 16) = 8 masked
W_NEG = 0.02 * 768 / WIDTH    # Tessera scales the official 0.02 (set for D = 768) by 768 / D

tensors = {}
torch.manual_seed(7)
x1, x2 = torch.randn(B, C, IMG, IMG), torch.randn(B, C, IMG, IMG)
order = torch.stack([torch.randperm(L) for _ in range(B)])          # visible first, then masked
keep = order[:, :KEEP]
# Crop boxes in a SRC×SRC source: (top, left, height, width, flipped); the geometry in each view's
# flipped frame (a view cut at `left` and mirrored starts at SRC − left − width).
boxes = torch.tensor([[[2, 3, 20, 18, 0], [5, 1, 14, 22, 0]],
                      [[0, 4, 24, 24, 1], [6, 8, 12, 10, 0]],
                      [[3, 2, 16, 20, 1], [1, 0, 27, 25, 1]]], dtype=torch.float32)
rel = rel_pos_21(boxes[:, 0], boxes[:, 1], SRC)
tensors.update({"fixture.view1": x1, "fixture.view2": x2, "fixture.order": order.float(), "fixture.boxes": boxes})

for norm in ["batch", "layer"]:
    torch.manual_seed(11)
    m = SiameseIM(IMG, P, C, DIM, depth=2, heads=2, width=WIDTH, proj_depth=1, pred_depth=2, dec_heads=2, norm=norm, neg_weight=W_NEG)
    with torch.no_grad():
        for name, q in m.named_parameters():   # non-trivial norms and tokens, not only the default init
            if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                q.copy_(1 + 0.1 * torch.randn_like(q))
            elif name.endswith("norm1.bias") or name.endswith("norm2.bias") or "token" in name:
                q.copy_(0.1 * torch.randn_like(q))
        for branch in (m.online, m.target):
            branch.pos_embed.copy_(sincos_pos_embed(DIM, G))   # Tessera's encoder table (MAE's)
        # The target: the online branch, moved a little (an EMA some steps in).
        for (n, qo), (_, qt) in zip(m.online.named_parameters(), m.target.named_parameters()):
            qt.copy_(qo + 0.01 * torch.randn_like(qo))
    m.online.patch_embed.proj.weight.requires_grad = False   # frozen random patch projection
    m.online.patch_embed.proj.bias.requires_grad = False
    for k, v in m.tessera_state_dict().items():
        tensors[f"{norm}.{k}"] = v.detach().clone().float().contiguous()
    loss, pos, neg = m(x1, x2, keep, rel)
    loss.backward()
    tensors[f"{norm}.fixture.loss"] = loss.detach().reshape(1)
    tensors[f"{norm}.fixture.pos"] = pos.detach().reshape(1)
    tensors[f"{norm}.fixture.neg"] = neg.detach().reshape(1)
    for name, q in m.named_parameters():
        if q.grad is not None:
            tensors[f"{norm}.grad.{name[len('online.'):] if name.startswith('online.') else name}"] = q.grad.contiguous()
    print(norm, "loss", loss.item(), "pos", pos.item(), "neg", neg.item())

# The geometry rows/cols as the official formula gives them (for the Swift relativePositions check).
from sim_reference import relative_embedding  # noqa: E402
_, rows, cols = relative_embedding(*rel, WIDTH, G)
tensors["fixture.rows"], tensors["fixture.cols"] = rows.contiguous(), cols.contiguous()
os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "sim_tiny.safetensors"), metadata={"format": "pt"})
print("wrote sim_tiny.safetensors:", len(tensors), "tensors")
