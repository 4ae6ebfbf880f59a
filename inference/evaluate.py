"""``lightbox evaluate MODEL LABELS.csv``: check a model on this site's own labelled cases.

A label file names each case's file and its reference (the header says which kind):

- ``file,label``  a class per file (classifiers): class names (``normal``/``abnormal``, ``N``/``A``…) or 1/0
- ``file,ef``     an ejection fraction in % (optionally ``category`` and ``comment`` columns)
- ``file,mask``   a reference mask image (PNG/JPEG, foreground > 0) or ``.npy`` per file (segmentation)
- the EchoNet-Dynamic ``FileList.csv`` as it is (``FileName, EF, ESV, EDV, FrameHeight, FrameWidth, FPS,
  NumberOfFrames, Split``; ``FileName`` may lack ``.avi``; files are looked for beside the CSV and in
  ``Videos/``)

Files are resolved relative to the CSV. The cases run through ``inference.batch.Runner`` — the same
reader and pipeline the app and ``lightbox batch`` use, rows in the same format — and every finished
row is journalled in the output folder, so an interrupted run resumes where it stopped. The metrics
come from ``inference.metrics`` (one definition of each number, shared with the model cards); which
model output is "the score" is said once, in :data:`ADAPTERS`.

Every case that could not be evaluated (file missing or unreadable, label not understood, model error)
is listed under ``failures`` with its reason: never dropped silently.

Pure Python + numpy: no Qt. The PDF is drawn app-side from the JSON written here.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__
from . import metrics as M
from .atomic import atomic_write_text
from .echo.preprocess import CATEGORIES as EF_CATEGORIES
from .echo.preprocess import ef_category
from .results import jsonable
from .study import sha256_file

JSON_NAME = "evaluation.json"
PDF_NAME = "evaluation.pdf"
TABLE_NAME = "results.csv"  # lightbox batch's table, same columns
CASES_NAME = "cases.csv"
JOURNAL_NAME = "results.csv.journal.jsonl"  # lightbox batch's journal name for results.csv

# The EF bands every Lightbox EF category uses (inference.echo.preprocess.ef_category, also the echo
# viewer's and the practice loop's): one definition, stated in every evaluation.
EF_CUTOFFS = "normal ≥ 53 %, mildly reduced 41–52 %, moderately reduced 30–40 %, severely reduced < 30 %"
EF_CUTOFFS_SOURCE = ("ASE/EACVI 2015 chamber quantification (Lang et al., J Am Soc Echocardiogr 2015;28:1-39, "
                     "Table 4), both sexes simplified to the lower female/male limit")

VIDEO_SUFFIXES = (".avi", ".mp4", ".m4v", ".mov", ".gif", ".dcm", ".dicom")
SUBFOLDERS = ("Videos", "videos", "recordings", "images", "Images")


def _suffixes(kind: str) -> tuple[str, ...]:
    if kind == "ef":
        return VIDEO_SUFFIXES
    from .detect import all_extensions

    out: list[str] = []
    for exts in all_extensions().values():
        out += [e for e in exts if e not in out and e not in (".dat", ".atr", ".xyz")]
    return tuple(out)


class LabelError(ValueError):
    """The label file cannot be used as it is; the message says what to fix."""


# -- which output is the score: one table ---------------------------------------------------------------
@dataclass(frozen=True)
class Adapter:
    """How one model's Result is read against a reference.

    kinds: ``binary`` (score = probability of ``positive``), ``multiclass`` (argmax over ``classes``; the
    ``positive`` class also gets a one-vs-rest AUROC), ``ef`` (a number in %), ``segmentation`` (a mask).
    A model may support several (the polyp model: detection label and mask)."""

    model_id: str
    kinds: tuple[str, ...]
    positive: str = ""
    negative: str = ""
    classes: tuple[str, ...] = ()
    score: tuple[tuple[str, ...], ...] = ()  # output paths, first present wins: ("probabilities", "abnormal")
    threshold: float | None = None  # None: outputs["threshold"], then the manifest's outputs.threshold, else 0.5
    probabilistic: bool = True  # scores are probabilities (calibration plot, Brier) — not for anomaly scores
    aliases: dict[str, str] = field(default_factory=dict)  # label text (lower case) -> class name
    value: str = ""  # EF: the output key
    mask: tuple[str, ...] = ()  # Result.arrays keys holding the predicted mask, first present wins
    score_fn: Callable[[dict], float | None] | None = None  # when the score is not a plain output
    says: str = ""  # one line for the report: what is compared with what

    def describe(self) -> str:
        if self.says:
            return self.says
        if self.score:
            return "score = outputs[" + "][".join(repr(k) for k in self.score[0]) + "]"
        return ""


_YES = {"1", "true", "yes", "y", "positive", "pos", "abnormal"}
_NO = {"0", "false", "no", "n", "negative", "neg", "normal"}


def _max_finding_confidence(outputs: dict) -> float | None:
    f = outputs.get("_findings")
    if f is None:
        return None
    return max((float(x.get("confidence") or 0.0) for x in f), default=0.0)


def _hs(model_id: str) -> Adapter:
    return Adapter(model_id, ("binary",), positive="abnormal", negative="normal", classes=("normal", "abnormal"),
                   score=(("probabilities", "abnormal"),), threshold=0.5,
                   aliases={"1": "abnormal", "0": "normal", "-1": "normal"},  # PhysioNet 2016 REFERENCE: 1 / -1
                   says="score = p(abnormal), the mean of the window probabilities; called abnormal at ≥ 0.5 "
                        "(the argmax of two classes)")


def _polyp(model_id: str) -> Adapter:
    return Adapter(model_id, ("binary", "segmentation"), positive="polyp", negative="no polyp",
                   score_fn=_max_finding_confidence, mask=("mask", "masks"),
                   aliases={"1": "polyp", "0": "no polyp", "yes": "polyp", "no": "no polyp", "none": "no polyp",
                            "normal": "no polyp"},
                   says="score = the highest polyp confidence in the study (0 when none); mask = the model's mask")


ADAPTERS: dict[str, Adapter] = {a.model_id: a for a in [
    _hs("heart-sound"), _hs("heart-sound-local"), _hs("heart-sound-keras"),
    Adapter("ecg-rhythm", ("multiclass", "binary"), positive="af", negative="normal",
            classes=("normal", "af", "other", "noisy"), score=(("probabilities", "af"),), threshold=0.5,
            aliases={"n": "normal", "a": "af", "o": "other", "~": "noisy", "afib": "af",
                     "atrial fibrillation": "af", "nsr": "normal", "sinus": "normal"},
            says="class = argmax of the record probabilities (normal / AF / other / noisy); AF vs rest: "
                 "score = p(af), called AF at ≥ 0.5"),
    Adapter("ecg2af", ("binary",), positive="af", negative="normal", score=(("af_in_read_probability",),),
            threshold=0.5, aliases={"a": "af", "1": "af", "0": "normal", "n": "normal", "afib": "af"},
            says="score = af_in_read_probability (ECG2AF's AF-in-this-read head); called AF at ≥ 0.5"),
    Adapter("xray-pneumonia", ("binary",), positive="pneumonia", negative="normal",
            classes=("normal", "pneumonia"),
            score=(("p_pneumonia",),),
            aliases={"1": "pneumonia", "0": "normal", "pneumonia": "pneumonia", "normal": "normal",
                     "bacteria": "pneumonia", "virus": "pneumonia"},
            says="score = p(pneumonia); called pneumonia at the model's threshold"),
    Adapter("xray-anomaly", ("binary",), positive="abnormal", negative="normal", score=(("anomaly_score",),),
            probabilistic=False, aliases={"1": "abnormal", "0": "normal", "pneumonia": "abnormal"},
            says="score = anomaly_score (fused 0..1, not a probability); flagged at the calibrated threshold"),
    _polyp("endo-polyp"), _polyp("endo-polyp-lightbox"),
    Adapter("echonet-ef", ("ef",), value="LVEF_whole_video_%",
            says="EF = LVEF_whole_video_% (mean over the clips EchoNet-Dynamic ran on)"),
]}


def _get(outputs: dict, path: Sequence[str]):
    v: Any = outputs
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def adapter_for(model_id: str, registry=None) -> Adapter:
    """The table's adapter, else one built from the manifest's ``outputs.classes`` (two classes: binary on
    the second; more: multiclass by argmax)."""
    if model_id in ADAPTERS:
        return ADAPTERS[model_id]
    entry = registry.entries.get(model_id) if registry is not None else None
    classes = tuple(str(c) for c in (entry.outputs.get("classes") or ())) if entry else ()
    if len(classes) == 2:
        return Adapter(model_id, ("binary",), positive=classes[1], negative=classes[0], classes=classes,
                       score=(("probabilities", classes[1]),),
                       says=f"score = p({classes[1]}) (from the manifest's classes)")
    if len(classes) > 2:
        return Adapter(model_id, ("multiclass",), classes=classes,
                       says="class = argmax of outputs['probabilities'] (from the manifest's classes)")
    raise LabelError(f"{model_id}: Lightbox does not know which output of this model to compare with a "
                     "reference (no entry in inference.evaluate.ADAPTERS and no classes in the manifest)")


def model_threshold(adapter: Adapter, outputs: dict | None = None, registry=None) -> tuple[float, str]:
    """(threshold, where it came from)."""
    if adapter.threshold is not None:
        return float(adapter.threshold), "Lightbox's decision rule for this model"
    if outputs and isinstance(outputs.get("threshold"), (int, float)):
        return float(outputs["threshold"]), str(outputs.get("threshold_source") or
                                                "the model's own threshold (in its result)")
    entry = registry.entries.get(adapter.model_id) if registry is not None else None
    if entry is not None and isinstance(entry.outputs.get("threshold"), (int, float)):
        return float(entry.outputs["threshold"]), "the manifest's threshold"
    return 0.5, "0.5 (the model states none)"


def score_of(adapter: Adapter, outputs: dict) -> float | None:
    if adapter.score_fn is not None:
        return adapter.score_fn(outputs)
    for path in adapter.score:
        v = _get(outputs, path)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def predicted_class(adapter: Adapter, outputs: dict) -> str | None:
    probs = outputs.get("probabilities")
    if isinstance(probs, dict) and probs:
        return max(probs, key=lambda c: float(probs[c] or 0.0))
    for k in ("class", "label", "rhythm"):
        if isinstance(outputs.get(k), str):
            return outputs[k]
    return None


def normalise_label(adapter: Adapter, text: str) -> str | None:
    """A label as written -> the adapter's class name, or None when it is not one."""
    t = str(text).strip().lower()
    if t == "":
        return None
    names = list(adapter.classes) or [c for c in (adapter.negative, adapter.positive) if c]
    for c in names:
        if t == c.lower():
            return c
    if t in adapter.aliases:
        return adapter.aliases[t]
    if adapter.positive and adapter.negative and "binary" in adapter.kinds and "multiclass" not in adapter.kinds:
        if t in _YES:
            return adapter.positive
        if t in _NO:
            return adapter.negative
    return None


