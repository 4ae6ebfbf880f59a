"""Batch classification of a folder of heart-sound recordings -> CSV (no Qt; the app and CLI share it)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..atomic import atomic_write_text
from ..registry import Registry, WeightsError
from ..study import ReadError
from .dataset import AUDIO_EXTS


def list_audio(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ReadError(folder, "not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTS
                  and not p.name.startswith("."))


def run_batch(folder: str | Path, model_id: str, registry: Registry, ctx, out_csv: str | Path | None = None,
              keep: list | None = None) -> dict:
    """Read + classify every recording; a file that fails gets its error in the row, the batch goes on.

    Returns {"rows": [...], "classes": [...], "csv": path}. ``keep`` (a list) receives (study, result) pairs
    with the audio dropped, for storing. ``ctx.progress`` raises Cancelled when the user cancels: rows done
    so far are still written.
    """
    from ..pipelines import Cancelled, JobContext
    from ..pipelines.pcg import analyse
    from ..readers.pcg import read

    files = list_audio(folder)
    if not files:
        raise ReadError(folder, "no audio files (.wav .flac .ogg .mp3) in this folder")
    registry.require(model_id)
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
        row = {"file": str(f.relative_to(root)), "duration_s": "", "class": "", "probability": "",
               "heart_rate_bpm": "", "error": ""}
        try:
            study = read(f)
            row["duration_s"] = study.metadata["duration_s"]
            res = analyse(study, model_id, registry, JobContext())  # per-file progress is the batch's own
            out = res.outputs
            row["class"] = out["class"]
            row["probability"] = out["probability"]
            for c, p in out["probabilities"].items():
                row[f"p_{c}"] = p
                if c not in classes:
                    classes.append(c)
            row["heart_rate_bpm"] = "" if out.get("heart_rate_bpm") is None else out["heart_rate_bpm"]
            if keep is not None:
                study.data = {}
                keep.append((study, res))
        except (ReadError, WeightsError) as e:
            row["error"] = e.problem if isinstance(e, ReadError) else str(e)
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
