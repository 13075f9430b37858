#!/usr/bin/env bash
# Hashes of every output of a fixed set of runs, for refactors that must
# keep outputs byte-identical: run it with the binary before and after the
# change and diff the two listings.
#
#   scripts/output_hashes.sh BINARY OUTDIR > hashes.txt
#
# Runs (CPU, the shipped model): tests/data/default.svs and a 6144×4096
# synthetic slide (seed 7) with every format and --probabilities; an
# ensemble of the model with itself (weights 0.7,0.3) with --tta flips; a
# folder of three slides with the default formats (summary.json/.csv).
# JSON and CSV are hashed with times, durations, memory peaks, the command
# line, host and OUTDIR normalised away; index.html is not compared.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,13p' "$0"; exit 2; }
BIN=$(realpath "$1")
OUT=$(realpath -m "$2")
REPO=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
"$BIN" -q synth --out synth-in --seed 7 --size 6144x4096 >/dev/null
ALL=png,tiff,overlay,geojson,asap,report
"$BIN" -q segment "$REPO/tests/data/default.svs" -m "$REPO/models/unet" -o default --formats $ALL --probabilities
"$BIN" -q segment synth-in/synth-7.svs -m "$REPO/models/unet" -o synth --formats $ALL --probabilities
"$BIN" -q segment synth-in/synth-7.svs -m "$REPO/models/unet" -m "$REPO/models/unet" \
    --weights 0.7,0.3 --tta flips -o ensemble --formats $ALL --probabilities
mkdir -p folder-in
cp "$REPO/tests/data/default.svs" "$REPO/tests/data/small.svs" synth-in/synth-7.svs folder-in/
"$BIN" -q segment folder-in -m "$REPO/models/unet" -o folder
find default synth ensemble folder -type f ! -name index.html | sort | while read -r f; do
    case $f in
        *.json | *.csv)
            python3 - "$f" "$OUT" <<'PY' | sha256sum | sed "s|-|$f (normalised)|"
import csv, json, re, sys
path, out = sys.argv[1], sys.argv[2]
TIMEY = re.compile(r'(_s$|^total$|utc|_mib$|mp_s|per_s|seconds|^started|^finished|wall|^timings'
                   r'|^command_line$|^working_directory$|^host$)')
def norm(v):
    if isinstance(v, dict):
        if str(v.get('name', '')).endswith('report.json') and 'bytes' in v:
            v = dict(v, bytes='<t>')  # the record lists the report's size
        return {k: ('<t>' if TIMEY.search(k) else norm(x)) for k, x in v.items()}
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, str):
        return v.replace(out, '<OUT>')
    return v
if path.endswith('.csv'):
    rows = list(csv.reader(open(path)))
    for r in rows:
        print([('<t>' if TIMEY.search(h) else norm(c)) for h, c in zip(rows[0], r)])
else:
    print(json.dumps(norm(json.load(open(path))), sort_keys=True, indent=1))
PY
            ;;
        *) sha256sum "$f" ;;
    esac
done
