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
"""

import json
import os

import torch
from torch import nn


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


def write(folder: str, classes: list, module: nn.Module = GreenThreshold()) -> None:
    os.makedirs(folder, exist_ok=True)
    torch.jit.script(module).save(os.path.join(folder, "model.pt"))
    manifest = {
        "name": "green-threshold",
        "description": "test fixture: class 1 where green < 128",
        "tile": 64,
        "tile_multiple": 1,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "classes": classes,
        "output": "logits",
    }
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")


here = os.path.dirname(os.path.abspath(__file__))
write(os.path.join(here, "green-threshold"), ["background", "tumor"])
write(os.path.join(here, "wrong-classes"), ["background", "tumor", "necrosis"])
write(os.path.join(here, "nan-all"), ["background", "tumor"], NanAll())
write(os.path.join(here, "nan-tissue"), ["background", "tumor"], NanTissue())
print("wrote", here)
