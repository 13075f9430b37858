"""Prints `wsiseg bench --json` figures and, given an nvidia-smi log
(`--query-gpu=timestamp,utilization.gpu --format=csv,noheader,nounits`),
the GPU utilisation during the end-to-end run: all samples, and the steady
state (the first and last 10% of the run left out).

    python3 scripts/bench_summary.py bench.json [util.csv]
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
        print(
            f"GPU utilisation, {name}: {len(v)} samples, busy (>=90%) in "
            f"{100 * busy / max(1, len(v)):.0f}%, mean {sum(v) / max(1, len(v)):.0f}%"
        )


def main():
    figures = json.load(open(sys.argv[1]))
    for key, value in figures.items():
        if isinstance(value, float):
            value = f"{value:.3f}"
        print(f"{key:<44} {value}")
    if len(sys.argv) > 2 and "e2e_unix_window" in figures:
        utilisation(sys.argv[2], figures["e2e_unix_window"])


if __name__ == "__main__":
    main()
