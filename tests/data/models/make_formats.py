#!/usr/bin/env python3
"""Writes AOTInductor (.pt2) and ONNX fixtures for tests/formats.rs with
scripts/export_model.py's export(), and the shipped UNet's reference.

    make_formats.py OUT
    make_formats.py --reference    # writes tests/data/models/unet.reference.u8 and exits

OUT/unet/               model.pt2 + model.onnx of the shipped UNet (scripts/unet.py with
                        models/unet/model.pt's weights) + models/unet/manifest.json
OUT/smp-unet-sigmoid/   model.pt2 + model.onnx of the smp Unet in tests/data/models/smp-unet-sigmoid
                        (its weights) + its manifest
OUT/segformer-quarter/  model.pt2 + model.onnx from the TorchScript model.pt in
                        tests/data/models/segformer-quarter (a dict: the ONNX output is
                        named "logits") + its manifest
OUT/fixed-batch/        the UNet as ONNX with a fixed batch of 1 + the UNet's manifest
OUT/two-inputs/         a small ONNX network taking the tiles and a second tensor + the UNet's manifest
OUT/cuda-pt2/           OUT/unet/model.pt2 with the metadata saying it was compiled for CUDA
                        (AOTI_DEVICE_KEY "cuda") + the UNet's manifest

export() checks each .pt2 (torch._inductor.aoti_load_package) and .onnx
(onnxruntime) against the eager network on random tiles. unet.reference.u8:
P(tumor) × 255 (rounded) of the eager UNet on make_models.py's 64×64 gradient
tile, as make_models.py's reference() computes it. Three AOTInductor compiles:
about 3 minutes on 2 cores. Needs torch, onnx, onnxruntime and
segmentation-models-pytorch (scripts/setup.sh installs them).
"""
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
sys.path.insert(0, os.path.join(repo, "scripts"))
from export_model import export  # noqa: E402
from unet import UNet  # noqa: E402

UNET = os.path.join(repo, "models/unet")


def unet() -> torch.nn.Module:
    """scripts/unet.py's UNet with the shipped weights, checked against the TorchScript model."""
    scripted = torch.jit.load(os.path.join(UNET, "model.pt")).eval()
    model = UNet(classes=2, width=16)
    model.load_state_dict(scripted.state_dict())
    return same_as(model.eval(), scripted, 64)


