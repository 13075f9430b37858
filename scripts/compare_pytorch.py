#!/usr/bin/env python3
"""wsiseg against the plain PyTorch pipeline a researcher would write.

The PyTorch pipeline: OpenSlide in DataLoader workers (one handle each), the
same TorchScript model file, the same tile plan as wsiseg (tiles of the
model's size stepping by tile - overlap, each contributing its centre "core",
halo overlap/2, padded with white past the edge), batches on the device,
arg-max, numpy stitching, a PIL PNG. On CUDA it runs as a careful user would:
f16, channels-last, pinned memory, non_blocking copies.

Each run times, on the same slide and in the same call:
  1. PyTorch model only: one batch already on the device, in the layout and
     precision the pipeline feeds it (best of 3 timings, after warm-up);
  2. wsiseg's model only (tch on the same file, the same way:
     `wsiseg bench --stages model`);
  3. the PyTorch pipeline as the command a researcher runs (`python script.py`:
     interpreter start, `import torch`, model load, every tile, the PNG on
     disk); its time from model load to the PNG is printed too;
  4. `wsiseg segment` as a command (process start, model load, every tile,
     the PNG) with the same tile, overlap, batch, level and precision;
and prints the wall times, tiles/s, each one's ratio to PyTorch's model-only
rate, wsiseg's speed against the PyTorch pipeline (whole commands, and
against PyTorch's in-process time), and the share of mask pixels on which
the two masks agree.

    scripts/compare_pytorch.py --synth 16384x16384 --runs 3
    scripts/compare_pytorch.py SLIDE --device cuda --model models/resnet34-unet

Run it with the setup's virtual environment (~/.cache/wsiseg/venv/bin/python).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openslide
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
WSISEG_WINDOWS = []  # (start, end) in Unix seconds of each `wsiseg segment` run


def gpu_busy(json_path, csv_path):
    """Share of nvidia-smi samples with the GPU ≥ 90% busy during wsiseg's
    runs (the first and last 10% of each run left out: start-up and the end)."""
    from datetime import datetime
    windows = json.loads(json_path.read_text())["wsiseg_unix_windows"]
    samples = []
    for line in csv_path.read_text().splitlines():
        stamp, util = [f.strip() for f in line.split(",")[:2]]
        try:
            t = datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
            samples.append((t, float(util)))
        except ValueError:
            continue
    for start, end in windows:
        cut = 0.1 * (end - start)
        inside = [u for t, u in samples if start + cut <= t <= end - cut]
        if not inside:
            print(f"gpu busy: no samples during wsiseg's run {start:.0f}–{end:.0f}")
            continue
        busy = sum(u >= 90 for u in inside) / len(inside)
        print(f"gpu busy during wsiseg's steady state: {100 * busy:.0f}% of {len(inside)} samples "
              f"≥ 90% (mean utilisation {sum(inside) / len(inside):.0f}%)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("slide", nargs="?", type=Path, help="slide to segment (or --synth)")
    p.add_argument("--synth", metavar="WxH", help="make a synthetic slide of this size first")
    p.add_argument("--model", type=Path, default=REPO / "models" / "unet")
    p.add_argument("--level", type=int, default=1, help="pyramid level to segment [1]")
    p.add_argument("--overlap", type=int, help="[tile / 8, as wsiseg]")
    p.add_argument("--batch", type=int, help="[8 on the CPU, 32 on CUDA, as wsiseg]")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] [cpu]")
    p.add_argument("--precision", choices=["f32", "f16"], help="[f32 on the CPU, f16 on CUDA]")
    p.add_argument("--workers", type=int, default=max(2, min(24, (os.cpu_count() or 2) - 2)),
                   help="DataLoader workers [all cores but two, 2 to 24: wsiseg's readers]")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--wsiseg", type=Path, default=REPO / "target" / "release" / "wsiseg")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--pipeline-only", nargs=2, type=Path, metavar=("SLIDE", "PNG"),
                   help=argparse.SUPPRESS)  # the PyTorch pipeline as its own process
    p.add_argument("--gpu-busy", nargs=2, type=Path, metavar=("JSON", "CSV"),
                   help="summarise nvidia-smi samples (timestamp, utilization.gpu) taken "
                        "during wsiseg's runs recorded in JSON, then exit")
    return p.parse_args()


def load_model(args, device, dtype):
    manifest = json.loads((args.model / "manifest.json").read_text())
    model = torch.jit.load(str(args.model / "model.pt"), map_location=device).eval()
    model = model.to(dtype)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    mean = torch.tensor(manifest["mean"], device=device, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(manifest["std"], device=device, dtype=dtype).view(1, 3, 1, 1)
    return model, manifest, mean, std


def prepare(batch_u8, mean, std, dtype):
    """N×H×W×3 bytes on the device → normalized N×3×H×W (channels-last)."""
    x = batch_u8.permute(0, 3, 1, 2).to(dtype)
    return (x / 255.0 - mean) / std


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Tiles(torch.utils.data.Dataset):
    """The tiles of one level, as wsiseg plans them; one OpenSlide handle per worker."""

    def __init__(self, path, level, tile, overlap):
        self.path, self.level, self.tile = str(path), level, tile
        with openslide.OpenSlide(self.path) as s:
            self.size = s.level_dimensions[level]
            self.downsample = s.level_downsamples[level]
        self.stride = tile - overlap
        self.halo = overlap // 2
        self.cols = -(-self.size[0] // self.stride)
        self.rows = -(-self.size[1] // self.stride)
        self.slide = None

    def __len__(self):
        return self.cols * self.rows

    def origin(self, n):
        """Top-left of tile n's core in level pixels."""
        return (n % self.cols) * self.stride, (n // self.cols) * self.stride

    def __getitem__(self, n):
        if self.slide is None:
            self.slide = openslide.OpenSlide(self.path)
        cx, cy = self.origin(n)
        x, y = cx - self.halo, cy - self.halo
        location = (round(x * self.downsample), round(y * self.downsample))
        rgba = np.asarray(self.slide.read_region(location, self.level, (self.tile, self.tile)))
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255  # past the slide's edge: white, as wsiseg pads
        return torch.from_numpy(rgb)


def pytorch_model_only(model, mean, std, dtype, device, batch, tile):
    """Tiles/s of the model alone on a batch already on the device."""
    x = torch.randint(0, 256, (batch, tile, tile, 3), dtype=torch.uint8, device=device)
    x = prepare(x, mean, std, dtype)
    with torch.inference_mode():
        for _ in range(3):
            model(x)
        iterations = 20 if device.type == "cuda" else 3
        best = float("inf")
        for _ in range(3):
            synchronize(device)
            t0 = time.perf_counter()
            for _ in range(iterations):
                model(x)
            synchronize(device)
            best = min(best, (time.perf_counter() - t0) / iterations)
    return batch / best


def pytorch_pipeline(args, slide, out_png, device, dtype, batch, overlap):
    """The plain pipeline; returns (wall seconds, tiles)."""
    t0 = time.perf_counter()
    model, manifest, mean, std = load_model(args, device, dtype)
    tile = manifest["tile"]
    tiles = Tiles(slide, args.level, tile, overlap)
    loader = torch.utils.data.DataLoader(
        tiles, batch_size=batch, num_workers=args.workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
    )
    width, height = tiles.size
    mask = np.zeros((height, width), dtype=np.uint8)
    n = 0
    with torch.inference_mode():
        for batch_u8 in loader:
            x = prepare(batch_u8.to(device, non_blocking=True), mean, std, dtype)
            labels = model(x).argmax(1).to(torch.uint8).cpu().numpy()
            for i in range(labels.shape[0]):
                cx, cy = tiles.origin(n + i)
                w, h = min(tiles.stride, width - cx), min(tiles.stride, height - cy)
                mask[cy:cy + h, cx:cx + w] = labels[i, tiles.halo:tiles.halo + h, tiles.halo:tiles.halo + w]
            n += labels.shape[0]
    Image.fromarray(mask).save(out_png)
    return time.perf_counter() - t0, n


def pytorch_command(args, slide, out_png, precision, batch, overlap):
    """The PyTorch pipeline as a command; returns (wall s, in-process s, tiles)."""
    cmd = [sys.executable, __file__, "--pipeline-only", slide, out_png, "--model", args.model,
           "--level", str(args.level), "--overlap", str(overlap), "--batch", str(batch),
           "--device", args.device, "--precision", precision, "--workers", str(args.workers)]
    t0 = time.perf_counter()
    out = run(cmd)
    wall = time.perf_counter() - t0
    inside = json.loads(out)
    return wall, inside["seconds"], inside["tiles"]


def run(cmd):
    """Runs a command; its stdout and stderr together."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"error: {' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr.strip()}")
    return r.stdout + r.stderr


def wsiseg_model_only(args, slide, precision, batch):
    out = run([args.wsiseg, "bench", slide, "--model", args.model, "--device", args.device,
               "--precision", precision, "--batch", str(batch), "--stages", "model", "--json", "-q"])
    return json.loads(out)["model_only_tiles_s"]


def wsiseg_segment(args, slide, out_dir, precision, batch, overlap):
    """`wsiseg segment` as a whole process; returns (wall seconds, tiles, mask path)."""
    cmd = [args.wsiseg, "segment", slide, "--model", args.model, "--out", out_dir,
           "--device", args.device, "--precision", precision, "--batch", str(batch),
           "--level", str(args.level), "--overlap", str(overlap), "--no-tissue-mask",
           "--formats", "png", "--overwrite"]
    t0, unix0 = time.perf_counter(), time.time()
    log = run(cmd)
    wall = time.perf_counter() - t0
    WSISEG_WINDOWS.append((unix0, time.time()))
    found = re.search(r"(\d+) tiles in", log)
    if not found:
        sys.exit(f"error: wsiseg segment did not say how many tiles it ran:\n{log}")
    return wall, int(found.group(1)), out_dir / f"{slide.stem}.mask.png"


def agreement(a_png, b_png):
    a = np.asarray(Image.open(a_png))
    b = np.asarray(Image.open(b_png))
    if a.shape != b.shape:
        sys.exit(f"error: masks differ in size: {a_png} {a.shape}, {b_png} {b.shape}")
    return float((a == b).mean())


def main():
    args = parse_args()
    if args.gpu_busy:
        gpu_busy(*args.gpu_busy)
        return
    if args.pipeline_only:
        device = torch.device(args.device)
        dtype = torch.float16 if args.precision == "f16" else torch.float32
        slide, png = args.pipeline_only
        seconds, tiles = pytorch_pipeline(args, slide, png, device, dtype, args.batch, args.overlap)
        print(json.dumps({"seconds": seconds, "tiles": tiles}))
        return
    if not args.wsiseg.exists():
        sys.exit(f"error: {args.wsiseg}: no wsiseg binary (cargo build --release, or --wsiseg)")
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    precision = args.precision or ("f16" if cuda else "f32")
    dtype = torch.float16 if precision == "f16" else torch.float32
    batch = args.batch or (32 if cuda else 8)
    work = Path(tempfile.mkdtemp(prefix="wsiseg-compare-"))
    try:
        slide = args.slide
        if args.synth:
            run([args.wsiseg, "synth", "--out", work, "--size", args.synth, "--seed", "4242", "-q"])
            slide = work / "synth-4242.svs"
        if slide is None:
            sys.exit("error: give a SLIDE or --synth WxH")
        model, manifest, mean, std = load_model(args, device, dtype)
        tile = manifest["tile"]
        overlap = args.overlap if args.overlap is not None else tile // 8
        print(f"compare: {slide} level {args.level}, model {manifest['name']}, {tile}-px tiles, "
              f"overlap {overlap}, batch {batch}, {precision} on {args.device}, "
              f"{args.workers} DataLoader workers, torch {torch.__version__}, "
              f"{torch.get_num_threads()} torch threads, {os.cpu_count()} cores", flush=True)
        runs = []
        for r in range(args.runs):
            torch_model = pytorch_model_only(model, mean, std, dtype, device, batch, tile)
            tch_model = wsiseg_model_only(args, slide, precision, batch)
            py_wall, py_inside, py_tiles = pytorch_command(args, slide, work / "pytorch.png",
                                                           precision, batch, overlap)
            ws_wall, ws_tiles, ws_png = wsiseg_segment(args, slide, work / "wsiseg", precision,
                                                       batch, overlap)
            if ws_tiles != py_tiles:
                sys.exit(f"error: wsiseg ran {ws_tiles} tiles, PyTorch {py_tiles}")
            fig = {
                "pytorch_model_only_tiles_s": torch_model,
                "wsiseg_model_only_tiles_s": tch_model,
                "model_only_wsiseg_vs_pytorch": tch_model / torch_model,
                "tiles": py_tiles,
                "pytorch_wall_s": py_wall,
                "pytorch_in_process_s": py_inside,
                "pytorch_tiles_s": py_tiles / py_wall,
                "pytorch_vs_model_only": py_tiles / py_wall / torch_model,
                "wsiseg_wall_s": ws_wall,
                "wsiseg_tiles_s": ws_tiles / ws_wall,
                "wsiseg_vs_model_only": ws_tiles / ws_wall / torch_model,
                "wsiseg_vs_pytorch_pipeline": py_wall / ws_wall,
                "wsiseg_vs_pytorch_in_process": py_inside / ws_wall,
                "mask_agreement": agreement(work / "pytorch.png", ws_png),
            }
            runs.append(fig)
            print(f"run {r + 1}: {py_tiles} tiles | model only: PyTorch {torch_model:.1f} tiles/s, "
                  f"wsiseg {tch_model:.1f} ({fig['model_only_wsiseg_vs_pytorch']:.2f}×) | "
                  f"PyTorch pipeline {py_wall:.1f} s ({py_inside:.1f} s in process), "
                  f"{fig['pytorch_tiles_s']:.1f} tiles/s "
                  f"({fig['pytorch_vs_model_only']:.2f}× model only) | wsiseg {ws_wall:.1f} s, "
                  f"{fig['wsiseg_tiles_s']:.1f} tiles/s ({fig['wsiseg_vs_model_only']:.2f}× model only) | "
                  f"wsiseg {fig['wsiseg_vs_pytorch_pipeline']:.2f}× the PyTorch pipeline "
                  f"({fig['wsiseg_vs_pytorch_in_process']:.2f}× its in-process time) | "
                  f"masks agree on {100 * fig['mask_agreement']:.3f}%", flush=True)
        print(f"{len(runs)} runs, lowest – highest:")
        for key in ["model_only_wsiseg_vs_pytorch", "pytorch_vs_model_only",
                    "wsiseg_vs_model_only", "wsiseg_vs_pytorch_pipeline",
                    "wsiseg_vs_pytorch_in_process"]:
            values = [f[key] for f in runs]
            print(f"  {key:<32} {min(values):.3f}× – {max(values):.3f}×")
        values = [100 * f["mask_agreement"] for f in runs]
        print(f"  {'mask_agreement':<32} {min(values):.3f}% – {max(values):.3f}%")
        if args.json:
            args.json.write_text(json.dumps({"runs": runs, "device": args.device,
                                             "wsiseg_unix_windows": WSISEG_WINDOWS}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
