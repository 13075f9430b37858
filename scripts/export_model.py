#!/usr/bin/env python3
"""Exports a PyTorch segmentation model for wsiseg: model.pt (TorchScript) + manifest.json.

As a library (any nn.Module that takes N×3×H×W images):

    sys.path.insert(0, "scripts"); from export_model import export
    export(module, "models/mine", tile=512, mpp=0.5, classes=["background", "tumor"],
           activation="softmax", mean=IMAGENET_MEAN, std=IMAGENET_STD, tile_multiple=32)

From the command line, one preset per family (random weights unless --weights):

    python scripts/export_model.py unet     [--weights W.pt]             # the model wsiseg ships
    python scripts/export_model.py smp      --arch Unet --encoder resnet34 --classes 1 [--weights ckpt.pt]
    python scripts/export_model.py segformer [--checkpoint HF_FOLDER | --config config.json] [--install]
    python scripts/export_model.py monai    --classes 3 [--channels 16,32,64,128] [--weights ckpt.pt]

Every preset takes --out, --tile, --mpp, --class-names, --threshold, --half
(f16 channels-last, traced on CUDA: the layout that runs at PyTorch's eager
channels-last rate) and --no-check. After writing, export() checks on random
tiles that the TorchScript output equals the eager one and runs
`wsiseg model check` on the result (when the binary is built).

smp and monai need scripts/export-requirements.txt (scripts/setup.sh installs
it); segformer also needs transformers==5.23.0 (--install installs it into
this Python). Nothing is downloaded at run time except by --install.
"""

import argparse
import json
import os
import subprocess
import sys
from importlib import metadata

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_OUT = os.path.join(REPO, "models", "unet")
# The shipped UNet's normalization (scripts/train_model.py imports these).
MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
TRANSFORMERS = "transformers==5.23.0"


def versions(*packages: str) -> dict:
    """Installed versions of torch and the given packages, for the manifest."""
    out = {"torch": torch.__version__}
    for p in packages:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    return out


def _trace(module: nn.Module, example: torch.Tensor):
    with torch.no_grad():
        try:
            return torch.jit.trace(module, example, strict=False)
        except Exception as traced_error:  # some models only script
            try:
                return torch.jit.script(module)
            except Exception:
                raise traced_error


def segmentation_of(out, element):
    """The segmentation in a model's output, as wsiseg picks it: `element` of a
    dict or tuple/list, else a dict's "logits" (or "out"), a tuple's first item."""
    if isinstance(out, dict):
        return out[element if element is not None else ("logits" if "logits" in out else "out")]
    if isinstance(out, (tuple, list)):
        return out[element if element is not None else 0]
    return out