# -- label files --------------------------------------------------------------------------------------
@dataclass
class Case:
    line: int  # line in the CSV (the header is line 1)
    file: str  # as written in the CSV
    path: Path | None  # resolved (None: not found)
    label: str | None = None  # classifier reference, as written
    value: float | None = None  # EF reference
    mask: Path | None = None  # segmentation reference
    category: str = ""
    comment: str = ""
    split: str = ""
    error: str = ""  # why this case cannot be evaluated (before any model runs)
    sha256: str = ""  # of the file, once looked at


@dataclass
class LabelSet:
    path: Path
    sha256: str
    kind: str  # label | ef | mask
    layout: str  # "file,label" | "file,ef" | "file,mask" | "EchoNet FileList"
    cases: list[Case]
    excluded: int = 0  # rows outside the chosen split


_FILE_COLS = ("file", "path", "filename", "file_name", "video", "image", "recording", "record")
_LABEL_COLS = ("label", "class", "diagnosis", "target", "y")
_EF_COLS = ("ef", "lvef", "ef_percent", "ef_%")


def _resolve(base: Path, name: str, search: Sequence[Path] = (), suffixes: Sequence[str] = ()) -> Path | None:
    name = name.strip()
    p = Path(name).expanduser()
    roots = [Path()] if p.is_absolute() else [base, *search]
    for root in roots:
        q = p if p.is_absolute() else root / p
        if q.exists():
            return q
        if not q.suffix or q.suffix.lower() not in suffixes:
            for s in suffixes:
                c = q.with_name(q.name + s)
                if c.exists():
                    return c
    return None


