#!/usr/bin/env bash
# Makes the offline bundle: one archive that runs wsiseg on a Linux x86_64
# machine with no Python, apt or internet — unpack anywhere, run ./wsiseg.
#
#   scripts/bundle.sh            the CPU bundle:  dist/wsiseg-VERSION-linux-x86_64-cpu.tar.zst
#   scripts/bundle.sh --cuda     the CUDA bundle: dist/wsiseg-VERSION-linux-x86_64.tar.zst
#   scripts/bundle.sh --dir-only leave the folder in dist/, make no archive
#
# Run scripts/setup.sh --no-demo first (it builds target/release/wsiseg
# against PyTorch 2.11.0's libtorch and OpenSlide 4 from the openslide-bin
# wheel). Needs patchelf and zstd (apt install patchelf zstd).
#
# What is in it (dist/wsiseg-VERSION-linux-x86_64[-cpu]/):
#   wsiseg            the release binary; RUNPATH $ORIGIN/lib (LD_LIBRARY_PATH
#                     still overrides it); debug info stripped
#   lib/              every library it loads that is not the base C/C++
#                     runtime (glibc, libstdc++, libgcc_s): libtorch_cpu,
#                     libc10, libgomp, the CUDA runtime and CUPTI (libtorch_cpu
#                     needs them even on the CPU), libopenslide.so.1 (OpenSlide 4,
#                     self-contained), libjpeg.so.62, libtorch.so (the
#                     AOTInductor packages' code links it; in the CPU bundle
#                     without its libtorch_cuda dependency) and
#                     libonnxruntime.so (ONNX Runtime, for .onnx models). The CUDA bundle adds
#                     libtorch_cuda and the CUDA, cuDNN, cuBLAS, NCCL...
#                     libraries of PyTorch's nvidia-* wheels. The CPU bundle has
#                     no libtorch_cuda.so: wsiseg loads it at run time when it
#                     is beside libtorch_cpu.so, so the same binary starts on both.
#   build-version     libtorch's version (wsiseg doctor reads it)
#   models/           the shipped model
#   python/           the wsiseg wheel (import wsiseg) and INSTALL.txt: pip
#                     install --no-index --find-links python/ wsiseg
#   README.md, licenses/, sources/, NOTICE.md, SHA256SUMS
set -euo pipefail
cd "$(dirname "$0")/.."

FLAVOR=cpu
ARCHIVE=1
for arg in "$@"; do
    case $arg in
        --cpu) FLAVOR=cpu ;;
        --cuda) FLAVOR=cuda ;;
        --dir-only) ARCHIVE=0 ;;
        -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "bundle.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
    esac
done
for tool in patchelf zstd objcopy ldd; do
    command -v "$tool" >/dev/null || {
        echo "bundle.sh: $tool is missing: apt install patchelf zstd binutils" >&2
        exit 1
    }
done
BIN=target/release/wsiseg
[ -x "$BIN" ] || { echo "bundle.sh: $BIN is missing: run scripts/setup.sh --no-demo first" >&2; exit 1; }
[ -e .libtorch/lib/libtorch_cpu.so ] || { echo "bundle.sh: .libtorch is missing: run scripts/setup.sh --no-demo first" >&2; exit 1; }

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
NAME=wsiseg-$VERSION-linux-x86_64
[ "$FLAVOR" = cpu ] && NAME=$NAME-cpu
TORCH_LIB=$(readlink -f .libtorch/lib)
SITE=$(dirname "$(dirname "$TORCH_LIB")")
STAGE=dist/$NAME
rm -rf "$STAGE" "$STAGE.partial"
mkdir -p "$STAGE.partial/lib" "$STAGE.partial/licenses" "$STAGE.partial/sources"
S=$STAGE.partial
step() { printf '==> bundle: %s\n' "$*" >&2; }

