#!/usr/bin/env python3
"""Benchmark of `wsiseg view` on loopback (issue 30): tile latency p50/p99,
cold (made on demand) and warm (from the server's cache), for slide and mask
tiles; tiles/s with 8 concurrent clients; and the same slide's tiles from
openslide-python's DeepZoomGenerator (same tile size, JPEG at the same
quality), all in one run, as ratios.

    python3 scripts/bench_view.py [--size 16384x16384] [--tiles 300] [--work DIR]

Uses target/release/wsiseg (scripts/setup.sh builds it) and the Python of
the setup environment for openslide-python (run it with
~/.cache/wsiseg/venv/bin/python). Makes a synthetic slide, segments it with
models/unet on the CPU, then serves the folder. A bounded loop: figures only,
nothing asserted.
"""

import argparse
import http.client
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WSISEG = os.path.join(ROOT, "target", "release", "wsiseg")
TILE, OVERLAP = 510, 1


def max_level(w, h):
    return max(0, (max(w, h) - 1).bit_length())


def tiles_of(w, h, level):
    scale = 2 ** (max_level(w, h) - level)
    lw, lh = -(-w // scale), -(-h // scale)
    return [(c, r) for r in range(-(-lh // TILE)) for c in range(-(-lw // TILE))]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Client:
    def __init__(self, host, port):
        self.host, self.port = host, port

    def get(self, path):
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        t = time.perf_counter()
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        dt = time.perf_counter() - t
        c.close()
        if r.status != 200:
            raise SystemExit(f"bench_view: {path}: HTTP {r.status}: {body[:200]!r}")
        return dt, body


def timed(client, paths):
    return [client.get(p)[0] * 1000 for p in paths]


def concurrent(client, paths, clients=8):
    lock = threading.Lock()
    todo = list(paths)

    def work():
        while True:
            with lock:
                if not todo:
                    return
                p = todo.pop()
            client.get(p)

    t = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(paths) / (time.perf_counter() - t)


def line(name, ms):
    return f"{name:<34} p50 {pct(ms, 50):7.2f} ms   p99 {pct(ms, 99):7.2f} ms   ({len(ms)} tiles)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="16384x16384")
    ap.add_argument("--tiles", type=int, default=300, help="distinct tiles per measurement")
    ap.add_argument("--work", help="folder for the slide and results (default: a temporary one)")
    args = ap.parse_args()
    if not os.access(WSISEG, os.X_OK):
        raise SystemExit(f"bench_view: {WSISEG}: not built (run scripts/setup.sh)")
    work = args.work or tempfile.mkdtemp(prefix="wsiseg-bench-view-")
    os.makedirs(work, exist_ok=True)
    run = lambda *a: subprocess.run([WSISEG, *a], cwd=work, check=True, stderr=subprocess.DEVNULL)
    slide = os.path.join(work, "slides", "synth-401.svs")
    if not os.path.exists(os.path.join(work, "out", "synth-401.run.json")):
        run("synth", "--out", "slides", "--seed", "401", "--size", args.size, "--overwrite")
        run("segment", slide, "--model", os.path.join(ROOT, "models", "unet"), "--device", "cpu",
            "--out", "out", "--overwrite")
    server = subprocess.Popen([WSISEG, "view", "out", "--port", "0"], cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = server.stdout.readline().strip()
        hostport, token = url.split("//")[1].split("/")[:2]
        host, port = hostport.split(":")
        client = Client(host, int(port))
        info = json.loads(client.get(f"/{token}/api/slide/0")[1])
        w, h = info["width"], info["height"]
        mask = info["layers"]["mask"]
        rng = random.Random(1)
        top = max_level(w, h)
        slide_tiles = rng.sample(tiles_of(w, h, top), min(args.tiles, len(tiles_of(w, h, top))))
        mtop = max_level(mask["width"], mask["height"])
        mtiles = tiles_of(mask["width"], mask["height"], mtop)
        mask_tiles = rng.sample(mtiles, min(args.tiles, len(mtiles)))
        sp = [f"/{token}/tile/0/slide/{top}/{c}_{r}.jpeg" for c, r in slide_tiles]
        mp = [f"/{token}/tile/0/mask/{mtop}/{c}_{r}.png" for c, r in mask_tiles]
        client.get(sp[0])  # the slide opened
        sp = sp[1:]
        cold_s, warm_s = timed(client, sp), timed(client, sp)
        cold_m, warm_m = timed(client, mp), timed(client, mp)
        # 8 clients: tiles not asked for yet (cold), then the same again (warm).
        rest = [t for t in tiles_of(w, h, top) if t not in set(slide_tiles)]
        more = [f"/{token}/tile/0/slide/{top}/{c}_{r}.jpeg" for c, r in rng.sample(rest, min(args.tiles, len(rest)))]
        if not more:
            raise SystemExit("bench_view: the slide is too small for a second set of tiles (--size)")
        rate_cold = concurrent(client, more)
        rate_warm = concurrent(client, more * 4)
    finally:
        server.terminate()
        server.wait()

    print(f"wsiseg view on loopback: {os.path.basename(slide)} {w}×{h}, tiles of {TILE}+{OVERLAP} px, "
          f"{os.cpu_count()} cores")
    print(line("slide tiles, cold (made now)", cold_s))
    print(line("slide tiles, warm (cached)", warm_s))
    print(line("mask tiles, cold", cold_m))
    print(line("mask tiles, warm", warm_m))
    print(f"{'8 clients, slide tiles, cold':<34} {rate_cold:7.1f} tiles/s")
    print(f"{'8 clients, slide tiles, warm':<34} {rate_warm:7.1f} tiles/s")
    try:
        import openslide
        from openslide.deepzoom import DeepZoomGenerator
    except ImportError:
        print("openslide-python not importable: no DeepZoomGenerator comparison "
              "(run with ~/.cache/wsiseg/venv/bin/python)")
        return
    dz = DeepZoomGenerator(openslide.OpenSlide(slide), tile_size=TILE, overlap=OVERLAP, limit_bounds=False)
    level = dz.level_count - 1
    assert dz.level_dimensions[level] == (w, h), (dz.level_dimensions[level], w, h)
    ms = []
    for c, r in slide_tiles[1:]:
        t = time.perf_counter()
        buf = io.BytesIO()
        dz.get_tile(level, (c, r)).save(buf, "jpeg", quality=85)
        ms.append((time.perf_counter() - t) * 1000)
    print(line("openslide-python DeepZoom + JPEG", ms))
    print(f"ratio (DeepZoomGenerator time / wsiseg view cold, same tiles): "
          f"p50 {pct(ms, 50) / pct(cold_s, 50):.2f}×, p99 {pct(ms, 99) / pct(cold_s, 99):.2f}× "
          f"(wsiseg's figure includes HTTP on loopback; DeepZoom's is the in-process call)")


if __name__ == "__main__":
    main()