def read_labels(path: str | Path, split: str | None = None) -> LabelSet:
    """Parse a label file. Raises LabelError when the file as a whole is unusable; a bad row becomes a
    Case with ``error`` set (listed as a failure later)."""
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: label file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    rows = list(csv.reader(text.splitlines()))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise LabelError(f"{path.name}: empty label file")
    header = [h.strip().lower() for h in rows[0]]

    def col(names) -> int | None:
        return next((header.index(n) for n in names if n in header), None)

    fcol = col(_FILE_COLS)
    if fcol is None:
        raise LabelError(f"{path.name}: the first line must be a header naming the file column "
                         f"(file, path or FileName); found {', '.join(rows[0]) or 'nothing'}")
    mcol, ecol, lcol = col(("mask", "mask_file", "mask_path")), col(_EF_COLS), col(_LABEL_COLS)
    filelist = header[fcol] == "filename" and ecol is not None and "split" in header
    if mcol is not None:
        kind, layout = "mask", "file,mask"
    elif ecol is not None:
        kind, layout = "ef", "EchoNet FileList" if filelist else "file,ef"
    elif lcol is not None:
        kind, layout = "label", "file,label"
    else:
        raise LabelError(f"{path.name}: no reference column: name one 'label' (classifiers), 'ef' (ejection "
                         "fraction, %) or 'mask' (segmentation)")
    ccol, comcol, scol = col(("category",)), col(("comment", "comments", "note")), col(("split",))
    base = path.parent
    # a name without its extension (FileList's FileName, PhysioNet's record ids) is looked for with the
    # readers' extensions, beside the CSV and in the usual sub-folders
    search = [base / sub for sub in SUBFOLDERS if (base / sub).is_dir()]
    suffixes = _suffixes(kind)
    cases: list[Case] = []
    excluded = 0
    for i, r in enumerate(rows[1:], start=2):
        r = r + [""] * (len(header) - len(r))
        cell = lambda c: r[c].strip() if c is not None and c < len(r) else ""  # noqa: E731
        sp = cell(scol)
        if split and sp.lower() != split.lower():
            excluded += 1
            continue
        name = cell(fcol)
        case = Case(line=i, file=name, path=None, category=cell(ccol), comment=cell(comcol), split=sp)
        if not name:
            case.error = "no file named on this line"
            cases.append(case)
            continue
        case.path = _resolve(base, name, search, suffixes)
        if case.path is None:
            case.error = "file not found"
        if kind == "label":
            case.label = cell(lcol)
            if not case.label and not case.error:
                case.error = "no label on this line"
        elif kind == "ef":
            v = cell(ecol).replace("%", "").strip()
            try:
                case.value = float(v)
                if not (0.0 <= case.value <= 100.0) or case.value != case.value:
                    raise ValueError
            except ValueError:
                case.value = None
                case.error = case.error or f"EF {cell(ecol)!r} is not a percentage between 0 and 100"
        else:
            m = cell(mcol)
            case.mask = _resolve(base, m) if m else None
            if case.mask is None and not case.error:
                case.error = f"reference mask {m!r} not found" if m else "no mask named on this line"
        cases.append(case)
    if not cases and not excluded:
        raise LabelError(f"{path.name}: a header but no cases")
    if not cases:
        raise LabelError(f"{path.name}: no case in split {split!r}")
    return LabelSet(path=path, sha256=sha256_file(path), kind=kind, layout=layout, cases=cases, excluded=excluded)


