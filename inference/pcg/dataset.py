"""Labelled heart-sound collections for training: a PhysioNet-style ``labels.csv`` or class subfolders.

- ``labels.csv`` with columns ``record,label`` (optional ``database``), the audio in ``recordings/<record>.*``
  or beside the csv (PhysioNet/CinC 2016 layout as redistributed in ../shared/reference/pcg);
- otherwise every sub-folder is a class and holds its audio files (``normal/``, ``murmur/`` ...).

The split is by recording (never by window), stratified by label and source database, seeded.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3")


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    group: str  # source database (stratification); "" when unknown
    record: str


class DatasetError(Exception):
    pass


def scan(root: str | Path) -> list[Item]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    csv_path = root / "labels.csv"
    items: list[Item] = []
    if csv_path.exists():
        with open(csv_path, newline="") as f:
            for row in csv.DictReader(f):
                rec = (row.get("record") or row.get("file") or "").strip()
                lab = (row.get("label") or "").strip()
                if not rec or not lab:
                    continue
                cand = None
                for base in (root / "recordings", root):
                    for ext in ("",) + AUDIO_EXTS:
                        p = base / (rec + ext)
                        if p.is_file():
                            cand = p
                            break
                    if cand:
                        break
                if cand is None:
                    continue
                items.append(Item(cand, lab, (row.get("database") or "").strip(), rec))
    else:
        for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix.lower() in AUDIO_EXTS:
                    items.append(Item(p, d.name, "", f"{d.name}/{p.relative_to(d)}"))
    if not items:
        raise DatasetError(f"{root}: no labelled audio found (expected labels.csv + recordings/, "
                           "or one sub-folder of audio files per class)")
    classes = sorted({i.label for i in items})
    if len(classes) < 2:
        raise DatasetError(f"{root}: only one class ({classes[0]}); training needs at least two")
    return items


def classes_of(items: list[Item]) -> list[str]:
    labs = sorted({i.label for i in items})
    # the conventional order for the default model: normal first
    if "normal" in labs:
        labs.remove("normal")
        labs.insert(0, "normal")
    return labs


def split(items: list[Item], seed: int = 2016, val: float = 0.15, test: float = 0.15
          ) -> dict[str, list[Item]]:
    """Stratified (label x database) split by recording. Every stratum with >= 3 records gives at
    least one to val and test; deterministic for a given seed and item list."""
    rng = np.random.RandomState(seed)
    out: dict[str, list[Item]] = {"train": [], "val": [], "test": []}
    strata: dict[tuple[str, str], list[Item]] = {}
    for it in sorted(items, key=lambda i: i.record):
        strata.setdefault((it.label, it.group), []).append(it)
    for key in sorted(strata):
        members = strata[key]
        order = rng.permutation(len(members))
        n = len(members)
        n_test = int(round(n * test)) if n >= 3 else 0
        n_val = int(round(n * val)) if n >= 3 else 0
        if n >= 3:
            n_test, n_val = max(n_test, 1), max(n_val, 1)
        for rank, idx in enumerate(order):
            part = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out[part].append(members[idx])
    return out
