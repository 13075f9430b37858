#!/usr/bin/env python3
"""Exports a UNet with a ResNet-34 encoder (segmentation-models-pytorch,
random weights: encoder_weights=None, nothing is downloaded) as TorchScript
traced in f16 channels-last on CUDA (the layout that runs at the eager
channels-last rate from tch, shared/DESIGN.md), with a wsiseg manifest, and
measures PyTorch's model-only rate for the same model and batch.

    python3 scripts/export_resnet34_unet.py --out DIR [--batch 32] [--tile 512]

For the GPU throughput check (issue 5); the weights mean nothing.
"""

import argparse
import json
import os
import time

import segmentation_models_pytorch as smp
import torch


def rate(fn, x, iters: int) -> float:
    with torch.no_grad():
        for _ in range(5):
            fn(x)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            fn(x)
        torch.cuda.synchronize()
    return x.shape[0] * iters / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--iters", type=int, default=30)
    a = p.parse_args()
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    model = smp.Unet("resnet34", encoder_weights=None, classes=2).eval().cuda()
    model = model.half().to(memory_format=torch.channels_last)
    x = torch.rand(a.batch, 3, a.tile, a.tile, device="cuda").half().to(memory_format=torch.channels_last)
    eager = rate(model, x, a.iters)
    with torch.no_grad():
        traced = torch.jit.trace(model, x[:1])
    scripted = rate(traced, x, a.iters)
    os.makedirs(a.out, exist_ok=True)
    traced.save(os.path.join(a.out, "model.pt"))
    manifest = {
        "name": "unet-resnet34-random",
        "description": "smp Unet(resnet34), random weights, traced f16 channels-last: for throughput checks only",
        "tile": a.tile,
        "tile_multiple": 32,
        "mpp": 0.25,
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "classes": ["background", "tumor"],
        "output": "logits",
    }
    with open(os.path.join(a.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps({"pytorch_eager_f16_channels_last_tiles_s": eager, "pytorch_torchscript_f16_tiles_s": scripted,
                      "batch": a.batch, "tile": a.tile, "gpu": torch.cuda.get_device_name(0)}))


if __name__ == "__main__":
    main()
