"""Prints `wsiseg bench --json` figures and, given an nvidia-smi log
(`--query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits`),
the GPU utilisation during the end-to-end run: all samples, and the steady
state (the first and last 10% of the run left out).

    python3 scripts/bench_summary.py bench.json [util.csv]

Issue 31's figures (scripts/gpu_bench.sh), each a ratio within one call:

    bench_summary.py --decode bench-gpu.json bench-cpu.json
        end to end with --decode gpu vs cpu, each against model-only
        (taken from the first file when the second has none)
    bench_summary.py --segment NAME.report.json bench.json START END [util.csv]
        a `segment` command's tiles/s over its whole wall time (START..END,
        Unix seconds) against bench.json's model-only tiles/s, where its
        tiles were decoded, and the GPU's busy share during it
    bench_summary.py --agree a.mask.png b.mask.png
        the share of pixels on which two masks agree
"""

import datetime
import json
import sys


def utilisation(path, window):
    start, end = window
    samples = []
    for line in open(path):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        try:
            t = datetime.datetime.strptime(parts[0], "%Y/%m/%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        samples.append((t, int(parts[1])))
    span = end - start
    for name, lo, hi in [
        ("whole run", start, end),
        ("steady state", start + 0.1 * span, end - 0.1 * span),
    ]:
        v = [u for t, u in samples if lo <= t <= hi]
        busy = sum(u >= 90 for u in v)
        busier = sum(u >= 95 for u in v)
        print(
            f"GPU utilisation, {name}: {len(v)} samples, busy (>=90%) in "
            f"{100 * busy / max(1, len(v)):.0f}%, (>=95%) in {100 * busier / max(1, len(v)):.0f}%, "
            f"mean {sum(v) / max(1, len(v)):.0f}%"
        )


def decode(gpu_path, cpu_path):
    gpu, cpu = json.load(open(gpu_path)), json.load(open(cpu_path))
    model = gpu.get("model_only_tiles_s")
    print(f"model only: {model:.1f} tiles/s" if model else "model only: not measured")
    if "device_jpeg_decode_mp_s" in gpu:
        print(
            f"JPEG decode of the sampled tiles: nvJPEG ({gpu['device_decode']}) {gpu['device_jpeg_decode_mp_s']:.0f} MP/s, "
            f"host {gpu['raw_jpeg_decode_mp_s']:.0f} MP/s on {gpu['readers']} threads: {gpu['device_vs_host_decode']:.2f}x"
        )
    for f in (gpu, cpu):
        name = f.get("decode", "?")
        m = f.get("model_only_tiles_s") or model
        tiles_s = f["e2e_tiles_s"]
        print(
            f"end to end, --decode {name} ({f['e2e_decoded_by']}): {tiles_s:.1f} tiles/s, "
            f"{tiles_s / m:.3f}x model only; outside the model {100 * f.get('e2e_outside_model_share', float('nan')):.1f}% of {f['e2e_wall_s']:.1f} s"
        )
    print(f"end to end, gpu decode / cpu decode: {gpu['e2e_tiles_s'] / cpu['e2e_tiles_s']:.3f}x")


def segment(report_path, bench_path, start, end, util=None):
    report, bench = json.load(open(report_path)), json.load(open(bench_path))
    wall = float(end) - float(start)
    tiles = report["tiles"]["run"]
    model = bench["model_only_tiles_s"]
    wl = report["working_level"]
    print(
        f"{report_path}: {tiles} tiles in {wall:.2f} s (the whole command; pipeline "
        f"{report['timings_s'].get('pipeline_wall', float('nan')):.2f} s), {tiles / wall:.1f} tiles/s = "
        f"{tiles / wall / model:.3f}x model only ({model:.1f} tiles/s); decoded by {wl['decoded_by']} "
        f"({wl['tiles_decoded_on_device']} stored tiles on the device, {wl['device_decode_fallbacks']} fallbacks)"
    )
    t = report["timings_s"]
    # Where the whole command's time went: before the slide's clock (process
    # start, devices), its plan (the model loading meanwhile), the wait for
    # the model after it, the pipeline, the outputs' finish after it.
    before = wall - t["total"]
    print(
        f"  whole command {wall:.2f} s: {before:.2f} s before the slide's clock (process, devices), "
        f"{t['open_and_thumbnail']:.2f} s plan (the model loading meanwhile), "
        f"{t.get('waiting_for_model', 0.0):.2f} s waiting for the model, "
        f"{t['pipeline_wall']:.2f} s pipeline, {t['outputs']:.2f} s outputs after it"
    )
    if util:
        utilisation(util, (float(start), float(end)))


def agree(a, b):
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    x, y = Image.open(a).tobytes(), Image.open(b).tobytes()
    assert len(x) == len(y), "masks of different sizes"
    same = sum(p == q for p, q in zip(x, y)) if len(x) < 1 << 24 else None
    if same is None:
        import numpy

        same = int((numpy.frombuffer(x, numpy.uint8) == numpy.frombuffer(y, numpy.uint8)).sum())
    print(f"masks {a} and {b} agree on {100 * same / len(x):.4f}% of {len(x)} pixels")


def main():
    if sys.argv[1] == "--decode":
        return decode(*sys.argv[2:4])
    if sys.argv[1] == "--segment":
        return segment(*sys.argv[2:])
    if sys.argv[1] == "--agree":
        return agree(*sys.argv[2:4])
    figures = json.load(open(sys.argv[1]))
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.3f}"
        print(f"{key:<44} {value}")
    if len(sys.argv) > 2 and "e2e_unix_window" in figures:
        utilisation(sys.argv[2], figures["e2e_unix_window"])


if __name__ == "__main__":
    main()
