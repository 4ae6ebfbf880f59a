"""What the model card of the pneumonia model measures on the exported ONNX file (run-time path only).

- :func:`predict_files`: labelled files -> scores, gate verdicts, CAMs (decode -> border crop -> resize ->
  ONNX, exactly as the app);
- :func:`metrics`: the shared :func:`inference.metrics.binary_summary` per set, intervals resampled by
  patient;
- :func:`run_all`: the gate on each kind of case (validation-derived transformations, held-out non-chest
  material, a lateral-view proxy), the score's stability under added borders and text markers, and the
  share of heat inside the lung fields (:mod:`lung_fields`) on the external pneumonia films.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import pneumonia_cases as cases
from .lung_fields import _ellipse, heat_share, lung_fields
from .pneumonia_data import Item, decode_grey, patient_id

ENDO = Path("/work/data/endo/datasets")


def predict_files(model, items: list[Item]) -> dict:
    """Scores of labelled files through the app's path. Keys: y, prob, ood, gate_chest, refused, files, cam."""
    out = {"y": [], "prob": [], "ood": [], "gate_chest": [], "refused": [], "files": [], "cam": []}
    for it in items:
        g = decode_grey(it.path)
        small, _, _ = model.preprocess_box(g)
        o = model.run_batch(small[None])
        gate = o["gate"][0] if "gate" in o else None
        ok, _, _ = model.ood_check(small, float(o["ood"][0]), False, "", gate)
        out["y"].append(it.label)
        out["prob"].append(float(o["prob"][0]))
        out["ood"].append(float(o["ood"][0]))
        out["gate_chest"].append(float(gate[0]) if gate is not None else 1.0)
        out["refused"].append(not ok)
        out["files"].append(it.path.name)
        out["cam"].append(o["cam"][0])
    return {k: np.asarray(v) for k, v in out.items()}


def metrics(preds: dict, thr: float) -> dict:
    from ..metrics import binary_summary

    out = {}
    for k, v in preds.items():
        clusters = [patient_id(str(f)) for f in v["files"]]
        s = binary_summary(np.asarray(v["y"]), np.asarray(v["prob"], np.float64), thr, clusters=clusters)
        s["gate_refused"] = int(np.asarray(v["refused"]).sum())
        ok = ~np.asarray(v["refused"], bool)
        if ok.any() and (~ok).any():
            s["accepted_only"] = {m: binary_summary(np.asarray(v["y"])[ok], np.asarray(v["prob"])[ok], thr,
                                                    n_boot=200)[m] for m in ("n", "auroc", "sensitivity",
                                                                               "specificity", "confusion")}
        out[k] = s
    return out


