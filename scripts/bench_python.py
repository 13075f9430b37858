#!/usr/bin/env python3
"""Benchmarks of `import wsiseg` against what a researcher uses today, in
one run on one slide (figures printed, nothing asserted):

1. read_region of 512-px level-0 tiles: wsiseg (its direct JPEG reader)
   against openslide-python, one thread and all cores (threads: both
   release the GIL while they decode);
2. tiles(): wsiseg's background reader threads against a torch DataLoader
   over openslide-python with as many workers;
3. predict: the shipped TorchScript model on batches of tiles through
   wsiseg against the same file called from torch.

    scripts/bench_python.py [--slide S] [--tiles N] [--rounds R]

Without --slide it makes a 8192² synthetic slide (wsiseg.synth) in a
temporary folder. Run it in the setup environment
(~/.cache/wsiseg/venv/bin/python).
"""

import argparse
import os
import pathlib
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import wsiseg  # imports torch first
import openslide
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]


def best(f, rounds):
    """The median wall time of f() over `rounds` runs."""
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slide", type=pathlib.Path)
    ap.add_argument("--tiles", type=int, default=256, help="tiles per read measurement")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    slide_path = args.slide
    if slide_path is None:
        slide_path, _ = wsiseg.synth(tmp.name, seed=42, size=(8192, 8192), mpp=0.5)
    cores = os.cpu_count() or 1
    ours, theirs = wsiseg.open(slide_path), openslide.OpenSlide(str(slide_path))
    w, h = ours.dimensions
    rng = random.Random(1)
    places = [(rng.randrange(0, w - 512), rng.randrange(0, h - 512)) for _ in range(args.tiles)]
    print(f"slide {slide_path} ({w}×{h}, {ours.format}), {cores} cores, median of {args.rounds}")

    def read_ours(pool):
        list(pool.map(lambda p: ours.read_region(p[0], p[1], 512, 512), places))

    def read_theirs(pool):
        list(pool.map(lambda p: theirs.read_region(p, 0, (512, 512)).convert("RGB"), places))

    for threads in sorted({1, cores}):
        with ThreadPoolExecutor(threads) as pool:
            a = args.tiles / best(lambda: read_ours(pool), args.rounds)
            b = args.tiles / best(lambda: read_theirs(pool), args.rounds)
        print(f"read_region 512 px, {threads} thread(s): wsiseg {a:.0f} tiles/s, "
              f"openslide-python {b:.0f} tiles/s: {a / b:.2f}×")

    workers = max(1, cores)

    class Grid(torch.utils.data.Dataset):
        def __init__(self):
            self.places = [(x, y) for y in range(0, h - 255, 256) for x in range(0, w - 255, 256)]
            self.slide = None

        def __len__(self):
            return len(self.places)

        def __getitem__(self, i):
            if self.slide is None:
                self.slide = openslide.OpenSlide(str(slide_path))
            x, y = self.places[i]
            return torch.from_numpy(np.array(self.slide.read_region((x, y), 0, (256, 256)).convert("RGB")))

    def loader():
        n = 0
        for batch in torch.utils.data.DataLoader(Grid(), batch_size=32, num_workers=workers):
            n += len(batch)
        return n

    def stream():
        n = 0
        for _, _, a in ours.tiles(level=0, tile=256, tissue=False, threads=workers):
            n += 1
        return n

    total = len(Grid())
    a = total / best(stream, args.rounds)
    b = total / best(loader, args.rounds)
    print(f"tiles() 256 px, every tile ({total}), {workers} threads: wsiseg {a:.0f} tiles/s; "
          f"DataLoader over openslide-python, {workers} workers: {b:.0f} tiles/s: {a / b:.2f}×")

    engine = wsiseg.Engine(REPO / "models/unet", device="cpu")
    batch = np.stack([ours.read_region(x, y, 256, 256) for x, y in (places * 2)[:64]])
    module = torch.jit.load(str(REPO / "models/unet/model.pt")).eval()
    manifest = engine.manifest
    mean = torch.tensor(manifest["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(manifest["std"]).view(1, 3, 1, 1)

    def torch_predict():
        with torch.inference_mode():
            for k in range(0, len(batch), 8):
                x = torch.from_numpy(batch[k:k + 8]).permute(0, 3, 1, 2).float().div(255)
                module((x - mean) / std).argmax(1).to(torch.uint8).numpy()

    engine.predict(batch)  # warm-up, as torch's first call below
    torch_predict()
    # Alternated, so that both see the same machine.
    ours_s, torch_s = [], []
    for _ in range(max(args.rounds, 5)):
        ours_s.append(best(lambda: engine.predict(batch), 1))
        torch_s.append(best(torch_predict, 1))
    a = len(batch) / statistics.median(ours_s)
    b = len(batch) / statistics.median(torch_s)
    print(f"predict 256 px, 64 tiles in batches of 8, {torch.get_num_threads()} torch threads: wsiseg {a:.1f} tiles/s, "
          f"torch on the same TorchScript file {b:.1f} tiles/s: {a / b:.2f}×")


if __name__ == "__main__":
    main()