# The base runtime every Linux has; everything else the binary loads ships.
is_base() {
    case $1 in
        libc.so.* | libm.so.* | libdl.so.* | libpthread.so.* | librt.so.* | libutil.so.* | ld-linux-x86-64.so.* | \
            libstdc++.so.* | libgcc_s.so.* | linux-vdso.so.*) return 0 ;;
    esac
    return 1
}
# Copies the libraries FILE needs (as the build machine resolves them) into lib/.
copy_needed() {
    local file=$1 name path
    while read -r name _ path _; do
        is_base "$name" && continue
        [ -e "$S/lib/$name" ] && continue
        if [ "$path" = "not" ] || [ -z "$path" ]; then
            echo "bundle.sh: $file needs $name, which is not found on this machine" >&2
            exit 1
        fi
        cp -L "$path" "$S/lib/$name"
    done < <(ldd "$file" | awk '/=>/ {print $1, $2, $3}')
}

step "binary ($FLAVOR)"
cp "$BIN" "$S/wsiseg"
objcopy --strip-debug "$S/wsiseg"
patchelf --set-rpath '$ORIGIN/lib' "$S/wsiseg"
copy_needed "$BIN"
if [ "$FLAVOR" = cuda ]; then
    step "libtorch's CUDA half and PyTorch's CUDA libraries"
    # libtorch_cuda and what it loads, and the libraries loaded later by
    # name (cuDNN's engines, NVRTC, nvJitLink...): every shared library of the
    # nvidia-* wheels torch 2.11.0 installed.
    for f in "$TORCH_LIB"/lib*.so*; do
        case $(basename "$f") in libtorch_python.so | libshm*) continue ;; esac
        [ -e "$S/lib/$(basename "$f")" ] || cp -L "$f" "$S/lib/"
    done
    for f in "$SITE"/nvidia/*/lib/lib*.so*; do
        [ -e "$S/lib/$(basename "$f")" ] || cp -L "$f" "$S/lib/"
    done
    copy_needed "$TORCH_LIB/libtorch_cuda.so"
fi
step "libtorch.so (for .pt2 packages) and ONNX Runtime (for .onnx models)"
# An AOTInductor package's code needs libtorch.so, a thin library over
# libtorch_cpu that the binary itself does not link: wsiseg loads it from
# lib/ before a package. In the CPU flavour it must not need libtorch_cuda.
[ -e "$S/lib/libtorch.so" ] || cp -L "$TORCH_LIB/libtorch.so" "$S/lib/libtorch.so"
if [ "$FLAVOR" = cpu ]; then
    patchelf --remove-needed libtorch_cuda.so "$S/lib/libtorch.so"
fi
# libonnxruntime (MIT), loaded at run time from lib/ for .onnx models.
[ -e .onnxruntime/libonnxruntime.so ] || { echo "bundle.sh: .onnxruntime is missing: run scripts/setup.sh --no-demo first" >&2; exit 1; }
cp -L .onnxruntime/libonnxruntime.so "$S/lib/libonnxruntime.so"
copy_needed "$S/lib/libonnxruntime.so"
# Every library must find what it needs inside lib/: libtorch's own RPATH
# has $ORIGIN; the others get one when they need anything outside the base.
for f in "$S"/lib/*; do
    if ! readelf -d "$f" 2>/dev/null | grep -qE 'R(UN)?PATH'; then
        if readelf -d "$f" | sed -n 's/.*NEEDED.*\[\(.*\)\]/\1/p' | while read -r n; do is_base "$n" || exit 1; done; then
            continue
        fi
        patchelf --set-rpath '$ORIGIN' "$f"
    fi
done

step "libtorch version, model, README"
"$SITE/../../../bin/python" -c 'import torch; print(torch.__version__)' > "$S/build-version" 2>/dev/null ||
    sed -n "s/^__version__ = '\(.*\)'/\1/p" "$TORCH_LIB/../version.py" > "$S/build-version"
mkdir -p "$S/models"
cp -r models/unet "$S/models/"
cp README.md "$S/README.md"

step "the Python package (the wheel setup.sh built)"
mkdir -p "$S/python"
whl=$(ls target/wheels/wsiseg-*.whl 2>/dev/null | head -1 || true)
if [ -n "$whl" ]; then
    cp "$whl" "$S/python/"
    cat > "$S/python/INSTALL.txt" <<EOF
import wsiseg on this machine, offline, into a Python environment (3.9 or
newer) that has PyTorch 2.11, numpy and openslide-bin installed:

    pip install --no-index --find-links python/ wsiseg

The package uses that environment's libtorch (it imports torch first) and
OpenSlide (openslide-bin); README.md, "From Python", shows the API.
EOF
else
    echo "bundle.sh: warning: no wheel in target/wheels (run scripts/setup.sh): the bundle has no Python package" >&2
fi

step "licences"
L=$S/licenses
cp -r "$SITE"/torch-*.dist-info/licenses "$L/libtorch" 2>/dev/null || cp "$SITE"/torch-*.dist-info/LICENSE* "$L/" 2>/dev/null || true
mkdir -p "$L/openslide-bin" "$L/onnxruntime"
ORT_PKG=$(dirname "$(readlink -f .onnxruntime/libonnxruntime.so)")/..
find "$SITE"/onnxruntime-*.dist-info -iname 'licen*' -type f -exec cp {} "$L/onnxruntime/" \;
[ -e "$ORT_PKG/ThirdPartyNotices.txt" ] && cp "$ORT_PKG/ThirdPartyNotices.txt" "$L/onnxruntime/"
cp -r "$SITE"/openslide_bin-*.dist-info/licenses/. "$L/openslide-bin/"
for d in "$SITE"/nvidia_*.dist-info; do
    pkg=$(basename "$d" .dist-info)
    # The CPU bundle ships only the CUDA runtime and CUPTI.
    if [ "$FLAVOR" = cpu ]; then
        case $pkg in nvidia_cuda_runtime-* | nvidia_cuda_cupti-*) ;; *) continue ;; esac
    fi
    mkdir -p "$L/$pkg"
    find "$d" -iname 'licen*' -type f -exec cp {} "$L/$pkg/" \;
done
# OpenSeadragon, built into the binary for `wsiseg view` (from npm).
mkdir -p "$L/openseadragon"
cp crates/view/web/node_modules/openseadragon/LICENSE.txt "$L/openseadragon/LICENSE.txt"
OSD_VERSION=$(python3 -c 'import json; print(json.load(open("crates/view/web/node_modules/openseadragon/package.json"))["version"])')
for pkg in libjpeg62-turbo libgoogle-perftools-dev; do
    [ -f "/usr/share/doc/$pkg/copyright" ] && cp "/usr/share/doc/$pkg/copyright" "$L/$pkg.copyright"
done
# The Rust crates compiled into the binary: their licence files.
cargo metadata --format-version 1 --locked 2>/dev/null | python3 -c '
import json, os, shutil, sys
meta = json.load(sys.stdin)
out = sys.argv[1]
lines = []
for p in sorted(meta["packages"], key=lambda p: (p["name"], p["version"])):
    if p["source"] is None:
        continue
    root = os.path.dirname(p["manifest_path"])
    dest = os.path.join(out, "rust", p["name"] + "-" + p["version"])
    files = [f for f in os.listdir(root) if f.upper().startswith(("LICENSE", "LICENCE", "COPYING", "NOTICE"))]
    for f in files:
        os.makedirs(dest, exist_ok=True)
        if os.path.isfile(os.path.join(root, f)):
            shutil.copy(os.path.join(root, f), dest)
    lines.append("%s %s: %s" % (p["name"], p["version"], p.get("license") or "see its files"))
open(os.path.join(out, "rust-crates.txt"), "w").write("\n".join(lines) + "\n")
' "$L"

step "OpenSlide's source (LGPL-2.1)"
OS_VERSION=$(sed -n 's/^Version: //p' "$SITE"/openslide_bin-*.dist-info/METADATA)
SDIST=openslide_bin-$OS_VERSION.tar.gz
CACHE=${WSISEG_SOURCES:-$HOME/.cache/wsiseg/sources}
mkdir -p "$CACHE"
if [ ! -s "$CACHE/$SDIST" ]; then
    url=$(python3 - "$OS_VERSION" <<'PY' || true
import re, sys, urllib.request
v = sys.argv[1]
html = urllib.request.urlopen("https://pypi.org/simple/openslide-bin/", timeout=30).read().decode()
links = [l for l in re.findall(r'href="([^"]+)"', html) if ("openslide_bin-%s.tar.gz" % v) in l]
print(links[0] if links else "")
PY
)
    if [ -n "$url" ]; then
        python3 - "$url" "$CACHE/$SDIST" <<'PY'
import hashlib, sys, urllib.request
url, dest = sys.argv[1], sys.argv[2]
data = urllib.request.urlopen(url.split("#")[0], timeout=120).read()
want = url.split("#sha256=")[1] if "#sha256=" in url else None
if want and hashlib.sha256(data).hexdigest() != want:
    sys.exit("bundle.sh: %s: sha256 mismatch" % url)
open(dest + ".partial", "wb").write(data)
import os; os.replace(dest + ".partial", dest)
PY
    fi
fi
if [ -s "$CACHE/$SDIST" ]; then
    cp "$CACHE/$SDIST" "$S/sources/"
else
    echo "bundle.sh: warning: could not fetch $SDIST from PyPI; NOTICE.md says where it is" >&2
fi
cat > "$S/NOTICE.md" <<EOF
# wsiseg $VERSION bundle ($FLAVOR) — what it contains and under which licences

- \`wsiseg\`: MIT OR Apache-2.0. Statically linked: the Rust crates listed in
  licenses/rust-crates.txt (their licence files under licenses/rust/) and
  tcmalloc (gperftools, BSD-3-Clause: licenses/libgoogle-perftools-dev.copyright).
- libtorch $(cat "$S/build-version") (lib/libtorch_cpu.so, libtorch.so, libc10.so, libgomp.so.1$([ "$FLAVOR" = cuda ] && echo ", libtorch_cuda.so, ...")),
  from PyPI's torch wheel: BSD-3-Clause with third-party notices, licenses/libtorch/.
- NVIDIA CUDA libraries (lib/libcudart*, libcupti*$([ "$FLAVOR" = cuda ] && echo ", libcublas*, libcudnn*, libnccl*, ...")), from
  PyPI's nvidia-* wheels, redistributed under NVIDIA's licence agreements
  shipped with them: licenses/nvidia_*/.
