#!/usr/bin/env python3
"""Exports the UNet wsiseg ships to models/unet/ (model.pt + manifest.json).

    python scripts/export_model.py [--out models/unet] [--weights W.pt]

Without --weights the UNet has random (untrained) weights from a fixed seed:
its masks mean nothing. scripts/train_model.py trains it and calls export().
The model is traced to TorchScript in float32; wsiseg converts it to f16 on
CUDA at load time.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from unet import TILE_MULTIPLE, UNet  # noqa: E402

DEFAULT_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models", "unet")
MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]


def export(model: UNet, out: str, tile: int, mpp: float, description: str, extra: dict) -> None:
    model.eval()
    os.makedirs(out, exist_ok=True)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.zeros(1, 3, tile, tile))
    traced.save(os.path.join(out, "model.pt"))
    manifest = {
        "name": "wsiseg-unet-16",
        "description": description,
        "tile": tile,
        "tile_multiple": TILE_MULTIPLE,
        "mpp": mpp,
        "mean": MEAN,
        "std": STD,
        "classes": ["background", "tumor"],
        "output": "logits",
        "extra": dict(extra, torch=torch.__version__),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {out}/model.pt and manifest.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--weights", help="state_dict to load (default: untrained, seed 0)")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--mpp", type=float, default=1.0)
    args = p.parse_args()
    torch.manual_seed(0)
    model = UNet(classes=2, width=16)
    trained = args.weights is not None
    if trained:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    what = "trained weights" if trained else "UNTRAINED random weights (seed 0): masks are meaningless"
    export(
        model,
        args.out,
        args.tile,
        args.mpp,
        f"4-level UNet (16-128 channels) for tumor vs background on H&E; {what}",
        {"trained": trained, "script": "scripts/export_model.py"},
    )


if __name__ == "__main__":
    main()