def read_mask(path: Path) -> np.ndarray:
    """A reference mask as a boolean array (foreground: > 0 in a .npy; > 127 in an 8-bit image)."""
    if path.suffix.lower() == ".npy":
        return np.asarray(np.load(path, allow_pickle=False)).squeeze() > 0
    import cv2

    a = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if a is None:
        raise ValueError(f"{path.name}: not a readable mask image")
    return a > 127


def _fit(pred: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    pred = np.asarray(pred).squeeze()
    if pred.ndim == 3:  # per-frame masks: the first frame (one image per case)
        pred = pred[0]
    if pred.shape != shape:
        import cv2

        pred = cv2.resize(pred.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return pred.astype(bool) if pred.dtype == bool else pred > (0.5 if pred.dtype.kind == "f" else 0)


# -- running: batch's Runner, its rows and its journal ---------------------------------------------------
def _runner_class():
    from .batch import Runner

    class EvalRunner(Runner):
        """batch.Runner that also hands back the predicted mask (segmentation), kept out of the journal."""

        mask_keys: tuple[str, ...] = ()

        def _row(self, path, sha, study, err, r):
            row = super()._row(path, sha, study, err, r)
            if self.mask_keys and hasattr(r, "arrays"):
                for k in self.mask_keys:
                    if r.arrays.get(k) is not None:
                        row["_mask"] = np.asarray(r.arrays[k])
                        break
            return row

    return EvalRunner


def make_runner(model_id: str, registry=None):
    return _runner_class()(model_id, registry=registry)


def run_cases(runner, labels: LabelSet, out_dir: Path, adapter: Adapter, ctx=None, store=None,
              chunk: int = 4) -> dict[str, dict]:
    """Run every readable case not already in the journal; returns rows keyed by file sha256.

    Rows are ``lightbox batch`` rows (same journal file name and format, same store writes). For
    segmentation the per-case Dice/IoU are computed while the mask is at hand and kept in the row
    (with the reference mask's sha256, so a changed reference is re-run)."""
    from .batch import file_key, read_journal, row_key, row_records

    journal = out_dir / JOURNAL_NAME
    done = {row_key(r): r for r in read_journal(journal)}
    if getattr(runner, "mask_keys", None) is not None and labels.kind == "mask":
        runner.mask_keys = adapter.mask
    todo: list[tuple[str, str, Case]] = []
    rows: dict[str, dict] = {}
    queued: set[str] = set()
    mask_sha: dict[str, str] = {}
    for c in labels.cases:
        if c.error or c.path is None:
            continue
        c.sha256 = sha = file_key(c.path)
        if labels.kind == "mask" and c.mask is not None:
            mask_sha[sha] = sha256_file(c.mask)
        prev = done.get((sha, runner.model_id, runner.weights_sha))
        stale = labels.kind == "mask" and prev is not None and not prev.get("error") \
            and prev.get("mask_sha256") != mask_sha.get(sha)
        if prev is not None and not stale:
            rows[sha] = prev
        elif sha not in queued:  # identical files are one study: run once
            queued.add(sha)
            todo.append((str(c.path), sha, c))
    total = len(todo)
    if ctx is not None:
        ctx.progress(0.0, f"{total} case{'s' if total != 1 else ''} to run, {len(rows)} already done")
    with open(journal, "a", encoding="utf-8") as jf:
        for g in range(0, total, chunk):
            if ctx is not None:
                ctx.check()  # cancel between groups of cases; the journal keeps what ran
            part = todo[g:g + chunk]
            by_path = {str(Path(p)): c for p, _, c in part}
            for row in runner.run_paths([(p, s) for p, s, _ in part]):
                extra = {k: row.pop(k) for k in [k for k in row if k.startswith("_")]}
                case = by_path[row["path"]]
                if labels.kind == "mask":
                    row["mask_sha256"] = mask_sha.get(case.sha256, "")
                    if not row["error"]:
                        _score_mask(row, extra.get("_mask"), case)
                if store is not None and not row["error"]:
                    study, r = row_records(row, extra)
                    if store.find_result(study.sha256, study.modality, r.model_id, r.weights_sha256) is None:
                        store.save(study, [r])
                jf.write(json.dumps(jsonable(row), sort_keys=True) + "\n")
                rows[case.sha256] = row
            jf.flush()
            if ctx is not None:
                n = min(g + chunk, total)
                ctx.progress(n / max(total, 1), f"case {n} of {total}")
    return rows


def _score_mask(row: dict, pred, case: Case) -> None:
    if pred is None:
        row["error"] = f"{Path(row['path']).name}: the model gave no mask"
        return
    try:
        ref = read_mask(case.mask)
        d, j = M.dice_iou(_fit(pred, ref.shape), ref)
        row["dice"], row["iou"] = round(d, 6), round(j, 6)
    except (OSError, ValueError) as e:
        row["error"] = f"{case.mask.name}: {e}"


# -- metrics ------------------------------------------------------------------------------------------
def classifier_metrics(labels: Sequence[str], scores: Sequence[float] | None, adapter: Adapter,
                       threshold: float, predicted: Sequence[str] | None = None, n_boot: int = 2000,
                       seed: int = 0) -> dict:
    """Metrics of a classifier from reference class names and positive-class scores (and, for a
    multi-class model, its predicted classes). The same function a training script calls on its held-out
    set, so a model card and a local validation say the same thing."""
    out: dict[str, Any] = {}
    if scores is not None and adapter.positive:
        y = np.array([lab == adapter.positive for lab in labels], int)
        s = np.asarray(scores, float)
        b = M.binary_summary(y, s, threshold, n_boot=n_boot, seed=seed, probabilities=adapter.probabilistic)
        fpr, tpr, thr = M.roc_curve(y, s)
        b["roc"] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                    "thresholds": [float(t) if np.isfinite(t) else None for t in thr]}
        b["operating_points"] = M.operating_points(y, s)
        b["positive"], b["negative"] = adapter.positive, (adapter.negative or f"not {adapter.positive}")
        if "multiclass" in adapter.kinds:
            b["negative"] = f"not {adapter.positive}"
        out["binary"] = b
    if predicted is not None and adapter.classes and "multiclass" in adapter.kinds:
        idx = {c: i for i, c in enumerate(adapter.classes)}
        keep = [i for i, (t, p) in enumerate(zip(labels, predicted)) if t in idx and p in idx]
        out["multiclass"] = M.multiclass_summary([idx[labels[i]] for i in keep], [idx[predicted[i]] for i in keep],
                                                 adapter.classes)
    return out


def held_out_metrics(classes: Sequence[str], y_true: Sequence[int], probs, model_id: str | None = None,
                     threshold: float | None = None, n_boot: int = 2000, seed: int = 0) -> dict:
    """A training script's held-out set, scored exactly as ``lightbox evaluate`` scores a site's cases:
    integer labels indexing ``classes`` and a (n, k) probability matrix. Gives the multi-class summary
    (argmax) and, for a model with a positive class (its adapter, or the second of two classes), the
    binary summary with AUROC and its bootstrap CI."""
    classes = tuple(classes)
    p = np.asarray(probs, float)
    y = [classes[int(i)] for i in y_true]
    ad = ADAPTERS.get(model_id or "")
    if ad is None or set(ad.classes or classes) != set(classes):
        ad = Adapter(model_id or "model", ("multiclass", "binary") if len(classes) > 2 else ("binary",),
                     positive=classes[-1] if len(classes) == 2 else "", negative=classes[0] if len(classes) == 2 else "",
                     classes=classes)
    pos = classes.index(ad.positive) if ad.positive in classes else None
    thr = float(threshold if threshold is not None else (ad.threshold if ad.threshold is not None else 0.5))
    multi = Adapter(ad.model_id, ("multiclass",) + ad.kinds, positive=ad.positive, negative=ad.negative,
                    classes=classes, probabilistic=ad.probabilistic)
    pred = [classes[int(i)] for i in p.argmax(1)] if len(p) else []
    out = classifier_metrics(y, p[:, pos] if pos is not None and len(p) else None, multi, thr, predicted=pred,
                             n_boot=n_boot, seed=seed)
    if "binary" in out:
        out["binary"].pop("roc", None)  # a card keeps the numbers; the curve belongs to a report
        out["binary"].pop("operating_points", None)  # a site's reading of its own cases, not a card's
    return out


def ef_metrics(ref: Sequence[float], est: Sequence[float]) -> dict:
    """Agreement (MAE, RMSE, R², bias, limits of agreement) and EF-category agreement."""
    ref_a, est_a = np.asarray(ref, float), np.asarray(est, float)
    out: dict[str, Any] = {"agreement": M.agreement(ref_a, est_a)}
    rc = [ef_category(v) for v in ref_a]
    ec = [ef_category(v) for v in est_a]
    k = {c: i for i, c in enumerate(EF_CATEGORIES)}
    cm = M.confusion_matrix([k[c] for c in rc], [k[c] for c in ec], len(EF_CATEGORIES)) if len(rc) else \
        np.zeros((4, 4), int)
    n = len(rc)
    same = sum(a == b for a, b in zip(rc, ec))
    near = sum(abs(k[a] - k[b]) <= 1 for a, b in zip(rc, ec))
    out["categories"] = {
        "classes": list(EF_CATEGORIES), "cutoffs": EF_CUTOFFS, "source": EF_CUTOFFS_SOURCE,
        "n": n, "agreement": same / n if n else float("nan"),
        "agreement_ci": list(M.wilson_ci(same, n)) if n else [float("nan")] * 2,
        "within_one": near / n if n else float("nan"),
        "confusion": cm.tolist(),  # rows = reference category, columns = model's
    }
    return out


def segmentation_metrics(dice: Sequence[float], iou: Sequence[float], n_boot: int = 2000, seed: int = 0) -> dict:
    d, j = np.asarray(dice, float), np.asarray(iou, float)
    if not len(d):
        nan = float("nan")
        return {"n": 0, "dice_mean": nan, "iou_mean": nan}
    return {"n": int(len(d)), "dice_mean": float(d.mean()), "dice_median": float(np.median(d)),
            "dice_sd": float(d.std(ddof=1)) if len(d) > 1 else 0.0,
            "dice_ci": list(M.bootstrap_ci(np.mean, d, n=n_boot, seed=seed)),
            "iou_mean": float(j.mean()), "iou_median": float(np.median(j)),
            "iou_ci": list(M.bootstrap_ci(np.mean, j, n=n_boot, seed=seed))}


def headline(ev: dict) -> str:
    """The short phrase the app's provenance line carries: "AUROC 0.91", "EF MAE 4.2 %-points"…"""
    m = ev.get("metrics") or {}
    if "binary" in m:
        a = m["binary"].get("auroc")
        return f"AUROC {a:.2f}" if a is not None and a == a else "AUROC n/a (one class only)"
    if "multiclass" in m:
        return f"accuracy {m['multiclass']['accuracy']:.2f}"
    if "agreement" in m and m["agreement"]["n"]:
        return f"EF MAE {m['agreement']['mae']:.1f} %-points"
    if "segmentation" in m and m["segmentation"]["n"]:
        return f"Dice {m['segmentation']['dice_mean']:.2f}"
    return "no metric"


def _r(v, nd=2):
    return None if v is None else round(float(v), nd)


def evaluate(model_id: str, labels_path: str | Path, out_dir: str | Path | None = None, *, registry=None,
             runner=None, adapter: Adapter | None = None, ctx=None, store=None, split: str | None = None,
             n_boot: int = 2000, seed: int = 0) -> dict:
    """Run ``model_id`` on the label file's cases and write ``evaluation.json``, ``cases.csv`` and batch's
    ``results.csv`` (+ journal) into ``out_dir`` (default: ``<labels>_<model>_evaluation/`` beside the CSV).

    ``store``: an ``app.store.Store`` to save each study's result in (as ``lightbox batch`` does), or None.
    ``ctx``: a JobContext for progress and cancellation (cancel between cases; the journal keeps what ran).
    Returns the evaluation dict (also written as JSON)."""
    from .batch import write_table
    from .registry import Registry

    t0 = time.perf_counter()
    labels = read_labels(labels_path, split=split)
    registry = registry or (runner.registry if runner is not None and hasattr(runner, "registry") else Registry())
    adapter = adapter or adapter_for(model_id, registry)
    need = {"label": ("binary", "multiclass"), "ef": ("ef",), "mask": ("segmentation",)}[labels.kind]
    if not any(k in adapter.kinds for k in need):
        what = {"label": "class labels", "ef": "EF values", "mask": "masks"}[labels.kind]
        raise LabelError(f"{model_id} cannot be checked against {what} ({labels.layout}); it gives "
                         f"{' / '.join(adapter.kinds)} results")
    out = Path(out_dir) if out_dir else labels.path.with_name(f"{labels.path.stem}_{model_id}_evaluation")
    out.mkdir(parents=True, exist_ok=True)
    runner = runner or make_runner(model_id, registry)
    rows = run_cases(runner, labels, out, adapter, ctx=ctx, store=store)

    failures: list[dict] = []
    cases: list[dict] = []
    ok_rows: list[dict] = []
    refs_lab, scores, preds = [], [], []
    ef_ref, ef_est = [], []
    dice, iou = [], []
    thr, thr_src = model_threshold(adapter, None, registry)
    thr_seen = False
    for c in labels.cases:
        base = {"line": c.line, "file": c.file}
        if c.error:
            failures.append(dict(base, error=c.error))
            continue
        row = rows.get(c.sha256)
        if row is None:
            failures.append(dict(base, error="not run (cancelled before this case)"))
            continue
        if row.get("error"):
            failures.append(dict(base, error=row["error"]))
            continue
        o = row.get("outputs") or {}
        rec = dict(base, sha256=row["sha256"])
        if labels.kind == "label":
            ref = normalise_label(adapter, c.label or "")
            if ref is None:
                known = sorted(set(list(adapter.classes) + [adapter.positive, adapter.negative]) - {""})
                failures.append(dict(base, error=f"label {c.label!r} is not one of {', '.join(known)}"))
                continue
            if not thr_seen and adapter.threshold is None:
                thr, thr_src = model_threshold(adapter, o, registry)
                thr_seen = True
            sc = score_of(adapter, o) if adapter.positive else None
            pr = predicted_class(adapter, o)
            if adapter.positive and sc is None:
                failures.append(dict(base, error=f"the result has no score for {adapter.positive!r} "
                                                 f"({adapter.describe()})"))
                continue
            refs_lab.append(ref)
            scores.append(sc)
            preds.append(pr)
            rec.update(reference=ref, score=_r(sc, 4), predicted=pr if "multiclass" in adapter.kinds else
                       (adapter.positive if sc is not None and sc >= thr else adapter.negative))
        elif labels.kind == "ef":
            v = o.get(adapter.value)
            if not isinstance(v, (int, float)):
                gate = o.get("view_gate") if isinstance(o.get("view_gate"), dict) else {}
                why = (f"EF not computed: view gate decision '{gate['decision']}' ({gate.get('method', '')})"
                       if gate.get("decision") not in (None, "A4C") else f"the result has no {adapter.value}")
                failures.append(dict(base, error=why))
                continue
            ef_ref.append(c.value)
            ef_est.append(float(v))
            rec.update(reference=c.value, estimate=float(v), difference=round(float(v) - c.value, 2),
                       reference_category=ef_category(c.value), estimate_category=ef_category(float(v)),
                       expert_category_given=c.category, comment=c.comment)
            rec["category_agrees"] = rec["reference_category"] == rec["estimate_category"]
        else:
            dice.append(row["dice"])
            iou.append(row["iou"])
            rec.update(reference=c.mask.name if c.mask else "", dice=row["dice"], iou=row["iou"])
        cases.append(rec)
        ok_rows.append(dict(row, path=str(c.path)))

    metrics: dict[str, Any] = {}
    if labels.kind == "label" and refs_lab:
        metrics = classifier_metrics(refs_lab, scores if adapter.positive else None, adapter, thr,
                                     predicted=preds, n_boot=n_boot, seed=seed)
    elif labels.kind == "ef" and ef_ref:
        metrics = ef_metrics(ef_ref, ef_est)
    elif labels.kind == "mask" and dice:
        metrics = {"segmentation": segmentation_metrics(dice, iou, n_boot=n_boot, seed=seed)}

    first = ok_rows[0] if ok_rows else {}
    entry = registry.entries.get(model_id)
    ev = {
        "kind": {"label": "classification", "ef": "ef", "mask": "segmentation"}[labels.kind],
        "model_id": model_id,
        "model_title": entry.title if entry else model_id,
        "weights_sha256": first.get("weights_sha256", getattr(runner, "weights_sha", "")),
        "clinical": bool(first.get("clinical")) if first else None,
        "runtime": first.get("runtime", ""),
        "device": first.get("device", ""),
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "lightbox_version": __version__,
        "labels": {"path": str(labels.path.resolve()), "sha256": labels.sha256, "layout": labels.layout,
                   "rows": len(labels.cases) + labels.excluded, "split": split or "",
                   "excluded_by_split": labels.excluded},
        "adapter": {"says": adapter.describe(), "positive": adapter.positive, "negative": adapter.negative,
                    "classes": list(adapter.classes), "threshold": thr if labels.kind == "label" else None,
                    "threshold_source": thr_src if labels.kind == "label" else ""},
        "n_cases": len(cases),
        "n_failures": len(failures),
        "failures": failures,
        "metrics": metrics,
        "cases": cases,
        "seconds": round(time.perf_counter() - t0, 2),
        "out_dir": str(out.resolve()),
    }
    ev["headline"] = headline(ev)
    ev = jsonable(ev)
    atomic_write_text(out / JSON_NAME, json.dumps(ev, indent=1, ensure_ascii=False))
    write_table([dict(r) for r in ok_rows] + [_failure_row(runner, f, labels) for f in failures], out / TABLE_NAME)
    _write_cases(out / CASES_NAME, cases, failures)
    return ev


def _failure_row(runner, f: dict, labels: LabelSet) -> dict:
    c = next((c for c in labels.cases if c.line == f["line"]), None)
    path = str(c.path) if c is not None and c.path is not None else f["file"]
    return {"path": path, "sha256": c.sha256 if c is not None else "", "modality": getattr(runner, "modality", ""),
            "model_id": runner.model_id, "weights_sha256": getattr(runner, "weights_sha", ""), "clinical": None,
            "runtime": "", "device": "", "seconds": None, "error": f["error"], "outputs": {}}


def _write_cases(path: Path, cases: list[dict], failures: list[dict]) -> None:
    cols: list[str] = []
    for r in cases + failures:
        for k in r:
            if k not in cols:
                cols.append(k)
    if "error" not in cols:
        cols.append("error")
    from .atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in sorted(cases + failures, key=lambda r: r["line"]):
            w.writerow(r)


def fmt(v, spec: str = ".3f") -> str:
    """A metric for people: 'n/a' where it is undefined (None/NaN: one class absent, nothing called positive)."""
    if v is None or (isinstance(v, float) and v != v):
        return "n/a"
    return format(v, spec)


def summary_lines(ev: dict) -> list[str]:
    """What the command line prints."""
    m = ev["metrics"]
    out = [f"{ev['model_id']} on {ev['n_cases']} cases ({ev['labels']['layout']}, {Path(ev['labels']['path']).name}); "
           f"{ev['n_failures']} could not be evaluated"]
    b = m.get("binary")
    if b:
        ci = b.get("auroc_ci") or [None, None]
        out.append(f"AUROC {fmt(b['auroc'])} (95% CI {fmt(ci[0])} to {fmt(ci[1])}), {b['positive']} vs "
                   f"{b['negative']}, n = {b['n']} ({b['positives']} positive)")
        out.append(f"at threshold {fmt(b['threshold'], 'g')}: sensitivity {fmt(b['sensitivity'])}, "
                   f"specificity {fmt(b['specificity'])}, PPV {fmt(b['ppv'])}, NPV {fmt(b['npv'])}; "
                   f"confusion [[TN FP] [FN TP]] = {b['confusion']}")
    ops = (b or {}).get("operating_points", [])
    if ops:
        out.append("operating points read off these cases (chosen on them: confirm one on other cases before "
                   "adopting it):")
    for op in ops:
        out.append(f"  sensitivity >= {op['target_sensitivity']:.2f}: threshold {op['threshold']:.4g}, "
                   f"sensitivity {fmt(op['sensitivity'])}, specificity {fmt(op['specificity'])}")
    mc = m.get("multiclass")
    if mc:
        out.append(f"accuracy {fmt(mc['accuracy'])}, balanced accuracy {fmt(mc['balanced_accuracy'])}, "
                   f"macro F1 {fmt(mc['macro_f1'])}")
    a = m.get("agreement")
    if a:
        out.append(f"EF: MAE {fmt(a['mae'], '.2f')}, RMSE {fmt(a['rmse'], '.2f')}, R² {fmt(a['r2'])}, "
                   f"bias {fmt(a['bias'], '+.2f')}, 95% limits of agreement {fmt(a['loa_low'], '+.2f')} to "
                   f"{fmt(a['loa_high'], '+.2f')} (%-points)")
        cat = m["categories"]
        out.append(f"EF category agreement {fmt(cat['agreement'])} (within one category {fmt(cat['within_one'])}); "
                   f"bands: {cat['cutoffs']}")
    s = m.get("segmentation")
    if s:
        out.append(f"Dice mean {fmt(s['dice_mean'])} (median {fmt(s.get('dice_median'))}), "
                   f"IoU mean {fmt(s['iou_mean'])}")
    for f in ev["failures"][:20]:
        out.append(f"  failed: line {f['line']} {f['file']}: {f['error']}")
    if len(ev["failures"]) > 20:
        out.append(f"  … {len(ev['failures']) - 20} more failures in {JSON_NAME}")
    return out

