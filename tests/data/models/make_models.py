#!/usr/bin/env python3
"""Regenerates the tiny TorchScript fixtures used by the tests (run from anywhere):

- green-threshold/: labels a pixel 1 ("tumor") when its green byte is < 128,
  else 0. Any tile size works. Lets tests compute the expected mask without a model.
- wrong-classes/: the same model with a manifest that claims 3 classes (a
  model/manifest mismatch wsiseg must refuse).
- nan-all/: NaN everywhere (a model broken for every input: refused at load).
- nan-tissue/: the green-threshold model whose tumor channel is NaN where
  green < 128 (tissue), finite elsewhere: passes the load-time check on a
  white tile and must fail mid-run, naming the tile.

Models as competition teams export them (issue 12), each the green rule in
another form, with `reference.u8`: P(tumor) × 255 (rounded) that PyTorch
computes here, eagerly, on the 64×64 `gradient_tile()` — the tests check
that wsiseg gives the same within 1/255:
- sigmoid-green/: one channel of logits (1 - 2g), "activation": "sigmoid",
  "classes": ["tumor"] (segmentation-models-pytorch with classes=1).
- tuple-green/: returns (aux, logits), "output_element": 1.
- dict-quarter/: returns {"hidden": …, "logits": …} with the logits at 1/4
  of the input's side (HF SegFormer), "output_stride": 4; wsiseg picks
  "logits" and upsamples them (bilinear) before the softmax.
- bgr255-red/: wants BGR pixels in 0–255 with mean/std in those units
  ("input_scale": 255, "channel_order": "bgr"): tumor where red < 128.
- three-class/: softmax over [0, 1 - 2g, 1 - 2b] (background, tumor where
  green is low, "stroma" where blue is low); the reference is class 1.

And real architectures, shrunk, random weights (seed 0), written by
scripts/export_model.py's export() — made only where its packages are
installed (scripts/export-requirements.txt; SegFormer: transformers):
- smp-unet-sigmoid/: segmentation-models-pytorch Unet(tu-resnet10t, depth 3,
  classes=1): one sigmoid channel.
- smp-unet-softmax/: the same with classes=2, softmax.
- monai-unet-3class/: MONAI UNet, 3 classes.
- segformer-quarter/: HF SegFormer (tiny config), a dict whose "logits" are
  at 1/4 of the input's side.
"""

import json
import os
import sys

from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from export_model import segmentation_of  # noqa: E402  (the segmentation element, as wsiseg picks it)