- OpenSlide $OS_VERSION (lib/libopenslide.so.1, from the openslide-bin wheel,
  with the libraries it includes: licenses/openslide-bin/): GNU LGPL 2.1.
  wsiseg links it dynamically; replace lib/libopenslide.so.1 with your own
  build of OpenSlide 4 to relink. Its complete source is
  sources/$SDIST (from https://pypi.org/project/openslide-bin/$OS_VERSION/).
- libjpeg-turbo (lib/libjpeg.so.62, Debian's libjpeg62-turbo): IJG and
  BSD-style licences, licenses/libjpeg62-turbo.copyright.
- python/wsiseg-*.whl: the same engine as a Python extension (MIT OR
  Apache-2.0), with the Rust crates of licenses/rust-crates.txt (pyo3, numpy
  among them); it links the libtorch and OpenSlide of the environment it is
  installed into.
- OpenSeadragon $OSD_VERSION (built into \`wsiseg\` for \`wsiseg view\`, from the
  npm registry): BSD-3-Clause, licenses/openseadragon/LICENSE.txt (the viewer
  also serves it at assets/openseadragon-LICENSE.txt).
- ONNX Runtime (lib/libonnxruntime.so, from PyPI's onnxruntime wheel): MIT, with
  its third-party notices, licenses/onnxruntime/.
EOF

step "checksums"
(cd "$S" && find . -type f ! -name SHA256SUMS -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum > SHA256SUMS)
mv "$S" "$STAGE"
echo "bundle: $STAGE ($(du -sh "$STAGE" | cut -f1))" >&2

if [ "$ARCHIVE" = 1 ]; then
    step "archive"
    OUT=dist/$NAME.tar.zst
    rm -f "$OUT" "$OUT.partial"
    tar -C dist --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - "$NAME" |
        zstd -q -T0 -10 -o "$OUT.partial"
    mv "$OUT.partial" "$OUT"
    (cd dist && sha256sum "$NAME.tar.zst" > "$NAME.tar.zst.sha256")
    echo "bundle: $OUT ($(du -h "$OUT" | cut -f1)); checksum in $OUT.sha256" >&2
fi
