#!/usr/bin/env python3
"""Loads a Tessera MAE checkpoint in PyTorch, as a user of the official code would (not part of CI).

    pip install torch safetensors numpy timm
    python3 Tools/load_in_pytorch.py runs/mae/last.safetensors --encoder runs/mae/last.encoder.safetensors \
        [--images imgs.npy --features feats.npy]

1. The full checkpoint goes into MaskedAutoencoderViT (Tools/mae_reference.py: the official module tree,
   names and shapes) with load_state_dict(strict=True), and one forward pass runs.
2. The encoder file goes into timm's VisionTransformer (qkv_bias, LayerNorm eps 1e-6, CLS pooling):
   only head.weight and head.bias may be missing.
3. With --images (uint8 .npy [N, H, W] or [N, H, W, C]) and --features (what `tessera embed --data
   imgs.npy` wrote for the same images), timm's CLS features after the final norm must match Tessera's.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from mae_reference import MaskedAutoencoderViT  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("checkpoint")
ap.add_argument("--encoder")
ap.add_argument("--images")
ap.add_argument("--features")
args = ap.parse_args()

with safe_open(args.checkpoint, framework="pt") as f:
    meta = f.metadata()
cfg = json.loads(meta["config"])
# Format 2 (formatVersion): the encoder at the top, MAE's options in "mae"; format 1: the encoder inside "mae".
m = cfg["mae"]
e = cfg["encoder"] if "formatVersion" in cfg else m["encoder"]
print("metadata:", {k: v for k, v in meta.items() if k != "config"})
model = MaskedAutoencoderViT(img_size=e["imageSize"], patch_size=e["patchSize"], in_chans=e["channels"], embed_dim=e["dim"],
                             depth=e["depth"], num_heads=e["heads"], decoder_embed_dim=m["decoderDim"],
                             decoder_depth=m["decoderDepth"], decoder_num_heads=m["decoderHeads"], mlp_ratio=e["mlpRatio"],
                             norm_pix_loss=m["normPixLoss"])
sd = load_file(args.checkpoint)
result = model.load_state_dict(sd, strict=True)
print(f"MaskedAutoencoderViT.load_state_dict(strict=True): OK ({len(sd)} tensors, {sum(v.numel() for v in sd.values())} elements)")
with torch.no_grad():
    x = torch.randn(4, e["channels"], e["imageSize"], e["imageSize"], generator=torch.Generator().manual_seed(0))
    loss, pred, mask = model(x, mask_ratio=m["maskRatio"])
print(f"forward: loss {loss.item():.4f}, pred {tuple(pred.shape)}, masked fraction {mask.mean().item():.3f}")

if args.encoder:
    import timm
    from functools import partial
    from timm.models.vision_transformer import VisionTransformer
    vit = VisionTransformer(img_size=e["imageSize"], patch_size=e["patchSize"], in_chans=e["channels"], num_classes=10,
                            embed_dim=e["dim"], depth=e["depth"], num_heads=e["heads"], mlp_ratio=e["mlpRatio"], qkv_bias=True,
                            global_pool="token", norm_layer=partial(torch.nn.LayerNorm, eps=1e-6))
    enc = load_file(args.encoder)
    missing, unexpected = vit.load_state_dict(enc, strict=False)
    print(f"timm {timm.__version__} VisionTransformer.load_state_dict(strict=False): missing {missing}, unexpected {unexpected}")
    assert set(missing) == {"head.weight", "head.bias"} and not unexpected, "encoder file does not fit timm's ViT"
    if args.images and args.features:
        imgs = np.load(args.images)
        if imgs.ndim == 3:
            imgs = imgs[..., None]
        aug = cfg["augmentation"]
        assert imgs.shape[1] == imgs.shape[2] == e["imageSize"], "images must already be at the model's size"
        t = torch.from_numpy(imgs.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
        t = (t - torch.tensor(aug["mean"]).view(1, -1, 1, 1)) / torch.tensor(aug["std"]).view(1, -1, 1, 1)
        vit.eval()
        with torch.no_grad():
            feats = vit.forward_features(t)[:, 0]
        ours = torch.from_numpy(np.load(args.features))
        err = (feats - ours).abs().max().item()
        print(f"CLS features of {len(imgs)} images: max |timm - tessera| = {err:.2e}")
        assert err < 1e-3, "features differ"
print("all checks passed")