class GreenThreshold(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x is RGB in [0, 1] (mean 0, std 1). Tumor logit 1 - 2g > 0 <=> g < 0.5.
        g = x[:, 1:2]
        return torch.cat([torch.zeros_like(g), 1.0 - 2.0 * g], dim=1)


class NanAll(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x[:, 1:2]
        nan = torch.full_like(g, float("nan"))
        return torch.cat([nan, nan], dim=1)


class NanTissue(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x[:, 1:2]
        tumor = torch.where(g < 0.5, torch.full_like(g, float("nan")), 1.0 - 2.0 * g)
        return torch.cat([torch.zeros_like(g), tumor], dim=1)


class SigmoidGreen(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - 2.0 * x[:, 1:2]


class TupleGreen(nn.Module):
    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        g = x[:, 1:2]
        aux = x.mean(dim=(2, 3))  # N×3: a classification head, say
        return aux, torch.cat([torch.zeros_like(g), 1.0 - 2.0 * g], dim=1)


class DictQuarter(nn.Module):
    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        g = F.avg_pool2d(x[:, 1:2], 4)
        logits = torch.cat([torch.zeros_like(g), 4.0 * (1.0 - 2.0 * g)], dim=1)
        return {"hidden": g, "logits": logits}


class Bgr255Red(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: BGR, red normalized by its mean/std 127.5 → [-1, 1]; low red = tumor.
        r = x[:, 2:3]
        return torch.cat([torch.zeros_like(r), -r], dim=1)


class ThreeClass(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b = x[:, 1:2], x[:, 2:3]
        return torch.cat([torch.zeros_like(g), 1.0 - 2.0 * g, 1.0 - 2.0 * b], dim=1)


BASE = {
    "name": "green-threshold",
    "description": "test fixture: class 1 where green < 128",
    "tile": 64,
    "tile_multiple": 1,
    "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0],
}


def write(folder: str, classes: list, module: nn.Module = GreenThreshold(), **fields) -> None:
    os.makedirs(folder, exist_ok=True)
    torch.jit.script(module).save(os.path.join(folder, "model.pt"))
    manifest = dict(BASE, classes=classes, **fields)
    if "activation" not in manifest:
        manifest["output"] = "logits"
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


def gradient_tile() -> np.ndarray:
    """64×64 RGB bytes: R = (4x + y) % 256, G = (4y + 3x) % 256, B = (x·y) % 256."""
    y, x = np.mgrid[0:64, 0:64]
    return np.stack([(4 * x + y) % 256, (4 * y + 3 * x) % 256, (x * y) % 256], axis=-1).astype(np.uint8)


def reference(folder: str) -> None:
    """P(tumor) × 255 on the gradient tile, as PyTorch computes it from the manifest."""
    with open(os.path.join(folder, "manifest.json")) as f:
        m = json.load(f)
    model = torch.jit.load(os.path.join(folder, "model.pt"))
    x = torch.from_numpy(gradient_tile()).permute(2, 0, 1)[None].float()
    if m.get("channel_order") == "bgr":
        x = x.flip(1)
    if m.get("input_scale", 1) == 1:
        x = x / 255.0
    x = (x - torch.tensor(m["mean"]).view(1, 3, 1, 1)) / torch.tensor(m["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(x)
    out = segmentation_of(out, m.get("output_element"))
    stride = m.get("output_stride", 1)
    if stride > 1:
        out = F.interpolate(out, scale_factor=stride, mode="bilinear", align_corners=False)
    activation = m.get("activation", "softmax" if m.get("output") == "logits" else "none")
    if activation == "sigmoid":
        p = torch.sigmoid(out[:, 0])
    elif activation == "softmax":
        p = torch.softmax(out, dim=1)[:, 1]
    else:
        p = out[:, 1]
    (p[0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy().tofile(os.path.join(folder, "reference.u8"))


here = os.path.dirname(os.path.abspath(__file__))
write(os.path.join(here, "green-threshold"), ["background", "tumor"])
write(os.path.join(here, "wrong-classes"), ["background", "tumor", "necrosis"])
write(os.path.join(here, "nan-all"), ["background", "tumor"], NanAll())
write(os.path.join(here, "nan-tissue"), ["background", "tumor"], NanTissue())
write(os.path.join(here, "sigmoid-green"), ["tumor"], SigmoidGreen(), name="sigmoid-green",
      description="test fixture: one sigmoid channel, tumor where green < 128", activation="sigmoid")
write(os.path.join(here, "tuple-green"), ["background", "tumor"], TupleGreen(), name="tuple-green",
      description="test fixture: (aux, logits) tuple, tumor where green < 128", output_element=1)
write(os.path.join(here, "dict-quarter"), ["background", "tumor"], DictQuarter(), name="dict-quarter",
      description="test fixture: dict output, logits at 1/4 size (SegFormer-like), tumor where green is low",
      activation="softmax", tile_multiple=4, output_stride=4)
write(os.path.join(here, "bgr255-red"), ["background", "tumor"], Bgr255Red(), name="bgr255-red",
      description="test fixture: BGR input in 0-255, tumor where red < 128",
      activation="softmax", input_scale=255, channel_order="bgr",
      mean=[0.0, 0.0, 127.5], std=[1.0, 1.0, 127.5])
write(os.path.join(here, "three-class"), ["background", "tumor", "stroma"], ThreeClass(), name="three-class",
      description="test fixture: tumor where green is low, stroma where blue is low")
exported = []
try:
    import segmentation_models_pytorch as smp
    from export_model import export
    from monai.networks.nets import UNet as MonaiUNet

    for classes, name in [(1, "smp-unet-sigmoid"), (2, "smp-unet-softmax")]:
        torch.manual_seed(0)
        model = smp.Unet("tu-resnet10t", encoder_weights=None, classes=classes, encoder_depth=3,
                         decoder_channels=[32, 16, 8])
        export(model, os.path.join(here, name), tile=64, mpp=None, tile_multiple=8, name=name,
               classes=["tumor"] if classes == 1 else ["background", "tumor"],
               activation="sigmoid" if classes == 1 else "softmax", check=False,
               description=f"test fixture: smp Unet(tu-resnet10t, depth 3, classes={classes}), random weights",
               extra={"packages": ["segmentation-models-pytorch", "timm"]})
        exported.append(name)
    torch.manual_seed(0)
    model = MonaiUNet(spatial_dims=2, in_channels=3, out_channels=3, channels=(8, 16, 32), strides=(2, 2),
                      num_res_units=1)
    export(model, os.path.join(here, "monai-unet-3class"), tile=64, mpp=None, tile_multiple=4,
           name="monai-unet-3class", classes=["background", "tumor", "stroma"], activation="softmax",
           check=False, description="test fixture: MONAI UNet(8, 16, 32), 3 classes, random weights",
           extra={"packages": ["monai"]})
    exported.append("monai-unet-3class")
    from export_model import _SegformerLogits
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    torch.manual_seed(0)
    config = SegformerConfig(num_labels=2, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                             num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=32)
    export(_SegformerLogits(SegformerForSemanticSegmentation(config)), os.path.join(here, "segformer-quarter"),
           tile=64, mpp=None, tile_multiple=32, name="segformer-quarter", classes=["background", "tumor"],
           activation="softmax", output_element="logits", output_stride=4, check=False,
           description="test fixture: HF SegFormer (tiny config), logits at 1/4 size, random weights",
           extra={"packages": ["transformers"]})
    exported.append("segformer-quarter")
except ImportError as e:
    print(f"skipped the exported fixtures after {exported}: {e}")

for name in ["green-threshold", "sigmoid-green", "tuple-green", "dict-quarter", "bgr255-red",
             "three-class"] + exported:
    reference(os.path.join(here, name))
print("wrote", here)
