"""Engine.segment, segment_many and predict give what the command gives."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import wsiseg
from conftest import cli_error, run_cli


def test_segment_writes_the_same_mask_bytes_as_the_cli(tmp_path, engine, unet, default_svs):
    result = engine.segment(default_svs, tmp_path / "py", formats=["png", "tiff", "report"])
    run_cli("segment", default_svs, "--model", unet, "--out", tmp_path / "cli",
            "--device", "cpu", "--formats", "png,tiff,report")
    for name in ["default.mask.png", "default.mask.tiff"]:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "cli" / name).read_bytes(), name
    cli_report = json.loads((tmp_path / "cli/default.report.json").read_text())
    assert result.report["areas"] == cli_report["areas"]
    assert not result.skipped
    assert 0.05 < result.tumor_fraction < 0.15
    assert result.tumor_mm2 == pytest.approx(cli_report["areas"]["tumor_mm2"])
    assert [p.name for p in result.files] == ["default.mask.png", "default.mask.tiff", "default.report.json"]
    assert result.timings["tiles_run"] == cli_report["tiles"]["run"]
    assert result.report["model"]["members"][0]["runtime"] == "torchscript"
    # The same settings again: skipped as done, as the command does.
    again = engine.segment(default_svs, tmp_path / "py", formats="png,tiff,report")
    assert again.skipped and again.tumor_fraction == result.tumor_fraction


def test_progress_runs_on_the_calling_thread(tmp_path, engine, default_svs):
    import threading

    seen = []
    engine.segment(default_svs, tmp_path, formats=["png"],
                   progress=lambda done, total: seen.append((done, total, threading.get_ident())))
    assert seen and seen[-1][0] == seen[-1][1]
    assert {t for _, _, t in seen} == {threading.get_ident()}


def test_segment_many_writes_the_summary_of_the_command(tmp_path, engine, repo):
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "a.svs").symlink_to(repo / "tests/data/small.svs")
    (slides / "b.svs").write_bytes(b"not a slide")
    run = engine.segment_many(slides, tmp_path / "out", formats=["png", "report"])
    by_name = {s["slide"].name: s for s in run["slides"]}
    assert by_name["a.svs"]["status"] == "segmented"
    assert by_name["b.svs"]["status"] == "failed" and "b.svs" in by_name["b.svs"]["error"]
    assert (tmp_path / "out/summary.json").exists() and run["page"].name == "index.html"
    assert run["summary"] == json.loads((tmp_path / "out/summary.json").read_text())


def _tiles(default_svs, n=3, side=256):
    slide = wsiseg.open(default_svs)
    return np.stack([slide.read_region(300 + 500 * i, 900 + 400 * i, side, side) for i in range(n)])


def test_predict_equals_the_clis_labels_for_the_same_tiles(tmp_path, engine, unet, default_svs):
    from PIL import Image

    tiles = _tiles(default_svs)
    labels = engine.predict(tiles)
    assert labels.shape == (3, 256, 256) and labels.dtype == np.uint8
    assert 0 < labels.mean() < 1
    for i, tile in enumerate(tiles):
        png = tmp_path / f"tile{i}.png"
        Image.fromarray(tile).save(png)
        run_cli("segment", png, "--model", unet, "--out", tmp_path, "--device", "cpu",
                "--slide-mpp", "1", "--no-tissue-mask", "--overlap", "0", "--formats", "png")
        mask = np.asarray(Image.open(tmp_path / f"tile{i}.mask.png"))
        assert (mask == labels[i]).all(), f"tile {i}: {(mask != labels[i]).sum()} pixels differ"
    labels2, probabilities = engine.predict(tiles, probabilities=True)
    assert (labels2 == labels).all()
    assert probabilities.shape == (3, 1, 256, 256)
    # A binary model's label is P(tumor) > 0.5 (arg-max), up to the byte's rounding.
    assert ((probabilities[:, 0] >= 128) == (labels == 1)).mean() > 0.999


def test_predict_refuses_wrong_arrays_with_one_message(engine):
    for bad, words in [
        (np.zeros((2, 256, 256, 3), np.float32), "float32"),
        (np.zeros((256, 256, 3), np.uint8), "(256, 256, 3)"),
        (np.zeros((1, 256, 128, 3), np.uint8), "1×256×128×3"),
        (np.zeros((1, 100, 100, 3), np.uint8), "multiple of"),
        ([[1, 2, 3]], "N×H×W×3"),
    ]:
        with pytest.raises(wsiseg.SettingError) as e:
            engine.predict(bad)
        assert words in str(e.value) and "\n" not in str(e.value)


def test_errors_are_the_clis_messages(tmp_path, engine, unet, repo):
    missing = tmp_path / "missing.svs"
    # One slide: as `wsiseg info` says it (`segment` also takes folders, so it
    # says "no such file or folder").
    with pytest.raises(wsiseg.SlideError) as e:
        engine.segment(missing, tmp_path / "out")
    assert str(e.value) == cli_error("info", missing)
    broken = repo / "tests/data/unreadable.svs"
    with pytest.raises(wsiseg.SlideError) as e:
        engine.segment(broken, tmp_path / "out")
    assert str(e.value) == cli_error("segment", broken, "--model", unet, "--out", tmp_path / "out", "--device", "cpu")
    unopenable = repo / "tests/data/unopenable.tiff"
    with pytest.raises(wsiseg.SlideError) as e:
        wsiseg.open(unopenable)
    assert str(e.value) == cli_error("info", unopenable)
    no_model = tmp_path / "no-model"
    with pytest.raises(wsiseg.ModelError) as e:
        wsiseg.Engine(no_model, device="cpu")
    assert str(e.value) == cli_error("model", "check", no_model, "--device", "cpu")
    with pytest.raises(wsiseg.SettingError) as e:
        engine.segment(repo / "tests/data/small.svs", tmp_path / "out", tile=100)
    assert str(e.value).startswith("tile=100: ") and "multiple of" in str(e.value)
    assert not list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else True
    # Decoding on the GPU where the model runs on the CPU, or a word that is not a choice.
    with pytest.raises(wsiseg.SettingError) as e:
        wsiseg.Engine(unet, device="cpu", decode="gpu")
    assert str(e.value).startswith("decode=gpu: ") and "not on a CUDA GPU" in str(e.value), str(e.value)
    with pytest.raises(wsiseg.SettingError) as e:
        wsiseg.Engine(unet, device="cpu", decode="sideways")
    assert str(e.value).startswith("decode=sideways: ") and "cpu, gpu or auto" in str(e.value), str(e.value)
    # Every error is a WsisegError.
    assert issubclass(wsiseg.SlideError, wsiseg.WsisegError)


def test_an_ensemble_as_a_tuple_of_pairs(unet, default_svs):
    tiles = _tiles(default_svs, n=1)
    alone = wsiseg.Engine(unet, device="cpu")
    pair = wsiseg.Engine(((unet, 1.0), (unet, 3.0)), device="cpu")
    assert [m["weight"] for m in pair.members] == [1.0, 3.0]
    # The same model twice averages to itself.
    assert (pair.predict(tiles) == alone.predict(tiles)).all()


def test_a_model_that_does_not_fit_its_manifest_is_a_model_error(tmp_path, unet):
    bad = tmp_path / "model"
    bad.mkdir()
    (bad / "model.pt").write_bytes((unet / "model.pt").read_bytes()[:5000])
    (bad / "manifest.json").write_text((unet / "manifest.json").read_text())
    with pytest.raises(wsiseg.ModelError) as e:
        wsiseg.Engine(bad, device="cpu")
    assert str(bad / "model.pt") in str(e.value)


SIGINT_CHILD = textwrap.dedent("""
    import sys, wsiseg
    engine = wsiseg.Engine(sys.argv[1], device="cpu", batch=2)
    def progress(done, total):
        if done:
            print("started", flush=True)
    engine.segment(sys.argv[2], sys.argv[3], formats=["png", "tiff", "report"], progress=progress)
    print("finished", flush=True)
