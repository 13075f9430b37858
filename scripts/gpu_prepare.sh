#!/usr/bin/env bash
# Prepares .dev/ (git-ignored) here, for a GPU server that has no Rust
# toolchain and no OpenSlide (see shared/GPU.md of the project):
#   .dev/wsiseg           the release binary, stripped
#   .dev/tests.tar.xz     tests/: every test binary of the workspace, built in
#                         release with the cuda-tests feature, stripped, and
#                         tests/MANIFEST: "package-folder binary" per line;
#                         tests/ROOT: this checkout's path, which the
#                         binaries have compiled in
#   .dev/lib/             libjpeg.so.62 (Debian's libjpeg-turbo; the server
#                         image has none)
#   .dev/*.whl            openslide-bin 4.0.1.2 (OpenSlide without apt),
#                         segmentation-models-pytorch 0.6.0 and openslide-python
#                         1.4.7 (gpu_bench.sh, compare_pytorch.py),
#                         nvidia-nvjpeg 13.2.3.58 (libnvjpeg.so.13, 4 MB:
#                         --decode gpu; scripts/gpu_env.sh unpacks it)
# Then, on the server, from the repo root (carry .dev):
#   bash scripts/gpu_check.sh 2>&1 | tee $OUT/gpu_check.log
#   bash scripts/gpu_bench.sh 2>&1 | tee $OUT/gpu_bench.log
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .dev/tests
rm -f .dev/tests/*

echo "== release binary" >&2
cargo build --release --locked
strip -o .dev/wsiseg target/release/wsiseg

echo "== test binaries (release, --features cuda-tests)" >&2
cargo test --release --locked --workspace \
    --features wsiseg/cuda-tests,wsiseg-infer/cuda-tests --no-run \
    --message-format=json-render-diagnostics |
    python3 -c '
import json, os, sys
root = os.getcwd()
with open(".dev/tests/MANIFEST", "w") as manifest:
    for line in sys.stdin:
        m = json.loads(line)
        exe = m.get("executable")
        if m.get("reason") != "compiler-artifact" or not exe or not m["profile"]["test"]:
            continue
        package = os.path.relpath(os.path.dirname(m["manifest_path"]), root)
        name = os.path.basename(exe)
        os.system(f"strip -o .dev/tests/{name} {exe}")
        manifest.write(f"{package} {name}\n")
'
pwd > .dev/tests/ROOT
cat .dev/tests/MANIFEST >&2
# The device call carries at most 64 MiB: the test binaries (~90 MB
# stripped) share most of their code, and xz's large window packs them into
# ~8 MB. gpu_check.sh unpacks them on the server (Python's tarfile).
rm -f .dev/tests.tar.xz
tar -C .dev -cf - tests | xz -9 -T0 > .dev/tests.tar.xz
rm -rf .dev/tests

# Shared libraries the binaries need that a GPU server's image lacks
# (libjpeg-turbo, for the direct JPEG reader): the scripts there put .dev/lib
# on LD_LIBRARY_PATH.
echo "== libraries" >&2
mkdir -p .dev/lib
for lib in $(ldd .dev/wsiseg | awk '/libjpeg/ {print $3}'); do
    cp -L "$lib" .dev/lib/
done
ls .dev/lib >&2

echo "== wheels" >&2
for wheel in openslide-bin==4.0.1.2 segmentation-models-pytorch==0.6.0 openslide-python==1.4.7 pillow==13.0.0 nvidia-nvjpeg==13.2.3.58; do
    name=${wheel%%==*}
    ls .dev/"${name//-/_}"-*.whl >/dev/null 2>&1 ||
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux1_x86_64 --platform any -d .dev "$wheel"
done
du -sh .dev >&2
size=$(du -sm .dev | cut -f1)
[ "$size" -lt 60 ] || { echo ".dev is $size MiB: more than a device call carries (64 MiB)" >&2; exit 1; }
