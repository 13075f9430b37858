#!/usr/bin/env python3
"""Exports the UNet wsiseg ships to models/unet/ (model.pt + manifest.json).

    python scripts/export_model.py [--out models/unet] [--weights W.pt]

Without --weights the UNet has random (untrained) weights from a fixed seed:
its masks mean nothing. The model is traced to TorchScript in float32; wsiseg
converts it to f16 on CUDA at load time.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet import TILE_MULTIPLE, UNet  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "models", "unet"))
    p.add_argument("--weights", help="state_dict to load (default: untrained, seed 0)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--mpp", type=float, default=1.0)
    args = p.parse_args()

    torch.manual_seed(0)
    model = UNet(classes=2, width=16)
    trained = args.weights is not None
    if trained:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    model.eval()

    os.makedirs(args.out, exist_ok=True)
    example = torch.zeros(1, 3, args.tile, args.tile)
    with torch.no_grad():
        traced = torch.jit.trace(model, example)
    traced.save(os.path.join(args.out, "model.pt"))

    manifest = {
        "name": "wsiseg-unet-16",
        "description": (
            "4-level UNet (16-128 channels) for tumor vs background on H&E; "
            + ("trained weights" if trained else "UNTRAINED random weights (seed 0): masks are meaningless")
        ),
        "tile": args.tile,
        "tile_multiple": TILE_MULTIPLE,
        "mpp": args.mpp,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "classes": ["background", "tumor"],
        "output": "logits",
        "extra": {"trained": trained, "torch": torch.__version__, "script": "scripts/export_model.py"},
    }
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {args.out}/model.pt and manifest.json ({'trained' if trained else 'untrained'})")


if __name__ == "__main__":
    main()
