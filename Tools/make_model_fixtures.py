#!/usr/bin/env python3
"""Writes Tests/ModelsTests/Fixtures/mae_tiny.safetensors (developer-only; CI never runs it):
a tiny MAE built by Tools/mae_reference.py (the official architecture), a batch of images, the masking
noise, and PyTorch's loss, predictions and gradients for that batch, saved with the `safetensors`
package. The Swift test loads the weights through Tessera's safetensors reader and compares.

    /root/torchenv/bin/pip install torch numpy safetensors
    /root/torchenv/bin/python Tools/make_model_fixtures.py
"""
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import MaskedAutoencoderViT  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "ModelsTests", "Fixtures")
torch.manual_seed(0)
model = MaskedAutoencoderViT(img_size=16, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2,
                             decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2, norm_pix_loss=True)
imgs = torch.randn(3, 1, 16, 16)
noise = torch.rand(3, 16)
loss, pred, mask = model(imgs, mask_ratio=0.75, noise=noise)
loss.backward()
tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
tensors["fixture.images"] = imgs
tensors["fixture.noise"] = noise
tensors["fixture.loss"] = loss.detach().reshape(1)
tensors["fixture.pred"] = pred.detach().contiguous()
tensors["fixture.mask"] = mask
for name, p in model.named_parameters():
    if p.grad is not None:
        tensors["grad." + name] = p.grad.contiguous()
# pixel-target loss too
model.norm_pix_loss = False
loss_pix, _, _ = model(imgs, mask_ratio=0.75, noise=noise)
tensors["fixture.loss_pix"] = loss_pix.detach().reshape(1)
os.makedirs(OUT, exist_ok=True)
save_file(tensors, os.path.join(OUT, "mae_tiny.safetensors"), metadata={"format": "pt"})
print("wrote mae_tiny.safetensors:", len(tensors), "tensors, loss", loss.item())

# PIL's crop + resize (what torchvision's RandomResizedCrop does on PIL images), for the augmentation kernel.
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

rng = np.random.default_rng(0)
src = rng.integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
out = {"fixture.src": torch.from_numpy(src.astype(np.float32))}
cases = [("bicubic_up", (3, 5, 9, 11), 16, Image.BICUBIC), ("bilinear_up", (0, 0, 20, 24), 28, Image.BILINEAR),
         ("bicubic_down", (2, 1, 18, 20), 7, Image.BICUBIC), ("bilinear_down", (4, 4, 16, 12), 5, Image.BILINEAR)]
for name, (top, left, h, w), size, filt in cases:
    img = Image.fromarray(src).crop((left, top, left + w, top + h)).resize((size, size), filt)
    out["fixture." + name] = torch.from_numpy(np.asarray(img).astype(np.float32).copy())
    out["fixture." + name + ".box"] = torch.tensor([top, left, h, w], dtype=torch.float32)
EVAL_OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "EngineTests", "Corpus")
save_file(out, os.path.join(EVAL_OUT, "fixture_pil_resize.safetensors"), metadata={"format": "pt"})
print("wrote fixture_pil_resize.safetensors")

# MSN's loss (src/losses.py as specified in msn_sim.md A2): CE to sharpened + Sinkhorn targets, ME-MAX.
import math  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def sinkhorn(Q, num_itr=3):
    Q = Q.T
    B, K = Q.shape[1], Q.shape[0]
    Q = Q / Q.sum()
    for _ in range(num_itr):
        Q = Q / Q.sum(dim=1, keepdim=True) / K
        Q = Q / Q.sum(dim=0, keepdim=True) / B
    return (Q * B).T


torch.manual_seed(1)
B, V, K, d = 4, 3, 8, 5
anchor = torch.randn(V * B, d, requires_grad=True)
target = torch.randn(B, d)
protos = torch.randn(K, d, requires_grad=True)
pn = F.normalize(protos)
probs = F.softmax(F.normalize(anchor) @ pn.T / 0.1, dim=1)
with torch.no_grad():
    t = F.softmax(F.normalize(target) @ pn.T / 0.1, dim=1)
    sharp = t ** (1 / 0.25)
    sharp = sharp / sharp.sum(dim=1, keepdim=True)
    tg = sinkhorn(sharp, 3)
ce = torch.mean(torch.sum(torch.log(probs ** (-torch.cat([tg] * V))), dim=1))
avg = probs.mean(0)
rloss = -torch.sum(torch.log(avg ** (-avg))) + math.log(K)
total = ce + 1.0 * rloss
total.backward()
save_file({"anchor": anchor.detach(), "target": target, "prototypes": protos.detach(), "sharpened": sharp, "sinkhorn": tg,
           "ce": ce.detach().reshape(1), "memax": rloss.detach().reshape(1), "total": total.detach().reshape(1),
           "grad.anchor": anchor.grad, "grad.prototypes": protos.grad},
          os.path.join(OUT, "msn_loss.safetensors"), metadata={"format": "pt"})
print("wrote msn_loss.safetensors, loss", total.item())

# Bicubic resize of a positional table (MSN deit interpolate_pos_encoding), 7x7 -> 3x3.
torch.manual_seed(2)
table = torch.randn(1, 1 + 49, 8)
patch = table[:, 1:].reshape(1, 7, 7, 8).permute(0, 3, 1, 2)
res = F.interpolate(patch, scale_factor=3 / 7, mode="bicubic")
res = res.permute(0, 2, 3, 1).reshape(1, 9, 8)
save_file({"table": table, "resized": torch.cat([table[:, :1], res], dim=1).contiguous()},
          os.path.join(OUT, "pos_resize.safetensors"), metadata={"format": "pt"})
print("wrote pos_resize.safetensors")

# Photometric ops on float tensors (torchvision.transforms.functional, the tensor path), for the C kernel.
import torchvision.transforms.functional as TF  # noqa: E402

torch.manual_seed(3)
img = torch.rand(3, 6, 6)
gray1 = torch.rand(1, 6, 6)
photo = {"img": img, "gray1": gray1,
         "brightness": TF.adjust_brightness(img, 1.3), "contrast": TF.adjust_contrast(img, 0.6),
         "saturation": TF.adjust_saturation(img, 1.4), "hue": TF.adjust_hue(img, 0.07),
         "grayscale": TF.rgb_to_grayscale(img, num_output_channels=3), "solarize": TF.solarize(img, 0.5),
         # the jitter ops in the order contrast, hue, brightness, saturation
         "chain": TF.adjust_saturation(TF.adjust_brightness(TF.adjust_hue(TF.adjust_contrast(img, 0.7), -0.05), 0.8), 1.2),
         "gray1_contrast": TF.adjust_contrast(gray1, 1.5), "gray1_brightness": TF.adjust_brightness(gray1, 0.7)}
save_file({k: v.contiguous() for k, v in photo.items()}, os.path.join(EVAL_OUT, "fixture_photometric.safetensors"), metadata={"format": "pt"})
print("wrote fixture_photometric.safetensors")
