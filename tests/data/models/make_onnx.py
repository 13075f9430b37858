#!/usr/bin/env python3
"""Writes ONNX versions of the shipped UNet (models/unet) for tests/formats.rs.

    make_onnx.py OUT

OUT/unet/         model.onnx (dynamic batch and size) + the UNet's manifest
OUT/fixed-batch/  the same network exported with a fixed batch of 1
OUT/two-inputs/   a small network taking the tiles and a second tensor

Each model.onnx is checked against the TorchScript module on two random
tiles with onnxruntime (max difference printed). Needs torch, onnx and
onnxruntime (scripts/setup.sh installs them).
"""
import os
import shutil
import sys

import numpy as np
import onnxruntime
import torch

repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
unet = torch.jit.load(os.path.join(repo, "models/unet/model.pt")).eval()
manifest = os.path.join(repo, "models/unet/manifest.json")
out = sys.argv[1]
x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))


class TwoInputs(torch.nn.Module):
    """A 1×1 convolution to two classes, scaled by a second input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x, scale):
        return self.conv(x) * scale


def export(name, model, args, dynamic, input_names):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "model.onnx")
    axes = {"input": {0: "batch", 2: "h", 3: "w"}, "logits": {0: "batch", 2: "h", 3: "w"}} if dynamic else None
    torch.onnx.export(model, args, path, dynamo=False, input_names=input_names, output_names=["logits"],
                      dynamic_axes=axes, opset_version=17)
    shutil.copy(manifest, os.path.join(folder, "manifest.json"))
    return path


path = export("unet", unet, (x,), True, ["input"])
session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
got = session.run(None, {"input": x.numpy()})[0]
want = unet(x).detach().numpy()
print(f"{path}: max |ONNX - TorchScript| = {np.abs(got - want).max():.2e}")
export("fixed-batch", unet, (x[:1],), False, ["input"])
export("two-inputs", TwoInputs().eval(), (x, torch.ones(1)), True, ["input", "scale"])
