#!/usr/bin/env bash
# One-call GPU throughput check (issue 5), on a GPU server prepared as for
# scripts/gpu_check.sh (.dev/ carries the stripped binary, the openslide-bin
# wheel and the segmentation-models-pytorch 0.6.0 wheel):
#   (device) bash scripts/gpu_bench.sh 2>&1 | tee $OUT/gpu_bench.log
# Makes a 50000×50000 synthetic slide there, exports a ResNet-34 UNet, prints
# PyTorch's model-only rates and `wsiseg bench` (model-only in tch, reading,
# and end to end) in the same call, with GPU utilisation sampled by
# nvidia-smi every 100 ms and summarised over the end-to-end run; then
# scripts/compare_pytorch.py on the same slide and model (the plain PyTorch
# pipeline against `wsiseg segment`, issue 11), with GPU utilisation during
# wsiseg's run; and `wsiseg bench --tta flips` (model only, end to end) for
# test-time augmentation's cost (issue 12); `wsiseg segment` with every
# default output on the same slide (its per-thread timings); and `wsiseg bench FOLDER` on 8
# small slides (the idle time between slides, one at a time vs overlapped).
#
# The first section is issue 31's (the GPU never waits, nvJPEG): with
# `--decode-only` it is the only one after the export and the slide (it fits
# in a few minutes of device time; the rest takes longer).
set -uo pipefail
decode_only=0
[ "${1:-}" = "--decode-only" ] && decode_only=1
cd "$(dirname "$0")/.."
WORK=${WSISEG_GPU_WORK:-/tmp/wsiseg-gpu-bench}
SIZE=${WSISEG_BENCH_SIZE:-50000x50000}
OUTDIR=${OUT:-$WORK}
mkdir -p "$WORK" "$OUTDIR"
BIN=${WSISEG_BIN:-.dev/wsiseg}
nvidia-smi -L
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
    .dev/segmentation_models_pytorch-*.whl .dev/openslide_python-*.whl .dev/openslide_bin-*.whl \
    $(python3 -c "import PIL" 2>/dev/null || echo .dev/pillow-*.whl) &&
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
rm -rf /tmp/openslide-bin && python3 -m zipfile -e .dev/openslide_bin-*.whl /tmp/openslide-bin
so=$(find /tmp/openslide-bin -name 'libopenslide.so.1*' | head -n1)
export LD_LIBRARY_PATH=$PWD/.dev/lib:$torch_lib:$(dirname "$so")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
. scripts/gpu_env.sh