""")


def test_sigint_in_segment_raises_keyboardinterrupt_and_leaves_no_file(tmp_path, unet):
    slide, _ = wsiseg.synth(tmp_path / "slides", seed=5, size=(4096, 4096), mpp=0.5)
    out = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", SIGINT_CHILD, str(unet), str(slide), str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "started"
    child.send_signal(signal.SIGINT)
    stdout, stderr = child.communicate(timeout=120)
    assert "finished" not in stdout
    assert "KeyboardInterrupt" in stderr, stderr
    # Exits as Python does on an uncaught KeyboardInterrupt (killed by SIGINT).
    assert child.returncode == -signal.SIGINT, (child.returncode, stderr)
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert left == [], left


@pytest.mark.parametrize("first", ["torch", "wsiseg"])
def test_import_torch_before_or_after_wsiseg(first):
    second = "wsiseg" if first == "torch" else "torch"
    code = f"import {first}, {second}, torch, wsiseg; t = torch.ones(2); print(torch.__version__, wsiseg.__version__, float(t.sum()))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("2.11") and p.stdout.split()[2] == "2.0"
    # One libtorch in the process.
    code = "import wsiseg, torch; maps = open('/proc/self/maps').read(); print(len({l.split()[-1] for l in maps.splitlines() if 'libtorch_cpu.so' in l}))"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stdout + p.stderr


def test_evaluate_gives_the_figures_of_wsiseg_eval(tmp_path, engine):
    slide, truth = wsiseg.synth(tmp_path / "slides", seed=8, size=(2048, 2048), mpp=0.5)
    result = engine.segment(slide, tmp_path / "out", formats=["png", "report"])
    mask = result.file("mask.png")
    run_cli("eval", "--pred", mask, "--truth", truth, "--out", tmp_path / "eval")
    expected = json.loads((tmp_path / "eval/eval.json").read_text())["slides"][0]
    figures = wsiseg.evaluate(mask, truth)
    assert figures == expected
    assert 0.5 < figures["classes"]["tumor"]["dice"] <= 1
    with pytest.raises(wsiseg.WsisegError) as e:
        wsiseg.evaluate(tmp_path / "none.png", truth)
    assert "none.png" in str(e.value)


def test_a_corrupt_tile_is_a_slide_error_with_the_clis_message(tmp_path, repo):
    import tifffile

    slide, _ = wsiseg.synth(tmp_path, seed=909, size=(2048, 2048), mpp=0.5)
    with tifffile.TiffFile(slide) as t:
        page = t.pages[0]
        offset, count = page.dataoffsets[8 * 4 + 4], page.databytecounts[8 * 4 + 4]
    data = bytearray(slide.read_bytes())
    data[offset:offset + count] = bytes(count)
    slide.write_bytes(bytes(data))
    model = repo / "tests/data/models/green-threshold"
    engine = wsiseg.Engine(model, device="cpu")
    with pytest.raises(wsiseg.SlideError) as e:
        engine.segment(slide, tmp_path / "out", level=0, tile=512)
    assert str(e.value) == cli_error("segment", slide, "--model", model, "--out", tmp_path / "cli",
                                     "--level", "0", "--tile", "512", "--device", "cpu")
    assert "tile" in str(e.value)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []
    with pytest.raises(wsiseg.SlideError) as e:
        wsiseg.open(slide).read_region(1024, 1024, 256, 256)
    assert str(slide) in str(e.value)


def test_outputs_made_differently_are_an_output_error(tmp_path, repo):
    model = repo / "tests/data/models/green-threshold"
    small = repo / "tests/data/small.svs"
    wsiseg.Engine(model, device="cpu").segment(small, tmp_path, formats=["png"], tile=64)
    with pytest.raises(wsiseg.OutputError) as e:
        wsiseg.Engine(model, device="cpu").segment(small, tmp_path, formats=["png"], tile=128)
    assert "were made with another" in str(e.value) and "overwrite=True" in str(e.value)
    again = wsiseg.Engine(model, device="cpu").segment(small, tmp_path, formats=["png"], tile=128, overwrite=True)
    assert not again.skipped


def test_the_gil_is_released_while_the_engine_works(tmp_path, engine, default_svs):
    import threading

    done = threading.Event()
    worker = threading.Thread(target=lambda: (engine.segment(default_svs, tmp_path, formats=["png"]), done.set()))
    spins = 0
    worker.start()
    while not done.is_set():
        spins += 1
    worker.join()
    # Holding the GIL for the whole slide would leave this loop a few turns.
    assert spins > 100_000, spins


def test_another_torch_version_is_an_import_error_naming_both(tmp_path):
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '2.9.1'\n")
    p = subprocess.run([sys.executable, "-c", "import wsiseg"], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:") and "2.9.1" in last and "2.11" in last and "pip install torch==2.11.0" in last, last
