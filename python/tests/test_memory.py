"""Iterating every tile of a 100000×80000 slide from Python holds flat memory."""

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np

TILE = 512


def shared_tile_tiff(path, width, height, seed):
    """A width×height RGB tiled TIFF (512² uncompressed tiles) whose every
    tile entry points at the same stored 512×512 picture: real pixels to
    read and copy at any size, in a file of a few MB."""
    across, down = -(-width // TILE), -(-height // TILE)
    n = across * down
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (TILE, TILE, 3), dtype=np.uint8).tobytes()
    entries = [
        (256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
        (262, 3, 1, 2), (277, 3, 1, 3), (284, 3, 1, 1), (322, 3, 1, TILE), (323, 3, 1, TILE),
        (324, 4, n, None), (325, 4, n, None),
    ]
    ifd_len = 2 + 12 * len(entries) + 4
    offsets_at = 8 + ifd_len
    counts_at = offsets_at + 4 * n
    data_at = counts_at + 4 * n
    out = bytearray(b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        value = {324: offsets_at, 325: counts_at}.get(tag, value)
        out += struct.pack("<HHI", tag, kind, count)
        out += struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
    out += struct.pack("<I", 0)
    out += struct.pack(f"<{n}I", *([data_at] * n))
    out += struct.pack(f"<{n}I", *([len(pixels)] * n))
    out += pixels
    path.write_bytes(bytes(out))
    return n


CHILD = textwrap.dedent("""
    import json, resource, sys, wsiseg
    slide = wsiseg.open(sys.argv[1])
    n, checksum = 0, 0
    for x, y, a in slide.tiles(level=0, tile=512, tissue=False, threads=2):
        n += 1
        checksum += int(a[7, 7, 0])
    print(json.dumps({"tiles": n, "checksum": checksum,
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
""")


def iterate(path):
    p = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_every_tile_of_a_100000_by_80000_slide_in_flat_memory(tmp_path):
    small, big = tmp_path / "small.tif", tmp_path / "big.tif"
    n_small = shared_tile_tiff(small, 20000, 20000, 1)
    n_big = shared_tile_tiff(big, 100000, 80000, 1)
    a, b = iterate(small), iterate(big)
    assert a["tiles"] == n_small and b["tiles"] == n_big == 196 * 157
    # Every tile holds the same stored picture: the same pixel each time.
    assert b["checksum"] == b["tiles"] * (a["checksum"] // a["tiles"])
    ratio = b["peak_rss_mib"] / a["peak_rss_mib"]
    print(f"peak RSS {b['peak_rss_mib']:.0f} MiB for 100000×80000 ({b['tiles']} tiles) vs "
          f"{a['peak_rss_mib']:.0f} MiB for 20000² ({a['tiles']} tiles): {ratio:.3f}×")
    assert ratio <= 1.25, (a, b)
