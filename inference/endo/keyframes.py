"""The polyp mask on each finding's key frame, for the export bundle and the PDF (no Qt).

A finding proposed by a review result ("<model> · result #<id>") takes its key frame's mask from that
result's stored :class:`inference.endo.masks.MaskTrack`. A finding proposed in live mode
("<model> (live)") has no stored track: its key frame is given to the same model again (the model is
deterministic, so it draws the mask live mode drew). A clinician's finding gets no mask: the model did
not make it.
"""
from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from inference.endo.masks import BLOB_NAME, MaskFormatError, MaskTrack

_RESULT = re.compile(r"^(?P<model>[\w.-]+) · result #(?P<id>\d+)$")
_LIVE = re.compile(r"^(?P<model>[\w.-]+) \(live\)$")


def key_frame_masks(findings: list[dict[str, Any]], blob: Callable[[int, str], bytes | None],
                    frame_getter: Callable[[int], np.ndarray] | None = None,
                    registry=None) -> dict[int, np.ndarray]:
    """{finding id: bool mask} for the findings whose model drew one on their key frame.
    ``blob(result_id, name)`` reads a stored result payload (``Store.result_blob``)."""
    out: dict[int, np.ndarray] = {}
    tracks: dict[int, MaskTrack | None] = {}
    live: list[tuple[dict, str]] = []
    for f in findings:
        fi, src = f.get("frame_index"), (f.get("source") or "").strip()
        if fi is None or f.get("id") is None:
            continue
        m = _RESULT.match(src)
        if m:
            rid = int(m.group("id"))
            if rid not in tracks:
                data = blob(rid, BLOB_NAME)
                try:
                    tracks[rid] = MaskTrack.from_bytes(data) if data else None
                except MaskFormatError:
                    tracks[rid] = None
            t = tracks[rid]
            mask = t.mask(int(fi)) if t is not None else None
            if mask is not None:
                out[int(f["id"])] = mask
            continue
        m = _LIVE.match(src)
        if m and frame_getter is not None:
            live.append((f, m.group("model")))
    if live:
        out.update(_rerun(live, frame_getter, registry))
    return out


def _rerun(live: list[tuple[dict, str]], frame_getter, registry) -> dict[int, np.ndarray]:
    from inference.endo.models import POLYP_IDS, polyp_model
    from inference.registry import default_registry

    registry = registry or default_registry()
    models: dict[str, Any] = {}
    out: dict[int, np.ndarray] = {}
    for f, mid in live:
        if mid not in POLYP_IDS:
            continue
        try:
            if mid not in models:
                models[mid] = polyp_model(registry, mid, threads=1)
            rgb = frame_getter(int(f["frame_index"]))
        except Exception:  # the model is no longer installed, the frame cannot be decoded: no mask, no stop
            continue
        model = models[mid]
        if hasattr(model, "analyse"):
            r = model.analyse([rgb])[0]
            mask = r.mask if r.polyp else None
        else:
            dets, mask = model.detect_with_masks([rgb])[0]
            mask = mask if dets else None
        if mask is not None:
            out[int(f["id"])] = mask
    return out