def same_as(model, scripted, side):
    x = torch.rand(2, 3, side, side, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        diff = (model(x) - scripted(x)).abs().max().item()
    assert diff < 1e-5, f"eager differs from the TorchScript model by {diff}"
    return model


def reference() -> None:
    """tests/data/models/unet.reference.u8, as make_models.py's reference() computes it."""
    with open(os.path.join(UNET, "manifest.json")) as f:
        m = json.load(f)
    y, x = np.mgrid[0:64, 0:64]
    tile = np.stack([(4 * x + y) % 256, (4 * y + 3 * x) % 256, (x * y) % 256], axis=-1).astype(np.uint8)
    x = torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(m["mean"]).view(1, 3, 1, 1)) / torch.tensor(m["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        p = torch.softmax(unet()(x), dim=1)[:, 1]
    u8 = (p[0] * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    assert u8.size == 4096 and len(np.unique(u8)) > 16, f"the reference does not vary: {np.unique(u8)}"
    path = os.path.join(here, "unet.reference.u8")
    u8.tofile(path)
    print(f"wrote {path} (P(tumor)×255 from {u8.min()} to {u8.max()}, {len(np.unique(u8))} values)")


class TwoInputs(torch.nn.Module):
    """A 1×1 convolution to two classes, scaled by a second input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)

    def forward(self, x, scale):
        return self.conv(x) * scale


def formats(out, name, module, manifest):
    """model.pt2 + model.onnx by export(), with `manifest` copied beside them."""
    with open(manifest) as f:
        m = json.load(f)
    folder = os.path.join(out, name)
    export(module, folder, tile=m["tile"], mpp=m.get("mpp"), classes=m["classes"],
           activation=m.get("activation", "softmax"), mean=m["mean"], std=m["std"],
           tile_multiple=m["tile_multiple"], output_element=m.get("output_element"),
           output_stride=m.get("output_stride", 1), input_scale=m.get("input_scale", 1),
           channel_order=m.get("channel_order", "rgb"), name=m["name"], formats=("pt2", "onnx"), check=False)
    shutil.copy(manifest, os.path.join(folder, "manifest.json"))


def onnx_only(out, name, model, args, input_names, dynamic):
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}}
    torch.onnx.export(model, args, os.path.join(folder, "model.onnx"), dynamo=False, input_names=input_names,
                      output_names=["logits"], dynamic_axes=axes if dynamic else None, opset_version=17)
    shutil.copy(os.path.join(UNET, "manifest.json"), os.path.join(folder, "manifest.json"))


def relabel_cuda(source, target) -> None:
    """A copy of the package `source` whose metadata entries say AOTI_DEVICE_KEY "cuda"
    (rewritten with torch's archive writer, which keeps the records' alignment)."""
    from torch.export.pt2_archive._package import PT2ArchiveReader, PT2ArchiveWriter

    os.makedirs(os.path.dirname(target), exist_ok=True)
    relabelled = []
    with PT2ArchiveReader(source) as src, PT2ArchiveWriter(target) as dst:
        for name in src.archive_file.get_all_records():
            if name in (".data/version", ".data/serialization_id", "byteorder"):
                continue  # the writer writes its own
            data = src.read_bytes(name)
            if name.endswith("_metadata.json"):
                meta = json.loads(data)
                meta["AOTI_DEVICE_KEY"] = "cuda"
                data = json.dumps(meta).encode()
                relabelled.append(name)
            dst.write_bytes(name, data)
    assert relabelled, f"no *_metadata.json in {source}"
    print(f"wrote {target} (AOTI_DEVICE_KEY \"cuda\" in {', '.join(relabelled)})")


def main() -> None:
    if sys.argv[1:] == ["--reference"]:
        reference()
        return
    if len(sys.argv) != 2 or sys.argv[1].startswith("-"):
        raise SystemExit(__doc__)
    out = sys.argv[1]
    start = time.time()

    def step(what, run):
        t = time.time()
        torch.manual_seed(0)
        run()
        print(f"{what}: {time.time() - t:.1f} s")

    import segmentation_models_pytorch as smp

    def smp_unet():
        folder = os.path.join(here, "smp-unet-sigmoid")
        model = smp.Unet("tu-resnet10t", encoder_weights=None, classes=1, encoder_depth=3,
                         decoder_channels=[32, 16, 8])
        scripted = torch.jit.load(os.path.join(folder, "model.pt")).eval()
        model.load_state_dict(scripted.state_dict())
        formats(out, "smp-unet-sigmoid", same_as(model.eval(), scripted, 64), os.path.join(folder, "manifest.json"))

    def segformer():
        folder = os.path.join(here, "segformer-quarter")
        formats(out, "segformer-quarter", torch.jit.load(os.path.join(folder, "model.pt")).eval(),
                os.path.join(folder, "manifest.json"))

    x = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    step("unet", lambda: formats(out, "unet", unet(), os.path.join(UNET, "manifest.json")))
    step("smp-unet-sigmoid", smp_unet)
    step("segformer-quarter", segformer)
    step("fixed-batch", lambda: onnx_only(out, "fixed-batch", unet(), (x[:1],), ["input"], False))
    step("two-inputs", lambda: onnx_only(out, "two-inputs", TwoInputs().eval(), (x, torch.ones(1)),
                                         ["input", "scale"], True))

    def cuda():
        relabel_cuda(os.path.join(out, "unet", "model.pt2"), os.path.join(out, "cuda-pt2", "model.pt2"))
        shutil.copy(os.path.join(UNET, "manifest.json"), os.path.join(out, "cuda-pt2", "manifest.json"))

    step("cuda-pt2", cuda)
    print(f"wrote {out} in {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
