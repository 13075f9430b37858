#!/usr/bin/env python3
"""Trains the shipped UNet on synthetic slides and exports it to models/unet/.

    ~/.cache/wsiseg/venv/bin/python scripts/train_model.py [--minutes 25]

1. `wsiseg synth` makes the training slides (seeds in TRAIN_SEEDS, written to
   a temporary folder) with their ground-truth masks.
2. Level 1 of each slide (1.0 µm/px, the resolution the manifest declares)
   and of its truth mask are read with OpenSlide.
3. The UNet is trained on random crops (flips, rotations, stain jitter) with
   cross-entropy + soft Dice, on the CPU, for --minutes of wall time.
4. The model is exported as TorchScript with a manifest that records the
   training seeds. Evaluation slides must use other seeds (the README uses 101-103).

Needs: target/release/wsiseg (scripts/setup.sh builds it), and torch, numpy,
openslide-python and openslide-bin in the Python environment (setup.sh installs them).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import openslide
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from export_model import DEFAULT_OUT, MEAN, STD, export_unet  # noqa: E402
from unet import UNet  # noqa: E402

REPO = os.path.dirname(HERE)
TRAIN_SEEDS = list(range(1001, 1009))
# Slide sizes (level 0 at 0.25 µm/px) cycle through these, so that tumor
# regions of several scales are seen.
SIZES = ["8192x8192", "12288x12288", "8192x12288", "16384x12288"]
LEVEL = 1  # 1.0 µm/px


def load(folder: str, seed: int):
    slide = openslide.OpenSlide(os.path.join(folder, f"synth-{seed}.svs"))
    truth = openslide.OpenSlide(os.path.join(folder, "truth", f"synth-{seed}.tiff"))
    w, h = slide.level_dimensions[LEVEL]
    assert truth.level_dimensions[LEVEL] == (w, h), (seed, truth.level_dimensions)
    rgb = np.asarray(slide.read_region((0, 0), LEVEL, (w, h)).convert("RGB"))
    labels = np.asarray(truth.read_region((0, 0), LEVEL, (w, h)))[:, :, 0].copy()
    return rgb, (labels > 0).astype(np.int64)


def batch(data, size: int, n: int, rng: np.random.Generator):
    xs, ys = [], []
    for _ in range(n):
        rgb, lab = data[rng.integers(len(data))]
        h, w = lab.shape
        # Half the crops centred on tumor, so the rarer class is seen often.
        if rng.random() < 0.5 and lab.any():
            yy, xx = np.nonzero(lab)
            i = rng.integers(len(yy))
            y0 = int(np.clip(yy[i] - size // 2, 0, h - size))
            x0 = int(np.clip(xx[i] - size // 2, 0, w - size))
        else:
            y0, x0 = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        x = rgb[y0 : y0 + size, x0 : x0 + size].astype(np.float32) / 255.0
        y = lab[y0 : y0 + size, x0 : x0 + size]
        k = int(rng.integers(4))
        x, y = np.rot90(x, k), np.rot90(y, k)
        if rng.random() < 0.5:
            x, y = x[:, ::-1], y[:, ::-1]
        # Stain and brightness jitter.
        x = x * rng.uniform(0.9, 1.1, 3) + rng.uniform(-0.05, 0.05, 3)
        xs.append(np.ascontiguousarray(x))
        ys.append(np.ascontiguousarray(y))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x.float(), torch.from_numpy(np.stack(ys))


def dice_of(model, rgb, lab) -> float:
    model.eval()
    h, w = lab.shape
    h8, w8 = h - h % 8, w - w % 8
    x = torch.from_numpy(rgb[:h8, :w8].astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        pred = model(x).argmax(1)[0].numpy()
    t = lab[:h8, :w8]
    tp = np.sum((pred == 1) & (t == 1))
    model.train()
    return 2 * tp / max(1, np.sum(pred == 1) + np.sum(t == 1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=25.0, help="wall-clock training budget")
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--wsiseg", default=os.path.join(REPO, "target", "release", "wsiseg"))
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 2)
    rng = np.random.default_rng(0)

    with tempfile.TemporaryDirectory(prefix="wsiseg-train-") as tmp:
        data = []
        for i, seed in enumerate(TRAIN_SEEDS):
            size = SIZES[i % len(SIZES)]
            subprocess.run(
                [args.wsiseg, "-q", "synth", "--out", tmp, "--seed", str(seed), "--size", size],
                check=True,
            )
            data.append(load(tmp, seed))
            print(f"slide {seed} {size}: tumor {100 * data[-1][1].mean():.1f}% at level {LEVEL}", flush=True)
    val = data.pop()  # the last training seed is held out to watch progress

    model = UNet(classes=2, width=16)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    start = time.time()
    budget = args.minutes * 60
    step = 0
    while time.time() - start < budget:
        frac = (time.time() - start) / budget
        for g in opt.param_groups:
            g["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * frac)))
        x, y = batch(data, args.crop, args.batch, rng)
        logits = model(x)
        prob = logits.softmax(1)[:, 1]
        inter = (prob * y).sum()
        soft_dice = 1 - (2 * inter + 1) / (prob.sum() + y.sum() + 1)
        loss = F.cross_entropy(logits, y) + soft_dice
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            crop = (val[0][:1536, :1536], val[1][:1536, :1536])
            print(f"step {step} {time.time() - start:.0f}s loss {loss.item():.4f} "
                  f"val Dice (crop) {dice_of(model, *crop):.4f}", flush=True)
    final = dice_of(model, *val)
    print(f"trained {step} steps in {time.time() - start:.0f}s; held-out seed {TRAIN_SEEDS[-1]} Dice {final:.4f}")
    export_unet(
        model,
        args.out,
        tile=256,
        mpp=1.0,
        description=(
            "4-level UNet (16-128 channels) trained on wsiseg synthetic H&E slides "
            "(tumor vs background at 1.0 um/px); not trained on real tissue"
        ),
        extra={
            "trained": True,
            "script": "scripts/train_model.py",
            "training_seeds": TRAIN_SEEDS,
            "training_sizes": SIZES,
            "steps": step,
            "crop": args.crop,
            "batch": args.batch,
            "validation_seed": TRAIN_SEEDS[-1],
            "validation_dice": round(float(final), 4),
        },
    )


if __name__ == "__main__":
    main()
