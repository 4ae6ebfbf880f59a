"""The heart-sound batch of the app: a folder of recordings -> a CSV with one row per file (no Qt).

A thin view over ``inference.batch`` (the archive-scale runner behind ``lightbox batch``): the same
file discovery, the same reading ahead of the model and the same error rows; what it adds is the
per-file progress and cancellation a dialog needs, and the CSV shape clinicians asked for (file,
duration, class, probability per class, heart rate, error).
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from inference.atomic import atomic_write_text
from inference.registry import Registry
from inference.study import ReadError


def list_audio(folder: str | Path) -> list[Path]:
    from inference.batch import collect_inputs

    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(folder, "not a folder")
    return [p for p in collect_inputs([str(folder)], "pcg") if not p.name.startswith(".")]


def run_batch(folder: str | Path, model_id: str, registry: Registry, ctx, out_csv: str | Path | None = None,
              keep: list | None = None) -> dict:
    """Read + classify every recording; a file that fails gets its error in the row, the batch goes on.

    Returns {"rows": [...], "columns": [...], "classes": [...], "csv": path, "cancelled", "total"}.
    ``keep`` (a list) receives (study, result) pairs without the audio, for storing. ``ctx.progress``
    raises Cancelled when the user cancels: the rows done so far are still written.
    """
    from inference.batch import Runner, row_records
    from inference.pipeline import Cancelled

    files = list_audio(folder)
    if not files:
        raise ReadError(folder, "no audio files (.wav .flac .ogg .mp3) in this folder")
    runner = Runner(model_id, registry=registry)  # refuses a model that is not installed or tampered
    rows: list[dict] = []
    classes: list[str] = []
    cancelled = False
    root = Path(folder)
    for i, f in enumerate(files):
        try:
            ctx.progress(i / len(files), f"{i + 1}/{len(files)}: {f.name}")
        except Cancelled:
            cancelled = True
            break
        got = runner.run_paths([(str(f), "")])[0]  # the reader hashes the file for the study
        extra = {k: got.pop(k) for k in [k for k in got if k.startswith("_")]}
        out = got["outputs"]
        row = {"file": str(f.relative_to(root)), "error": got["error"],
               "duration_s": extra.get("_study", {}).get("metadata", {}).get("duration_s", ""),
               "class": out.get("class", ""), "probability": out.get("probability", ""),
               "heart_rate_bpm": "" if out.get("heart_rate_bpm") is None else out["heart_rate_bpm"]}
        for c, p in (out.get("probabilities") or {}).items():
            row[f"p_{c}"] = p
            if c not in classes:
                classes.append(c)
        if keep is not None and not got["error"]:
            keep.append(row_records(got, extra))
        rows.append(row)
    cols = ["file", "duration_s", "class", "probability"] + [f"p_{c}" for c in classes] + ["heart_rate_bpm", "error"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    if out_csv:
        atomic_write_text(out_csv, buf.getvalue())
    if not cancelled:
        try:
            ctx.progress(1.0, "done")
        except Cancelled:
            cancelled = True
    return {"rows": rows, "columns": cols, "classes": classes, "csv": str(out_csv) if out_csv else None,
            "cancelled": cancelled, "total": len(files)}
