#!/usr/bin/env python3
"""Exports a PyTorch segmentation model for wsiseg: manifest.json plus, per --format,
model.pt (TorchScript), model.pt2 (AOTInductor package), model.onnx (ONNX).

As a library (any nn.Module that takes N×3×H×W images, or a TorchScript module):

    sys.path.insert(0, "scripts"); from export_model import export
    export(module, "models/mine", tile=512, mpp=0.5, classes=["background", "tumor"],
           activation="softmax", mean=IMAGENET_MEAN, std=IMAGENET_STD, tile_multiple=32,
           formats=("torchscript", "pt2", "onnx"))

From the command line, one preset per family (random weights unless --weights):

    python scripts/export_model.py unet     [--weights W.pt]             # the model wsiseg ships
    python scripts/export_model.py smp      --arch Unet --encoder resnet34 --classes 1 [--weights ckpt.pt]
    python scripts/export_model.py segformer [--checkpoint HF_FOLDER | --config config.json] [--install]
    python scripts/export_model.py monai    --classes 3 [--channels 16,32,64,128] [--weights ckpt.pt]

Every preset takes --out, --tile, --mpp, --class-names, --threshold, --half
(f16 channels-last, traced on CUDA: the layout that runs at PyTorch's eager
channels-last rate), --format and --no-check. --format is a comma-separated
list of (default torchscript):

- torchscript: model.pt, traced (scripted where tracing fails).
- pt2: model.pt2, torch.export + AOTInductor, with a dynamic batch (1–1024)
  and, where the model exports so, dynamic sides (multiples of tile_multiple
  up to 8192; else fixed at --tile). It compiles native code for this
  machine's CPU ISA (with --half: for CUDA, on this machine's GPU), which
  takes about a minute; the package's metadata carries wsiseg_precision,
  wsiseg_side, wsiseg_channels_last and wsiseg_tile_multiple. A TorchScript
  module is converted first (TS2EPConverter).
- onnx: model.onnx (opset 17), dynamic batch and sides; ONNX models run in f32
  on the CPU here, so --half is refused. Outputs are named by the dict's keys
  (SegFormer: "logits"), output0, output1… for a tuple, "logits" for a tensor:
  for ONNX, output_element is the output's name or index.

After writing, export() checks on random tiles that each file's output equals
the eager one and runs `wsiseg model check` on each file (when the binary is
built).

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


FORMATS = {"torchscript": "model.pt", "pt2": "model.pt2", "onnx": "model.onnx"}
MAX_SIDE = 8192
MAX_BATCH = 1024


def _trace(module: nn.Module, example: torch.Tensor):
    if isinstance(module, torch.jit.ScriptModule):
        return module
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


def _program(module, example: torch.Tensor, tile: int, tile_multiple: int):
    """torch.export of `module`: a dynamic batch and, where the model allows,
    dynamic sides; else the side fixed at `tile`. A TorchScript module goes
    through TS2EPConverter first. Returns (program, batch, side), batch and side
    "dynamic" or the fixed size."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)

    def side(name):
        d = torch.export.Dim(name, min=1, max=MAX_SIDE // tile_multiple)
        return d if tile_multiple == 1 else tile_multiple * d

    def exported(m):
        errors = []
        for dims, sides in [({0: batch, 2: side("h"), 3: side("w")}, "dynamic"), ({0: batch}, str(tile))]:
            try:
                return torch.export.export(m, (example,), dynamic_shapes=(dims,)), "dynamic", sides
            except Exception as e:
                errors.append(e)
        raise errors[-1]

    if not isinstance(module, torch.jit.ScriptModule):
        return exported(module)
    from torch._export.converter import TS2EPConverter

    program = TS2EPConverter(module, (example,)).convert()
    try:  # the converted graph, exported again, may take dynamic shapes
        return exported(program.module())
    except Exception as e:
        print(f"(the converted TorchScript module exports only with fixed shapes: {str(e).splitlines()[0]})")
        return program, str(example.shape[0]), str(tile)


def _write_pt2(module, example, path, tile, tile_multiple, half) -> dict:
    """model.pt2: the AOTInductor package, with wsiseg's metadata. Returns the metadata."""
    program, batch, side = _program(module, example, tile, tile_multiple)
    meta = {"wsiseg_precision": "f16" if half else "f32", "wsiseg_side": side,
            "wsiseg_channels_last": "1" if half else "0", "wsiseg_tile_multiple": str(tile_multiple)}
    if batch != "dynamic":
        meta["wsiseg_batch"] = batch
    # freezing: the weights become constants (batch norms folded into the
    # convolutions, weights prepacked for oneDNN on the CPU). The shipped UNet
    # on this project's 2-core machine, one `wsiseg bench` run: end to end
    # 1.17x the unfrozen package's tiles/s, model only 1.03x.
    torch._inductor.aoti_compile_and_package(program, package_path=path,
                                             inductor_configs={"aot_inductor.metadata": meta,
                                                               "freezing": True})
    return meta


class _Flat(nn.Module):
    """`module` with a dict output as a tuple in `keys` order (for the ONNX exporter)."""

    def __init__(self, module, keys):
        super().__init__()
        self.module, self.keys = module, keys

    def forward(self, x):
        out = self.module(x)
        return tuple(out[k] for k in self.keys) if isinstance(out, dict) else out


def _output_names(out) -> list:
    if isinstance(out, dict):
        return list(out)
    if isinstance(out, (tuple, list)):
        return [f"output{i}" for i in range(len(out))]
    return ["logits"]


def _write_onnx(module, example, path, names) -> None:
    """model.onnx: opset 17, dynamic batch and sides, the outputs named `names`."""
    with torch.no_grad():
        out = module(example)
    outs = list(out.values()) if isinstance(out, dict) else list(out) if isinstance(out, (tuple, list)) else [out]
    axes = {"input": {0: "batch", 2: "height", 3: "width"}}
    for name, o in zip(names, outs):
        same = o.dim() == 4 and tuple(o.shape[2:]) == tuple(example.shape[2:])
        axes[name] = {0: "batch", 2: "height", 3: "width"} if same else \
            {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} if o.dim() == 4 else {0: "batch"}
    flat = _Flat(module, names) if isinstance(out, dict) else module
    if flat is not module and isinstance(module, torch.jit.ScriptModule):  # the ONNX tracer would not enter it
        flat = torch.jit.trace(flat, example, strict=False)
    torch.onnx.export(flat, (example,), path, dynamo=False, input_names=["input"], output_names=names,
                      dynamic_axes=axes, opset_version=17)


def _run_onnx(path, x: torch.Tensor, like):
    """model.onnx on `x` with ONNX Runtime on the CPU, shaped as the eager output `like`."""
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    outs = [torch.from_numpy(o) for o in session.run(None, {"input": x.cpu().numpy()})]
    if isinstance(like, dict):
        return dict(zip(like, outs))
    return tuple(outs) if isinstance(like, (tuple, list)) else outs[0]


def export(module: nn.Module, out: str, *, tile: int, mpp, classes: list, activation: str,
           mean=IMAGENET_MEAN, std=IMAGENET_STD, tile_multiple: int = 32, output_element=None,
           output_stride: int = 1, input_scale: int = 1, channel_order: str = "rgb",
           threshold=None, name: str = None, description: str = "", extra: dict = None,
           half: bool = False, check: bool = True, formats=("torchscript",)) -> dict:
    """Writes OUT/manifest.json and, per format, OUT/model.pt (traced, or scripted
    when tracing fails), OUT/model.pt2, OUT/model.onnx; checks each against eager
    on random tiles and, when `check`, runs `wsiseg model check` on each file.
    Returns the manifest."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise SystemExit(f"unknown format {', '.join(unknown)}: choose from {', '.join(FORMATS)}")
    if half and "onnx" in formats:
        raise SystemExit("--half with onnx: ONNX models run in f32 here (export onnx without --half)")
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
    os.makedirs(out, exist_ok=True)
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
    # Each file must compute what the eager model does, on other tiles than the example.
    layout = torch.channels_last if half else torch.contiguous_format

    def tiles(n, side, seed):
        x = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(seed))
        return x.to(device, dtype).contiguous(memory_format=layout)

    tol = 1e-2 if half else 1e-4

    def difference(path, what, x, got):
        """The largest |file − eager| on `x`; exits when over `tol`."""
        want = segmentation_of(module(x), output_element).float()
        got = segmentation_of(got, output_element).float().to(want.device)
        if want.shape != got.shape:
            raise SystemExit(f"{path}: {what} gives shape {tuple(got.shape)}, the eager model {tuple(want.shape)}")
        diff = (want - got).abs().max().item()
        if not diff <= tol:
            raise SystemExit(f"{path}: {what} differs from the eager model (largest difference {diff:.3g})")
        return diff

    x = tiles(3, tile, 1)
    pair = tiles(2, tile, 0)  # torch.export and ONNX: a batch of 2 (a dimension seen at 1 specializes)
    with torch.no_grad():
        eager = module(x)
    written = []
    for fmt in formats:
        path = os.path.join(out, FORMATS[fmt])
        with torch.no_grad():
            if fmt == "torchscript":
                _trace(module, example).save(path)
                loaded = torch.jit.load(path, map_location=device)
                diff = difference(path, "TorchScript", x, loaded(x))
                print(f"wrote {path} (TorchScript = eager within {tol}: {diff:.2g})")
            elif fmt == "pt2":
                meta = _write_pt2(module, pair, path, tile, tile_multiple, half)
                loaded = torch._inductor.aoti_load_package(path)
                n = int(meta.get("wsiseg_batch", len(x)))
                diff = difference(path, "the AOTInductor package", x[:n], loaded(x[:n]))
                if meta["wsiseg_side"] == "dynamic":  # and another side
                    y = tiles(1, tile + tile_multiple, 2)
                    diff = max(diff, difference(path, f"the AOTInductor package at side {y.shape[2]}", y, loaded(y)))
                print(f"wrote {path} (batch {meta.get('wsiseg_batch', 'dynamic')}, side {meta['wsiseg_side']}; "
                      f"AOTInductor = eager within {tol}: {diff:.2g})")
            else:
                names = _output_names(eager)
                _write_onnx(module, pair, path, names)
                diff = difference(path, "ONNX Runtime", x, _run_onnx(path, x, eager))
                print(f"wrote {path} (outputs {', '.join(names)}; ONNX Runtime = eager within {tol}: {diff:.2g})")
        written.append(path)
    if check:
        wsiseg = os.path.join(REPO, "target", "release", "wsiseg")
        if os.path.exists(wsiseg):
            for path in written:
                args = [wsiseg, "model", "check", path, "--device", device]
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
                       check=not a.no_check, tile_multiple=TILE_MULTIPLE, formats=a.format, half=a.half)


def export_unet(model, out, tile, mpp, description, extra, check=False, tile_multiple=None,
                formats=("torchscript",), half=False) -> dict:
    """The shipped UNet (scripts/train_model.py calls this after training)."""
    if tile_multiple is None:
        sys.path.insert(0, HERE)
        from unet import TILE_MULTIPLE as tile_multiple
    return export(model, out, tile=tile, mpp=mpp, classes=["background", "tumor"],
                  activation="softmax", mean=MEAN, std=STD, tile_multiple=tile_multiple,
                  name="wsiseg-unet-16", description=description, extra=extra, check=check,
                  formats=formats, half=half)


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
                  half=a.half, check=not a.no_check, formats=a.format,
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
                  threshold=a.threshold, half=a.half, check=not a.no_check, formats=a.format,
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
                  threshold=a.threshold, half=a.half, check=not a.no_check, formats=a.format,
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
        s.add_argument("--format", type=lambda v: tuple(f.strip() for f in v.split(",")), default=("torchscript",),
                       help=f"comma-separated, of {', '.join(FORMATS)} [torchscript]")
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
