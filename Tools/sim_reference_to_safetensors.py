#!/usr/bin/env python3
"""Puts the weights of a PyTorch SIM reference run (Tools/pytorch_reference_protocol.py --method sim
--run DIR, its DIR/last.pt) into a Tessera SIM checkpoint, so that `tessera eval` probes the
reference's encoder with Tessera's own probes (developer tool; CI never runs it). The names come from
sim_reference.tessera_names (online flat, target under `mm.`); the Tessera checkpoint given as the
template supplies the metadata (the model's config; its step count is kept as is) and the set of
names to fill: every one of its tensors must be found with the same shape, and every online tensor
of the reference must have a place, or nothing is written.

    python3 Tools/sim_reference_to_safetensors.py DIR/last.pt runs/sim/last.safetensors ref.safetensors
    tessera eval ref.safetensors
"""
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(__file__))
from sim_reference import tessera_names  # noqa: E402


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: sim_reference_to_safetensors.py REFERENCE_RUN/last.pt TESSERA_SIM.safetensors OUT.safetensors")
    reference, template, out = sys.argv[1:]
    try:
        state = torch.load(reference, map_location="cpu", weights_only=False)
    except Exception as e:   # a missing, truncated or foreign file: one line, no traceback
        sys.exit(f"{reference}: cannot be read as a PyTorch checkpoint ({type(e).__name__}: {e})")
    if not isinstance(state, dict) or "model" not in state:
        sys.exit(f"{reference}: not a checkpoint of pytorch_reference_protocol.py --run (no 'model' entry)")
    weights = tessera_names(state["model"])
    try:
        with safe_open(template, "pt") as f:
            metadata = f.metadata()
        tensors = load_file(template)
    except Exception as e:
        sys.exit(f"{template}: cannot be read as a safetensors file ({e}); give a checkpoint written by tessera pretrain --method sim")
    if (metadata or {}).get("method") != "sim":
        sys.exit(f"{template}: not a Tessera SIM checkpoint (metadata method {(metadata or {}).get('method')!r})")
    missing = [k for k in tensors if k not in weights]
    if missing:
        sys.exit(f"{reference} lacks {len(missing)} of the template's tensors, e.g. {missing[:3]}: was it a SIM run of the same size?")
    unused = [k for k in weights if not k.startswith("mm.") and k not in tensors]   # the template holds no target
    if unused:
        sys.exit(f"{template} lacks {len(unused)} of the reference's online tensors, e.g. {unused[:3]}: not the same model size")
    for k in tensors:
        if tuple(weights[k].shape) != tuple(tensors[k].shape):
            sys.exit(f"{k}: shape {tuple(weights[k].shape)} in {reference}, {tuple(tensors[k].shape)} in {template}: not the same model size")
        tensors[k] = weights[k].to(tensors[k].dtype).contiguous()
    try:   # written whole, then renamed: no partial OUT
        save_file(tensors, out + ".tmp", metadata=metadata)
        os.replace(out + ".tmp", out)
    except BaseException:
        if os.path.exists(out + ".tmp"):
            os.remove(out + ".tmp")
        raise
    print(f"wrote {out}: {len(tensors)} tensors from {reference} (the template's {len(tensors)} names, its metadata)")


if __name__ == "__main__":
    main()
