#!/usr/bin/env python3
"""Writes the small generated seeds of the fuzzer's corpus (tests/fuzz/corpus).

Run once with the project's virtual environment (Pillow, numpy); the files
are committed. The other seeds are links to tests/data (small.svs,
default.svs, boxes.tiff, boxes.png), a synthetic slide made by
`wsiseg synth` (see tests/fuzz/README.md) and the models' manifests.
"""
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

here = pathlib.Path(__file__).resolve().parent / "corpus" / "slide"
rng = np.random.default_rng(13)
# A small H&E-like picture: pink background, purple blobs.
h, w = 48, 64
yy, xx = np.mgrid[0:h, 0:w]
pic = np.zeros((h, w, 3), np.uint8)
pic[...] = (230, 190, 210)
blob = (xx - 20) ** 2 + (yy - 20) ** 2 < 150
pic[blob] = (120, 60, 150)
pic = np.clip(pic.astype(int) + rng.integers(-8, 8, pic.shape), 0, 255).astype(np.uint8)
img = Image.fromarray(pic)

img.save(here / "rgb.png")
img.convert("L").save(here / "gray.png")
img.convert("LA").save(here / "gray-alpha.png")
img.convert("RGBA").save(here / "rgba.png")
img.convert("P", palette=Image.ADAPTIVE, colors=16).save(here / "palette.png")
Image.fromarray((pic[..., 0].astype(np.uint16) * 257)).save(here / "gray16.png")
img.save(here / "baseline.jpg", quality=85)
img.save(here / "progressive.jpg", quality=85, progressive=True)
img.convert("L").save(here / "gray.jpg", quality=85)
img.save(here / "strips.tif", compression=None)
img.save(here / "strips-lzw.tif", compression="tiff_lzw")
img.save(here / "strips-deflate.tif", compression="tiff_adobe_deflate")
img.convert("RGBA").save(here / "rgba-strips.tif")
# Layouts the strip reader converts (issue 27): one strip, CMYK, 16-bit and
# float grey, YCbCr in JPEG strips.
img.save(here / "one-strip.tif", compression=None, rowsperstrip=h)
img.convert("CMYK").save(here / "cmyk-strips.tif", compression="tiff_lzw")
Image.fromarray(pic[..., 1].astype(np.uint16) * 257).save(here / "gray16-strips.tif", compression="tiff_adobe_deflate")
img.convert("F").save(here / "float-strips.tif")
img.save(here / "ycbcr-jpeg-strips.tif", compression="jpeg")

# A DICOM whole-slide instance (the header reader that groups series, then
# OpenSlide's DICOM reader): small.svs as a one-file series.
with tempfile.TemporaryDirectory() as tmp:
    repo = here.parents[3]
    subprocess.run([sys.executable, repo / "scripts/make_dicom.py", repo / "tests/data/small.svs",
                    pathlib.Path(tmp) / "s", "--tile", "64"], check=True)
    (dcm,) = (pathlib.Path(tmp) / "s").glob("*.dcm")
    (here / "small.dcm").write_bytes(dcm.read_bytes())
