#!/usr/bin/env python3
"""Exports a UNet with a ResNet-34 encoder (segmentation-models-pytorch,
random weights: encoder_weights=None, nothing is downloaded) through
scripts/export_model.py's export(): on CUDA traced in f16 channels-last (the
layout that runs at the eager channels-last rate from tch, shared/DESIGN.md),
and then PyTorch's model-only rates for the same model and batch are measured;
without a GPU, in f32 on the CPU (no rates).

    python3 scripts/export_resnet34_unet.py --out DIR [--batch 32] [--tile 512]

For the GPU throughput check (scripts/gpu_bench.sh); the weights mean nothing.
"""

import argparse
import json
import os
import sys
import time

import segmentation_models_pytorch as smp
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_model import export  # noqa: E402


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
    cuda = torch.cuda.is_available()
    model = smp.Unet("resnet34", encoder_weights=None, classes=2).eval()
    export(model, a.out, tile=a.tile, mpp=0.25, tile_multiple=32, classes=["background", "tumor"],
           activation="softmax", half=cuda, check=False, name="unet-resnet34-random",
           description="smp Unet(resnet34), random weights: for throughput checks only",
           extra={"packages": ["segmentation-models-pytorch", "timm"]})
    if not cuda:
        print(json.dumps({"device": "cpu", "note": "no GPU: exported in f32, no rates measured"}))
        return
    torch.backends.cudnn.benchmark = True
    model = model.cuda().half().to(memory_format=torch.channels_last)
    x = torch.rand(a.batch, 3, a.tile, a.tile, device="cuda").half().to(memory_format=torch.channels_last)
    eager = rate(model, x, a.iters)
    traced = torch.jit.load(os.path.join(a.out, "model.pt"), map_location="cuda")
    scripted = rate(traced, x, a.iters)
    print(json.dumps({"pytorch_eager_f16_channels_last_tiles_s": eager, "pytorch_torchscript_f16_tiles_s": scripted,
                      "batch": a.batch, "tile": a.tile, "gpu": torch.cuda.get_device_name(0)}))


if __name__ == "__main__":
    main()