def _verdicts(model, imgs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(refused, prob, reasons) of whole images through :meth:`PneumoniaModel.analyse`'s gate path."""
    refused, prob, reasons = [], [], []
    for im in imgs:
        small, colour, _ = model.preprocess_box(im)
        o = model.run_batch(small[None])
        ok, reason, _ = model.ood_check(small, float(o["ood"][0]), colour, "", o["gate"][0] if "gate" in o else None)
        refused.append(not ok)
        prob.append(float(o["prob"][0]))
        reasons.append(reason)
    return np.asarray(refused), np.asarray(prob), reasons


def _reason_counts(reasons: list[str], refused: np.ndarray) -> dict:
    out: dict[str, int] = {}
    for r, f in zip(reasons, refused):
        if f:
            out[r] = out.get(r, 0) + 1
    return out


def gate_table(model, x_va: np.ndarray, seed: int = 0, n: int = 120, emit: Callable[[dict], None] | None = None
               ) -> tuple[list[dict], dict]:
    """The gate on each kind of case built from ``n`` validation films (seeded), and the score's stability
    (|change in P|, label flips at the threshold) for the kinds that must be *accepted* unchanged."""
    rng = np.random.RandomState(seed)
    films = [np.asarray(f) for f in x_va[np.sort(rng.permutation(len(x_va))[:n])]]
    thr = model.threshold
    base_ref, base_p, base_r = _verdicts(model, films)
    rows = [{"kind": "validation films as they are", "should": "accept", "n": len(films),
             "refused": int(base_ref.sum()), "reasons": _reason_counts(base_r, base_ref)}]
    kinds = [
        ("black bands left + right (12 %, flat)", "accept", lambda f: cases.with_bands(f, 0.12, 0)),
        ("white bands top + bottom (10 %, flat)", "accept",
         lambda f: cases.with_bands(f, 0.10, 255, ("top", "bottom"))),
        ("black bands left + right (12 %, noisy: not cropped)", "accept",
         lambda f: cases.with_bands(f, 0.12, 0, noisy=True)),
        ("text marker 'R' top-left", "accept", lambda f: cases.with_marker(f, "R")),
        ("text marker 'PORTABLE' bottom-right", "accept", lambda f: cases.with_marker(f, "PORTABLE", "bottom-right")),
        ("rotated 5 degrees", "accept", lambda f: cases.rotated_by(f, 5)),
        ("rotated 15 degrees", "flag", lambda f: cases.rotated_by(f, 15)),
        ("rotated 30 degrees", "refuse", lambda f: cases.rotated_by(f, 30)),
        ("rotated 45 degrees", "refuse", lambda f: cases.rotated_by(f, 45)),
        ("turned 90 degrees clockwise", "refuse", lambda f: cases.rotated(f, 3)),
        ("turned 90 degrees anticlockwise", "refuse", lambda f: cases.rotated(f, 1)),
        ("upside down (180 degrees)", "refuse", lambda f: cases.rotated(f, 2)),
        ("inverted (negative)", "refuse", cases.inverted),
        ("lateral-view proxy (one hemithorax stretched)", "refuse", lambda f: cases.lateral_proxy(f, 0)),
    ]
    stab = {}
    for label, should, fn in kinds:
        imgs = [fn(f) for f in films]
        ref, p, reasons = _verdicts(model, imgs)
        row = {"kind": label, "should": should, "n": len(imgs), "refused": int(ref.sum()),
               "reasons": _reason_counts(reasons, ref)}
        if should == "accept":
            dp = np.abs(p - base_p)
            flips = int(((p >= thr) != (base_p >= thr)).sum())
            row.update({"median_abs_dp": float(np.median(dp)), "p95_abs_dp": float(np.quantile(dp, 0.95)),
                        "label_flips": flips})
            stab[label] = {k: row[k] for k in ("median_abs_dp", "p95_abs_dp", "label_flips")}
        rows.append(row)
        if emit:
            emit({"event": "gate_check", **{k: v for k, v in row.items() if k != "reasons"}})
    return rows, stab


def non_chest_table(model, seed: int = 99, endo: Path | None = ENDO) -> list[dict]:
    """Held-out non-chest material: generated images (another seed than the gate's training), colonoscopy
    frames of CVC-ClinicDB and Children_NoPolip (the gate trained on Kvasir-SEG only) in colour and in
    grey, a photograph, CT and MR slices."""
    rows = []
    gen = [im for _, im in cases.generated(seed, 64)]
    rows.append(("generated non-images (noise, ramps, shapes, text, checkerboards, blobs)", gen))
    for name in ("CVC-ClinicDB", "Children_NoPolip") if endo else ():
        grey = cases.folder_images(endo / name / "images", 60, seed=seed)
        if grey:
            rows.append((f"{name} colonoscopy frames, greyscale", grey))
    colour = _colour_endo(endo / "CVC-ClinicDB" / "images", 20, seed) if endo else []
    if colour:
        rows.append(("CVC-ClinicDB colonoscopy frames in colour", colour))
    try:
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        if p.exists():
            rows.append(("a photograph (matplotlib grace_hopper.jpg), greyscale", [decode_grey(p)]))
    except Exception:  # pragma: no cover - optional
        pass
    try:
        import pydicom
        from pydicom.data import get_testdata_file

        sl = []
        for f in ("CT_small.dcm", "MR_small.dcm"):
            a = pydicom.dcmread(get_testdata_file(f)).pixel_array.astype(np.float32)
            lo, hi = np.percentile(a, [0.5, 99.5])
            sl.append(np.clip((a - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8))
        rows.append(("CT and MR slices (pydicom test files) as greyscale, no modality hint", sl))
    except Exception:  # pragma: no cover - optional
        pass
    out = []
    for label, imgs in rows:
        ref, _, reasons = _verdicts(model, imgs)
        out.append({"kind": label, "should": "refuse", "n": len(imgs), "refused": int(ref.sum()),
                    "reasons": _reason_counts(reasons, ref)})
    return out


def _colour_endo(folder: Path, n: int, seed: int) -> list[np.ndarray]:
    import cv2

    if not folder.is_dir():
        return []
    files = sorted(folder.iterdir())
    pick = np.random.default_rng(seed + 1).permutation(len(files))[:n]
    out = []
    for i in sorted(pick):
        a = cv2.imread(str(files[i]), cv2.IMREAD_COLOR)
        if a is not None:
            out.append(np.ascontiguousarray(a[..., ::-1]))
    return out


def lung_heat(model, items: list[Item], cams: np.ndarray) -> dict:
    """Share of the positive heat inside the estimated lung fields on pneumonia films (and inside the fixed
    two-ellipse template), with the share of the image each covers (a uniform heatmap's score)."""
    shares, tmpl, area, tarea, fallback, empty = [], [], [], [], 0, 0
    s = model.size
    template = _ellipse(s, 0.28) | _ellipse(s, 0.72)
    for it, cam in zip(items, cams):
        small, _, _ = model.preprocess_box(decode_grey(it.path))
        mask, facts = lung_fields(small)
        h = heat_share(cam, mask)
        if h != h:
            empty += 1
            continue
        shares.append(h)
        tmpl.append(heat_share(cam, template))
        area.append(facts["area_fraction"])
        tarea.append(float(template.mean()))
        fallback += bool(facts["fallback"])

    def q(v):
        v = np.asarray(v)
        return {"median": float(np.median(v)), "q25": float(np.quantile(v, 0.25)),
                "q75": float(np.quantile(v, 0.75)), "mean": float(v.mean())} if len(v) else {}

    return {"n": len(items), "n_with_heat": len(shares), "no_positive_heat": empty,
            "share_in_lung_fields": q(shares), "lung_field_area_fraction": q(area),
            "share_in_template": q(tmpl), "template_area_fraction": float(np.mean(tarea)) if tarea else None,
            "films_over_half_in_fields": int((np.asarray(shares) > 0.5).sum()),
            "lung_field_fallback_films": fallback}


def run_all(model, *, x_va: np.ndarray, y_va: np.ndarray, ext_items, preds: dict, seed: int,
            emit: Callable[[dict], None] | None = None, endo: Path | None = ENDO, n_gate: int = 120) -> dict:
    rows, stab = gate_table(model, x_va, seed=seed, n=n_gate, emit=emit)
    out = {"gate": rows, "stability": stab, "non_chest": non_chest_table(model, endo=endo)}
    if ext_items is not None and "external" in preds:
        y = np.asarray(preds["external"]["y"])
        sel = np.flatnonzero(y == 1)
        out["lung_heat_external_pneumonia"] = lung_heat(model, [ext_items[i] for i in sel],
                                                        np.asarray(preds["external"]["cam"])[sel])
    return out