echo "== export ResNet-34 UNet, PyTorch model-only rates (batch 32, 512 px, f16)"
python3 scripts/export_resnet34_unet.py --out "$WORK/r34" || exit 1
echo "== synthetic $SIZE slide"
"$BIN" synth --out "$WORK/slides" --seed 5000 --size "$SIZE" --overwrite || exit 1
decode_section() {
    local slide=$WORK/slides/synth-5000.svs
    sample() { nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 100 > "$1" & sampler=$!; }
    echo "== issue 31 (1/4): bench, ResNet-34 UNet f16 channels-last, --decode gpu: model only, nvJPEG vs host decode, end to end (GPU busy sampled)"
    sample "$WORK/util-gpu.csv"
    "$BIN" bench "$slide" --model "$WORK/r34" --device cuda --batch 32 --sample-tiles 800 --stages read,model,e2e \
        --decode gpu --json > "$OUTDIR/bench-decode-gpu.json" || status=1
    kill $sampler
    python3 scripts/bench_summary.py "$OUTDIR/bench-decode-gpu.json" "$WORK/util-gpu.csv"
    echo "== issue 31 (1/4 cont.): the same end to end with --decode cpu"
    "$BIN" bench "$slide" --model "$WORK/r34" --device cuda --batch 32 --stages e2e \
        --decode cpu --json > "$OUTDIR/bench-decode-cpu.json" || status=1
    python3 scripts/bench_summary.py --decode "$OUTDIR/bench-decode-gpu.json" "$OUTDIR/bench-decode-cpu.json"

    echo "== issue 31 (2/4): segment with every default output, --decode gpu and cpu: tiles/s over the whole command vs model only; masks compared"
    for decode in gpu cpu; do
        sample "$WORK/util-seg-$decode.csv"
        start=$(date +%s.%N)
        "$BIN" segment "$slide" --model "$WORK/r34" --device cuda --batch 32 --decode $decode \
            --out "$WORK/seg-$decode" --overwrite -q || status=1
        end=$(date +%s.%N)
        kill $sampler
        python3 scripts/bench_summary.py --segment "$WORK/seg-$decode/synth-5000.report.json" \
            "$OUTDIR/bench-decode-gpu.json" "$start" "$end" "$WORK/util-seg-$decode.csv"
    done
    python3 scripts/bench_summary.py --agree "$WORK/seg-gpu/synth-5000.mask.png" "$WORK/seg-cpu/synth-5000.mask.png"

    echo "== issue 31 (3/4): the shipped UNet-16 at 512 px (light, reader-bound): model only, end to end with GPU and CPU decode"
    rm -rf "$WORK/unet512" && cp -r models/unet "$WORK/unet512"
    python3 -c 'import json, sys; p = sys.argv[1]; m = json.load(open(p)); m["tile"] = 512; json.dump(m, open(p, "w"))' "$WORK/unet512/manifest.json"
    for decode in gpu cpu; do
        "$BIN" bench "$slide" --model "$WORK/unet512" --device cuda --batch 32 --stages model,e2e \
            --decode $decode --json > "$OUTDIR/bench-unet512-$decode.json" || status=1
    done
    python3 scripts/bench_summary.py --decode "$OUTDIR/bench-unet512-gpu.json" "$OUTDIR/bench-unet512-cpu.json"

    echo "== issue 31 (4/4): a 100000×80000 slide at level 0 (0.25 µm/px), ResNet-34 UNet, 512-px tiles: the whole segment command"
    "$BIN" synth --out "$WORK/big" --seed 7000 --size 100000x80000 --overwrite -q || status=1
    for decode in gpu cpu; do
        start=$(date +%s.%N)
        "$BIN" segment "$WORK/big/synth-7000.svs" --model "$WORK/r34" --device cuda --batch 32 --level 0 \
            --decode $decode --out "$WORK/big-$decode" --overwrite -q || status=1
        end=$(date +%s.%N)
        python3 scripts/bench_summary.py --segment "$WORK/big-$decode/synth-7000.report.json" \
            "$OUTDIR/bench-decode-gpu.json" "$start" "$end"
    done
}
status=0
decode_section
[ "$decode_only" = 1 ] && exit $status

echo "== wsiseg bench (GPU utilisation sampled every 100 ms)"
nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 100 > "$WORK/util.csv" &
sampler=$!
"$BIN" bench "$WORK/slides/synth-5000.svs" --model "$WORK/r34" --device cuda --batch 32 --sample-tiles 800 --json > "$OUTDIR/bench.json" || status=1
kill $sampler
python3 scripts/bench_summary.py "$OUTDIR/bench.json" "$WORK/util.csv"
echo "== wsiseg segment with every default output (mask PNG and TIFF, overlay, heatmap, GeoJSON, report): its timings"
"$BIN" segment "$WORK/slides/synth-5000.svs" --model "$WORK/r34" --device cuda --batch 32 \
    --out "$WORK/segment" --overwrite -q || status=1
python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(json.dumps(r["timings_s"]), r["tiles"])' \
    "$WORK/segment/synth-5000.report.json" || status=1
echo "== scripts/compare_pytorch.py: plain PyTorch pipeline vs wsiseg segment (f16, batch 32)"
nvidia-smi --query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits -lms 100 > "$WORK/util-compare.csv" &
sampler=$!
python3 scripts/compare_pytorch.py "$WORK/slides/synth-5000.svs" --device cuda --model "$WORK/r34" \
    --batch 32 --runs 1 --wsiseg "$BIN" --json "$OUTDIR/compare.json"
compare=$?
kill $sampler
python3 scripts/compare_pytorch.py --gpu-busy "$OUTDIR/compare.json" "$WORK/util-compare.csv"
echo "== test-time augmentation's cost: model only and end to end, --tta flips (issue 12)"
"$BIN" bench "$WORK/slides/synth-5000.svs" --model "$WORK/r34" --device cuda --batch 32 \
    --stages model,e2e --tta flips --json > "$OUTDIR/bench-tta.json" || status=1
python3 scripts/bench_summary.py "$OUTDIR/bench-tta.json"
echo "== a folder of 8 small slides, one at a time vs overlapped: the GPU's idle time between slides (issue 16)"
"$BIN" synth --out "$WORK/folder" --seed 6000 --count 8 --size 8192x8192 --overwrite -q || status=1
"$BIN" bench "$WORK/folder" --model "$WORK/r34" --device cuda --batch 32 || status=1
[ $status -eq 0 ] && exit $compare
exit $status
