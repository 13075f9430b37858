"""wsiseg.open: levels, regions, thumbnails and tiles through the engine's readers."""

import json
import random

import numpy as np
import pytest

import wsiseg
from conftest import run_cli


def test_levels_and_resolution_are_the_files(default_svs):
    import openslide

    slide = wsiseg.open(default_svs)
    ref = openslide.OpenSlide(str(default_svs))
    assert slide.dimensions == ref.dimensions
    assert [(w, h) for w, h, _ in slide.levels] == list(ref.level_dimensions)
    mpp = float(ref.properties["openslide.mpp-x"])
    assert slide.mpp == pytest.approx((mpp, mpp))
    assert slide.format == "aperio"
    assert "label" in dict(slide.properties["associated"])


def test_read_region_is_openslides_through_openslide_and_within_bound_directly(default_svs):
    import openslide

    ref = openslide.OpenSlide(str(default_svs))
    through_openslide = wsiseg.open(default_svs, reader="openslide")
    direct = wsiseg.open(default_svs)
    rng = random.Random(3)
    for _ in range(6):
        x, y = rng.randrange(0, 1900), rng.randrange(0, 2600)
        expected = np.asarray(ref.read_region((x, y), 0, (300, 300)).convert("RGB"))
        same = through_openslide.read_region(x, y, 300, 300)
        assert same.shape == (300, 300, 3) and same.dtype == np.uint8
        assert (same == expected).all()
        # The direct JPEG reader: libjpeg's rounding, a few levels at most
        # (README, "Readers").
        d = np.abs(direct.read_region(x, y, 300, 300).astype(int) - expected)
        assert d.max() <= 8 and d.mean() < 1.0, (d.max(), d.mean())
    # Outside the slide is white, as OpenSlide's transparent is made white.
    corner = direct.read_region(-50, -50, 100, 100)
    assert (corner[:50, :50] == 255).all()


def test_read_at_mpp_and_thumbnail(default_svs):
    slide = wsiseg.open(default_svs)
    half = slide.read(0, 0, 512, 512, mpp=1.0)
    assert half.shape == (512, 512, 3)
    full = slide.read_region(0, 0, 1024, 1024).astype(float)
    # About a 2× reduction of level 0.
    reduced = full[:1022, :1022].reshape(511, 2, 511, 2, 3).mean(axis=(1, 3))
    assert np.abs(half[:511, :511] - reduced).mean() < 6
    thumb = slide.thumbnail(256)
    assert max(thumb.shape[:2]) == 256
    tissue, threshold = slide.tissue()
    assert tissue.dtype == bool and 0.2 < tissue.mean() < 0.95 and threshold >= 12


def test_tiles_are_exactly_the_plans_tissue_tiles(tmp_path, default_svs, repo):
    """Property test: for random resolutions, tiles and overlaps, tiles()
    yields as many tiles as `wsiseg segment` plans and runs (its report), on
    the plan's grid, row by row, each the pixels read_region/read gives."""
    slide = wsiseg.open(default_svs)
    model = repo / "tests/data/models/green-threshold"
    rng = random.Random(11)
    for case in range(5):
        mpp = rng.choice([0.499, 1.0, 2.0, 3.3])
        tile = rng.choice([64, 96, 128, 200])
        overlap = rng.choice([0, 8, tile // 4])
        out = tmp_path / f"case{case}"
        run_cli("segment", default_svs, "--model", model, "--out", out, "--device", "cpu",
                "--mpp", mpp, "--tile", tile, "--overlap", overlap, "--formats", "report")
        report = json.loads((out / "default.report.json").read_text())["tiles"]
        run = list(slide.tiles(mpp=mpp, tile=tile, overlap=overlap, threads=3))
        every = slide.tiles(mpp=mpp, tile=tile, overlap=overlap, tissue=False)
        assert len(every) == report["planned"], (case, mpp, tile, overlap)
        assert len(run) == report["run"], (case, mpp, tile, overlap)
        places = [(y, x) for x, y, _ in run]
        assert places == sorted(places) and len(set(places)) == len(places)
        for x, y, a in run[:: max(1, len(run) // 4)]:
            assert a.shape == (tile, tile, 3)
            assert (a == slide.read(x, y, tile, tile, mpp=mpp)).all()


def test_tiles_stop_when_dropped_and_refuse_bad_settings(default_svs):
    slide = wsiseg.open(default_svs)
    it = slide.tiles(mpp=1.0, tile=64, threads=2)
    first = next(iter(it))
    assert first[2].shape == (64, 64, 3)
    it.close()
    assert list(it) == []
    assert len(it) > 1  # tiles in all, however many were taken
    for kwargs, words, kind in [
        ({"tile": 0}, "tile=0", wsiseg.SettingError),
        ({"threads": 0}, "threads=0", wsiseg.SettingError),
        ({"tile": 64, "overlap": 64}, "overlap=64", wsiseg.SettingError),
        ({"mpp": -1.0}, "mpp=-1", wsiseg.SettingError),
        ({"mpp": 0.1}, "finer", wsiseg.SlideError),
    ]:
        with pytest.raises(kind) as e:
            slide.tiles(**kwargs)
        assert words in str(e.value)
    with pytest.raises(wsiseg.SlideError) as e:
        slide.read(0, 0, 64, 64, mpp=400.0)
    assert "coarser" in str(e.value)


def test_tiles_in_a_dataloader_worker(default_svs):
    torch = pytest.importorskip("torch")

    class Tiles(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            slide = wsiseg.open(default_svs)  # opened in the worker
            for k, (x, y, a) in enumerate(slide.tiles(mpp=1.0, tile=128, threads=1)):
                if k % info.num_workers == info.id:
                    yield torch.from_numpy(a)

    loader = torch.utils.data.DataLoader(Tiles(), batch_size=8, num_workers=2)
    n = sum(len(b) for b in loader)
    assert n == len(wsiseg.open(default_svs).tiles(mpp=1.0, tile=128))


def test_a_slide_opened_before_fork_says_so(default_svs):
    import os

    slide = wsiseg.open(default_svs)
    pid = os.fork()
    if pid == 0:
        try:
            slide.read_region(0, 0, 10, 10)
            os._exit(3)
        except wsiseg.SlideError as e:
            os._exit(0 if "spawn" in str(e) else 4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_synth_and_missing_files(tmp_path):
    slide, truth = wsiseg.synth(tmp_path, seed=3, size=(1024, 768), mpp=0.5)
    assert slide.exists() and truth.exists()
    assert wsiseg.open(slide).dimensions == (1024, 768)
    with pytest.raises(wsiseg.OutputError):
        wsiseg.synth(tmp_path, seed=3, size=(1024, 768))
    with pytest.raises(wsiseg.SlideError) as e:
        wsiseg.open(tmp_path / "nope.svs")
    assert str(e.value) == f"{tmp_path / 'nope.svs'}: no such file"