def export(module: nn.Module, out: str, *, tile: int, mpp, classes: list, activation: str,
           mean=IMAGENET_MEAN, std=IMAGENET_STD, tile_multiple: int = 32, output_element=None,
           output_stride: int = 1, input_scale: int = 1, channel_order: str = "rgb",
           threshold=None, name: str = None, description: str = "", extra: dict = None,
           half: bool = False, check: bool = True) -> dict:
    """Traces `module` (or scripts it when tracing fails), writes OUT/model.pt and
    OUT/manifest.json, checks TorchScript against eager on random tiles and, when
    `check`, runs `wsiseg model check OUT`. Returns the manifest."""
    module = module.eval()
    device = "cuda" if half else "cpu"
    if half:
        if not torch.cuda.is_available():
            raise SystemExit("--half traces f16 channels-last on CUDA: no GPU here")
        module = module.to(device).half().to(memory_format=torch.channels_last)
    dtype = torch.half if half else torch.float
    example = torch.rand(1, 3, tile, tile, device=device, dtype=dtype)
    if half:
        example = example.to(memory_format=torch.channels_last)
    scripted = _trace(module, example)
    os.makedirs(out, exist_ok=True)
    scripted.save(os.path.join(out, "model.pt"))
    manifest = {
        "name": name or os.path.basename(os.path.abspath(out)),
        "description": description,
        "tile": tile,
        "tile_multiple": tile_multiple,
        "mpp": mpp,
        "mean": list(map(float, mean)),
        "std": list(map(float, std)),
        "input_scale": input_scale,
        "channel_order": channel_order,
        "classes": classes,
        "activation": activation,
        "output_stride": output_stride,
        "extra": dict(extra or {}, versions=versions(*(extra or {}).get("packages", [])),
                      exported_by="scripts/export_model.py", precision="f16" if half else "f32"),
    }
    if mpp is None:
        del manifest["mpp"]
    if output_element is not None:
        manifest["output_element"] = output_element
    if threshold is not None:
        manifest["threshold"] = threshold
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    # TorchScript must compute what the eager model does, on other tiles than the example.
    loaded = torch.jit.load(os.path.join(out, "model.pt"), map_location=device)
    x = torch.rand(2, 3, tile, tile, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    with torch.no_grad():
        want, got = segmentation_of(module(x), output_element), segmentation_of(loaded(x), output_element)
    tol = 1e-2 if half else 1e-4
    if want.shape != got.shape or not torch.allclose(want.float(), got.float(), atol=tol, rtol=tol):
        raise SystemExit(f"{out}/model.pt: TorchScript differs from the eager model "
                         f"(largest difference {(want.float() - got.float()).abs().max():.3g})")
    print(f"wrote {out}/model.pt and manifest.json (TorchScript = eager within {tol})")
    if check:
        wsiseg = os.path.join(REPO, "target", "release", "wsiseg")
        if os.path.exists(wsiseg):
            args = [wsiseg, "model", "check", out, "--device", device]
            if half:
                args += ["--precision", "f16"]
            subprocess.run(args, check=True)
        else:
            print("(wsiseg not built: skipped `wsiseg model check`)")
    return manifest


def _load_weights(module: nn.Module, path):
    if path:
        state = torch.load(path, map_location="cpu")
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        module.load_state_dict(state)


def preset_unet(a) -> dict:
    sys.path.insert(0, HERE)
    from unet import TILE_MULTIPLE, UNet

    torch.manual_seed(0)
    model = UNet(classes=2, width=16)
    _load_weights(model, a.weights)
    what = "trained weights" if a.weights else "UNTRAINED random weights (seed 0): masks are meaningless"
    return export_unet(model, a.out, a.tile or 256, a.mpp or 1.0,
                       f"4-level UNet (16-128 channels) for tumor vs background on H&E; {what}",
                       {"trained": bool(a.weights), "script": "scripts/export_model.py"},
                       check=not a.no_check, tile_multiple=TILE_MULTIPLE)


def export_unet(model, out, tile, mpp, description, extra, check=False, tile_multiple=None) -> dict:
    """The shipped UNet (scripts/train_model.py calls this after training)."""
    if tile_multiple is None:
        sys.path.insert(0, HERE)
        from unet import TILE_MULTIPLE as tile_multiple
    return export(model, out, tile=tile, mpp=mpp, classes=["background", "tumor"],
                  activation="softmax", mean=MEAN, std=STD, tile_multiple=tile_multiple,
                  name="wsiseg-unet-16", description=description, extra=extra, check=check)


def preset_smp(a) -> dict:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    arch = getattr(smp, a.arch)
    kwargs = dict(encoder_name=a.encoder, encoder_weights=None, classes=a.classes)
    if a.encoder_depth:
        kwargs["encoder_depth"] = a.encoder_depth
    if a.decoder_channels:
        kwargs["decoder_channels"] = [int(c) for c in a.decoder_channels.split(",")]
    model = arch(**kwargs)
    _load_weights(model, a.weights)
    depth = a.encoder_depth or 5
    binary = a.classes == 1
    return export(model, a.out, tile=a.tile or 512, mpp=a.mpp, tile_multiple=2 ** depth,
                  classes=a.class_names or (["tumor"] if binary else _default_classes(a.classes)),
                  activation="sigmoid" if binary else "softmax", threshold=a.threshold,
                  half=a.half, check=not a.no_check,
                  description=f"segmentation-models-pytorch {a.arch}({a.encoder}, classes={a.classes})"
                              + ("" if a.weights else ", random weights"),
                  extra={"packages": ["segmentation-models-pytorch", "timm"], "weights": a.weights})


def preset_monai(a) -> dict:
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    channels = tuple(int(c) for c in a.channels.split(","))
    model = UNet(spatial_dims=2, in_channels=3, out_channels=a.classes, channels=channels,
                 strides=(2,) * (len(channels) - 1), num_res_units=a.res_units)
    _load_weights(model, a.weights)
    return export(model, a.out, tile=a.tile or 256, mpp=a.mpp, tile_multiple=2 ** (len(channels) - 1),
                  classes=a.class_names or _default_classes(a.classes), activation="softmax",
                  threshold=a.threshold, half=a.half, check=not a.no_check,
                  description=f"MONAI UNet(channels={channels}, classes={a.classes})"
                              + ("" if a.weights else ", random weights"),
                  extra={"packages": ["monai"], "weights": a.weights})


class _SegformerLogits(nn.Module):
    """HF SegFormer as a dict {"logits": N×C×(H/4)×(W/4)} (what its forward
    returns, without the fields tracing cannot carry)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return {"logits": self.model(pixel_values=x).logits}


def preset_segformer(a) -> dict:
    if a.install:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", TRANSFORMERS], check=True)
    try:
        from transformers import SegformerConfig, SegformerForSemanticSegmentation
    except ImportError:
        raise SystemExit(f"the segformer preset needs {TRANSFORMERS}: add --install, or pip install it")
    torch.manual_seed(0)
    if a.checkpoint:
        model = SegformerForSemanticSegmentation.from_pretrained(a.checkpoint, local_files_only=True)
        classes = a.class_names or [model.config.id2label[i] for i in range(model.config.num_labels)]
    else:
        if a.config:
            config = SegformerConfig.from_json_file(a.config)
        else:  # a tiny SegFormer (MiT-like), random weights
            config = SegformerConfig(num_labels=a.classes, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1],
                                     num_attention_heads=[1, 2, 2, 4], decoder_hidden_size=64)
        config.num_labels = a.classes
        model = SegformerForSemanticSegmentation(config)
        _load_weights(model, a.weights)
        classes = a.class_names or _default_classes(a.classes)
    return export(_SegformerLogits(model), a.out, tile=a.tile or 512, mpp=a.mpp, tile_multiple=32,
                  classes=classes, activation="softmax", output_element="logits", output_stride=4,
                  threshold=a.threshold, half=a.half, check=not a.no_check,
                  description="HF transformers SegformerForSemanticSegmentation"
                              + (f" from {a.checkpoint}" if a.checkpoint else ", random weights"),
                  extra={"packages": ["transformers"], "checkpoint": a.checkpoint})


def _default_classes(n: int) -> list:
    return ["background", "tumor"] + [f"class{i}" for i in range(2, n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="preset", required=True)

    def common(s, out_required=True):
        s.add_argument("--out", required=out_required, default=None if out_required else DEFAULT_OUT)
        s.add_argument("--tile", type=int, help="training tile side (the default --tile)")
        s.add_argument("--mpp", type=float, help="µm/px the model was trained at")
        s.add_argument("--weights", help="a state_dict (or a checkpoint with 'state_dict') to load")
        s.add_argument("--class-names", type=lambda v: v.split(","), help="background first, comma-separated")
        s.add_argument("--threshold", type=float, help="binary models: tumor where P(tumor) > this")
        s.add_argument("--half", action="store_true", help="trace f16 channels-last on CUDA")
        s.add_argument("--no-check", action="store_true", help="skip `wsiseg model check`")
        return s

    common(sub.add_parser("unet", help="the UNet wsiseg ships (models/unet)"), out_required=False)
    s = common(sub.add_parser("smp", help="segmentation-models-pytorch"))
    s.add_argument("--arch", default="Unet", help="Unet, UnetPlusPlus, FPN, DeepLabV3Plus, …")
    s.add_argument("--encoder", default="resnet34")
    s.add_argument("--encoder-depth", type=int, help="3–5 [5]")
    s.add_argument("--decoder-channels", help="one per encoder stage, e.g. 64,32,16 for depth 3")
    s.add_argument("--classes", type=int, default=1, help="1: sigmoid (BCE-trained); ≥ 2: softmax")
    s = common(sub.add_parser("segformer", help="HF transformers SegFormer"))
    s.add_argument("--checkpoint", help="a local folder saved with save_pretrained")
    s.add_argument("--config", help="a config.json (random weights unless --weights)")
    s.add_argument("--classes", type=int, default=2)
    s.add_argument("--install", action="store_true", help=f"pip install {TRANSFORMERS} first")
    s = common(sub.add_parser("monai", help="MONAI UNet"))
    s.add_argument("--classes", type=int, default=2)
    s.add_argument("--channels", default="16,32,64,128")
    s.add_argument("--res-units", type=int, default=2)
    a = p.parse_args()
    {"unet": preset_unet, "smp": preset_smp, "segformer": preset_segformer, "monai": preset_monai}[a.preset](a)


if __name__ == "__main__":
    main()
