"""``lightbox bench``: timing and memory figures for what is implemented.

Speed targets live here, not in timed tests. Each modality's ``bench`` module (named in
``inference.modalities``) and each core benchmark yields ``(label, value, unit, note)`` rows from
``run()``; this prints them as one table (and ``--json`` as JSON).
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import resource
import sys
import time
from typing import Callable

from inference import modalities
from inference.runtimes import device_summary


def best_of(fn: Callable[[], object], n: int = 5) -> tuple[float, float]:
    """(best, median) wall time of ``n`` calls, in seconds."""
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts), statistics.median(ts)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox bench")
    p.add_argument("--only", help="comma-separated benchmark names (e.g. startup,ecg)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    benches = dict(modalities.CORE_BENCHES) | {m.key: m.bench for m in modalities.TABLE}
    names = list(benches)
    if args.only:
        want = set(args.only.split(","))
        names = [n for n in names if n in want]
    rows = []
    print(f"Lightbox bench · {device_summary()}", flush=True)
    for n in names:
        t0 = time.perf_counter()
        try:
            mod = importlib.import_module(benches[n])
            for label, value, unit, note in mod.run():
                rows.append({"bench": n, "label": label, "value": value, "unit": unit, "note": note})
                if not args.json:
                    v = f"{value:.4g}" if isinstance(value, float) else str(value)
                    print(f"  {n:<8} {label:<44} {v:>10} {unit:<10} {note}", flush=True)
        except Exception as e:  # one broken benchmark must not hide the others
            rows.append({"bench": n, "label": "error", "value": None, "unit": "", "note": str(e)})
            print(f"  {n:<8} ERROR: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        if not args.json:
            print(f"  {n:<8} ({time.perf_counter() - t0:.1f} s, peak RSS {peak_rss_mb():.0f} MB)", flush=True)
    if args.json:
        print(json.dumps(rows, indent=2))
    return 0
