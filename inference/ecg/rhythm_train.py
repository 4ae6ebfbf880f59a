"""``lightbox ecg-rhythm-train``: train the rhythm classifier (N / AF / other / noisy), export ONNX.

    lightbox ecg-rhythm-train /work/data/cinc2017/training2017 --out resources/models     # the shipped model

Data: the PhysioNet/CinC Challenge 2017 layout: ``REFERENCE.csv`` (record,label with labels N, A, O, ~) and
``<record>.mat`` (+ ``.hea``) per record, 300 Hz, 1000 units/mV. Decoded signals are cached once (int16, one
``.npz``) under ``$LIGHTBOX_ECG_CACHE`` (default: the temp folder).

Split by record, stratified by label, with a seed: train / validation (early stopping on the mean of the
challenge score -- the mean F1 of N, A and O -- on whole records and on 10-s crops; the AF operating point) /
test (held out: evaluated once, at the end, on the exported ONNX file). The loop is the shared
:func:`inference.training.fit`; this module brings the data, the crops and the metrics. Training windows are
random crops of one length per batch -- 10 s (half of them), 5-20 s, or the whole record up to 30 s -- never
zero-padded: the network (global pooling) takes any length, and a 10-s ECG is classified as a 10-s window.
Crops are randomly inverted and time-stretched so the model can be used on other leads (module
:mod:`inference.ecg.rhythm`: each of I, II, V1-V6, their mean). One CPU thread and fixed seeds: the command
reproduces the shipped model (the card gives the exact command).

Writes ``<name>.onnx`` (spec, classes and headline metrics embedded), ``<name>.json`` and ``<name>.md``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..training import (cache_dir, embed_onnx_metadata, event_printer, file_facts, onnx_session, report_error,
                        seed_everything)
from ..training import write_card as write_card_files
from .rhythm import (CHALLENGE_CODES, CLASSES, INDEPENDENT_LEADS, MODEL_NAME, ONNX_META_KEY, Decision, RhythmSpec,
                     decide, make_windows, normalise, preprocess)

RAW_FS = 300.0
ADC_GAIN = 1000.0  # units per mV in the challenge's .mat files


class DatasetError(ValueError):
    pass


# -- data -----------------------------------------------------------------------------------------
def _cache_dir() -> Path:
    return cache_dir("LIGHTBOX_ECG_CACHE", "lightbox-ecg-cache")


def read_reference(root: Path) -> list[tuple[str, str]]:
    ref = root / "REFERENCE.csv"
    if not ref.exists():
        raise DatasetError(f"{root} has no REFERENCE.csv (expected the PhysioNet/CinC 2017 layout: "
                           "REFERENCE.csv + <record>.mat/.hea)")
    rows = []
    with ref.open(newline="") as f:
        for r in csv.reader(f):
            if len(r) < 2 or r[0].strip().lower() in ("record", "data_source", ""):
                continue
            code = r[1].strip()
            if code not in CHALLENGE_CODES:
                raise DatasetError(f"REFERENCE.csv: record {r[0]} has label '{code}', expected one of N, A, O, ~")
            rows.append((r[0].strip(), CLASSES[CHALLENGE_CODES.index(code)]))
    if not rows:
        raise DatasetError("REFERENCE.csv lists no records")
    return rows


def load_cinc(root: str | Path, emit: Callable[[dict], None] = lambda e: None, cache: bool = True):
    """(records, labels, signals in mV at 300 Hz) of a CinC 2017 folder; decoded once into a cached .npz."""
    from scipy.io import loadmat

    root = Path(root)
    rows = read_reference(root)
    h = hashlib.sha256()
    for rec, lab in rows:
        p = root / f"{rec}.mat"
        st = p.stat() if p.exists() else None
        h.update(f"{rec},{lab},{st.st_size if st else -1},{st.st_mtime_ns if st else -1}\n".encode())
    path = _cache_dir() / f"cinc2017-{h.hexdigest()[:16]}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            flat, offs = z["flat"], z["offsets"]
            names, labs = list(z["records"]), list(z["labels"])
        emit({"event": "decoded", "done": len(names), "total": len(rows), "cached": str(path)})
        return names, labs, [flat[offs[i]:offs[i + 1]].astype(np.float32) / ADC_GAIN for i in range(len(names))]
    names, labs, sigs = [], [], []
    t0 = time.time()
    for i, (rec, lab) in enumerate(rows):
        p = root / f"{rec}.mat"
        try:
            v = np.asarray(loadmat(str(p))["val"]).ravel()
        except Exception as e:  # an unreadable file is left out and reported
            emit({"event": "skipped", "file": str(p), "problem": f"{type(e).__name__}: {e}"})
            continue
        names.append(rec)
        labs.append(lab)
        sigs.append(v.astype(np.int16))
        if i % 500 == 0 or i == len(rows) - 1:
            emit({"event": "decoding", "done": i + 1, "total": len(rows), "seconds": round(time.time() - t0, 1)})
    if not sigs:
        raise DatasetError("no readable .mat record")
    offs = np.concatenate([[0], np.cumsum([len(s) for s in sigs])])
    if cache:
        tmp = path.with_suffix(".part.npz")
        np.savez(tmp, flat=np.concatenate(sigs), offsets=offs, records=np.array(names), labels=np.array(labs))
        os.replace(tmp, path)
    return names, labs, [s.astype(np.float32) / ADC_GAIN for s in sigs]


def stratified_split(labels: list[str], seed: int, val: float = 0.15, test: float = 0.15) -> dict[str, np.ndarray]:
    """Indices per part, stratified by label (each record in exactly one part)."""
    rng = np.random.RandomState(seed)
    labels = np.asarray(labels)
    parts = {"train": [], "val": [], "test": []}
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_te = int(round(len(idx) * test))
        n_va = int(round(len(idx) * val))
        parts["test"] += idx[:n_te].tolist()
        parts["val"] += idx[n_te:n_te + n_va].tolist()
        parts["train"] += idx[n_te + n_va:].tolist()
    return {k: np.sort(np.asarray(v, dtype=np.int64)) for k, v in parts.items()}


# -- metrics (the shared definitions in inference.metrics) ----------------------------------------
def challenge_score(y, pred) -> float:
    """CinC 2017 score: mean F1 of normal, AF and other (noisy counts only as a wrong answer)."""
    y, pred = np.asarray(y), np.asarray(pred)
    f = []
    for c in range(3):
        tp = np.sum((y == c) & (pred == c))
        denom = np.sum(y == c) + np.sum(pred == c)
        f.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f))


def summary(y, pred, classes=CLASSES, ci: bool = False, seed: int = 0) -> dict:
    """multiclass_summary + the challenge score, AF sensitivity and PPV (bootstrap 95 % CIs when ``ci``)."""
    from ..metrics import bootstrap_ci, multiclass_summary

    y, pred = np.asarray(y), np.asarray(pred)
    m = multiclass_summary(y, pred, list(classes))
    m["challenge_score"] = challenge_score(y, pred)
    a = list(classes).index("af")
    m["af_sensitivity"] = m["per_class"]["af"]["recall"]
    m["af_ppv"] = m["per_class"]["af"]["precision"]
    if ci and len(y) > 10:
        m["challenge_score_ci"] = list(bootstrap_ci(challenge_score, y, pred, n=1000, seed=seed))
        m["af_sensitivity_ci"] = list(bootstrap_ci(
            lambda yy, pp: float(np.mean(pp[yy == a] == a)) if np.any(yy == a) else float("nan"), y, pred,
            n=1000, seed=seed))
        m["af_ppv_ci"] = list(bootstrap_ci(
            lambda yy, pp: float(np.mean(yy[pp == a] == a)) if np.any(pp == a) else float("nan"), y, pred,
            n=1000, seed=seed))
    return m


# -- network --------------------------------------------------------------------------------------
def build_net(n_classes: int = 4, width: int = 16, dropout: float = 0.3):
    """Compact 1-D ResNet: stem (k15, stride 2) + max-pool, five residual blocks (k9, stride 2 each),
    channels w, 1.5w, 2w, 3w, 4w, 4w, then global average + max pooling, dropout and a linear layer."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv1d(cin, cout, 9, stride=stride, padding=4, bias=False)
            self.b1 = nn.BatchNorm1d(cout)
            self.c2 = nn.Conv1d(cout, cout, 9, padding=4, bias=False)
            self.b2 = nn.BatchNorm1d(cout)
            self.skip = (nn.Sequential(nn.Conv1d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm1d(cout))
                         if (cin != cout or stride != 1) else nn.Identity())
            self.act = nn.ReLU(inplace=True)

        def forward(self, x):
            y = self.act(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return self.act(y + self.skip(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            ch = [w, int(1.5 * w), 2 * w, 3 * w, 4 * w, 4 * w]
            self.stem = nn.Sequential(nn.Conv1d(1, ch[0], 15, stride=2, padding=7, bias=False), nn.BatchNorm1d(ch[0]),
                                      nn.ReLU(inplace=True), nn.MaxPool1d(2))
            self.blocks = nn.Sequential(*[Block(ch[i], ch[i + 1], 2) for i in range(5)])
            self.drop = nn.Dropout(dropout)
            self.head = nn.Linear(2 * ch[-1], n_classes)

        def forward(self, x):
            z = self.blocks(self.stem(x))
            z = torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1)
            return self.head(self.drop(z))

    return Net()


def _embed_metadata(path: Path, meta: dict) -> None:
    embed_onnx_metadata(path, ONNX_META_KEY, meta, producer="lightbox ecg-rhythm-train")


def _with_softmax(net):
    """The exported module: window(s) of any length -> class probabilities."""
    import torch

    class _M(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            return torch.softmax(self.n(x), dim=1)

    return _M(net).eval()


# -- training crops ---------------------------------------------------------------------------------
#: share of training crops per kind: 10 s (the resting ECG), a random 5-20 s, and the whole record (up to
#: one window, 30 s; the AliveCor recording and a long recording's window)
CROP_MIX = (0.5, 0.2, 0.3)


def crop(x: np.ndarray, L: int, spec: RhythmSpec, rng, augment: bool = True) -> np.ndarray:
    """A normalised (L,) training window from a preprocessed record at least L long: a random crop; with
    ``augment`` half of them time-stretched 0.85-1.15x (heart rate, QRS width), half of them inverted (the
    model is used on leads of either polarity: aVR, V1, an AliveCor held the other way), Gaussian noise of
    up to 5 % of the signal's SD."""
    n = len(x)
    src = L
    if augment and rng.rand() < 0.5:
        src = int(round(L * rng.uniform(0.85, 1.15)))
    src = max(2, min(src, n))
    s = int(rng.randint(0, n - src + 1)) if n > src else 0
    seg = x[s:s + src].astype(np.float32)
    if src != L:
        seg = np.interp(np.linspace(0, src - 1, L), np.arange(src), seg).astype(np.float32)
    if augment:
        if rng.rand() < 0.5:
            seg = -seg
        seg = seg + rng.normal(0, rng.uniform(0, 0.05) * (np.std(seg) + 1e-6), len(seg)).astype(np.float32)
    return normalise(seg, spec)


def epoch_plan(lengths: np.ndarray, spec: RhythmSpec, rng, batch: int, mix=CROP_MIX) -> list[tuple[np.ndarray, int]]:
    """The epoch's batches as (positions into ``lengths``, crop length): every record once, each batch one
    length (no padding: the network takes any length). Whole-record batches group records of similar length
    and use the shortest of them (capped at one window)."""
    fs = spec.fs
    kind = rng.choice(len(mix), size=len(lengths), p=np.asarray(mix) / np.sum(mix))
    plan = []

    def chunks(idx):
        return [idx[i:i + batch] for i in range(0, len(idx), batch) if len(idx[i:i + batch]) >= 2]

    for c in chunks(rng.permutation(np.flatnonzero(kind == 0))):
        plan.append((c, int(min(round(10 * fs), lengths[c].min()))))
    for c in chunks(rng.permutation(np.flatnonzero(kind == 1))):
        plan.append((c, int(min(round(rng.uniform(5, 20) * fs), lengths[c].min()))))
    g = np.flatnonzero(kind == 2)
    g = g[np.lexsort((rng.rand(len(g)), lengths[g]))]
    for c in chunks(g):
        plan.append((c, int(min(spec.window, lengths[c].min()))))
    order = rng.permutation(len(plan))
    return [plan[i] for i in order]


def fixed_crops(pre: list[np.ndarray], idx: np.ndarray, spec: RhythmSpec, seconds: float = 10.0,
                per_record: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic ``seconds`` crops (start, middle and end of each record; fewer when it is short), as a
    list of (windows (m, 1, L), owner positions into ``idx``) per length: a record shorter than ``seconds``
    gives one crop of its own length (in a group of its own)."""
    L = int(round(seconds * spec.fs))
    xs, owner = [], []
    short = []
    for j, i in enumerate(idx):
        x = pre[i]
        n = len(x)
        if n < L:
            short.append((j, x))
            continue
        starts = sorted({0, (n - L) // 2, n - L})[:per_record]
        for s in starts:
            xs.append(normalise(x[s:s + L], spec))
            owner.append(j)
    groups = [(np.stack(xs)[:, None], np.asarray(owner))] if xs else []
    for j, x in short:
        groups.append((normalise(x, spec)[None, None], np.asarray([j])))
    return groups


# -- training -------------------------------------------------------------------------------------
def _predict(fn, x: np.ndarray, batch: int = 128) -> np.ndarray:
    return np.concatenate([fn(x[s:s + batch]) for s in range(0, len(x), batch)]) if len(x) else np.zeros((0, 4))


def record_probs(fn, pre: list[np.ndarray], idx: np.ndarray, spec: RhythmSpec) -> np.ndarray:
    """Recording probabilities (mean of its windows) of each record in ``idx``; ``fn`` maps a (b, 1, L) batch
    of one length to probabilities. Windows of one length go through together."""
    groups: dict[int, list] = {}
    for j, i in enumerate(idx):
        w, _ = make_windows(pre[i], spec)
        groups.setdefault(w.shape[-1], []).append((j, w))
    out = np.zeros((len(idx), len(CLASSES)))
    for L, items in groups.items():
        x = np.concatenate([w for _, w in items])
        p = _predict(fn, x)
        k = 0
        for j, w in items:
            out[j] = p[k:k + len(w)].mean(axis=0)
            k += len(w)
    return out


def crop_probs(fn, groups) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, owner) of the fixed crops of :func:`fixed_crops`."""
    ps, owners = [], []
    for x, owner in groups:
        ps.append(_predict(fn, x))
        owners.append(owner)
    return np.concatenate(ps), np.concatenate(owners)


def calibrate_af_threshold(y: np.ndarray, p_af: np.ndarray, min_specificity: float = 0.95) -> dict:
    """The AF operating point on validation: the threshold of highest sensitivity + specificity (Youden)
    among those with specificity >= ``min_specificity`` (AF against everything else)."""
    a = CLASSES.index("af")
    pos = np.asarray(y) == a
    p_af = np.asarray(p_af, dtype=np.float64)
    best = None
    for t in np.unique(np.round(p_af, 4)):
        pred = p_af >= t
        sens = float(np.mean(pred[pos])) if pos.any() else 0.0
        spec = float(np.mean(~pred[~pos])) if (~pos).any() else 0.0
        if spec + 1e-12 < min_specificity:
            continue
        if best is None or sens + spec > best["sensitivity"] + best["specificity"] + 1e-12:
            best = {"threshold": float(t), "sensitivity": sens, "specificity": spec}
    if best is None:
        best = {"threshold": float(p_af.max() + 1e-4) if len(p_af) else 0.5, "sensitivity": 0.0, "specificity": 1.0}
    best["min_specificity"] = min_specificity
    return best


def train_arrays(signals: list[np.ndarray], fs: float, labels: list[str], out_dir: str | Path,
                 name: str = MODEL_NAME, *, spec: RhythmSpec | None = None, seed: int = 2017, epochs: int = 30,
                 patience: int = 8, batch: int = 64, width: int = 16, lr: float = 3e-3, threads: int = 1,
                 val_frac: float = 0.15, test_frac: float = 0.15, max_minutes: float | None = None,
                 emit: Callable[[dict], None] | None = None, records: list[str] | None = None,
                 data_description: str = "", write_card: bool = True, class_weight_power: float = 0.5,
                 stop_after: int | None = None, leads: tuple[str, ...] = INDEPENDENT_LEADS,
                 af_min_specificity: float = 0.95, crop_mix=CROP_MIX, checkpoint: str | Path | None = None,
                 init_state: str | Path | None = None, short_window_s: float = 20.0,
                 previous_card: str | Path | None = None) -> dict:
    """Train on in-memory single-lead signals (mV at ``fs``) with :func:`inference.training.fit`, export ONNX
    (any window length), choose the AF threshold on validation 10-s crops, evaluate the ONNX once on test."""
    import torch
    from torch import nn

    from ..training import agreement_check, fit
    from ..training import export_onnx as export

    emit = emit or (lambda e: None)
    spec = spec or RhythmSpec(variable_length=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rng = seed_everything(seed, threads)
    classes = list(CLASSES)
    y_all = np.array([classes.index(c) for c in labels])
    records = records or [f"r{i:05d}" for i in range(len(signals))]

    t0 = time.time()
    pre = [preprocess(s, fs, spec) for s in signals]
    lengths = np.array([len(p) for p in pre])
    emit({"event": "preprocessed", "records": len(pre), "seconds": round(time.time() - t0, 1)})
    parts = stratified_split(labels, seed, val_frac, test_frac)
    emit({"event": "split", **{k: {c: int(np.sum(y_all[v] == classes.index(c))) for c in classes}
                                for k, v in parts.items()}})
    tr, va, te = parts["train"], parts["val"], parts["test"]
    if len(tr) < 2 or len(va) < 1:
        raise DatasetError("too few records to split into training and validation sets")

    counts = np.bincount(y_all[tr], minlength=len(classes)).astype(float)
    cw = (counts.sum() / (len(classes) * np.maximum(counts, 1))) ** class_weight_power
    cw[counts == 0] = 0.0
    cw = cw / max(np.sum(cw * counts) / max(counts.sum(), 1), 1e-9)
    net = build_net(len(classes), width=width)
    if init_state:
        net.load_state_dict(torch.load(str(init_state), weights_only=True))
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32), label_smoothing=0.05)
    va_crops = fixed_crops(pre, va, spec)

    def torch_fn(x):
        return torch.softmax(net(torch.from_numpy(x)), 1).numpy()

    def batches(epoch):
        for pos, L in epoch_plan(lengths[tr], spec, rng, batch, crop_mix):
            x = np.stack([crop(pre[tr[j]], L, spec, rng) for j in pos])[:, None]
            yield torch.from_numpy(x), torch.from_numpy(y_all[tr[pos]])

    def step(net_, b):
        return loss_fn(net_(b[0]), b[1])

    def validate(net_):
        full = challenge_score(y_all[va], record_probs(torch_fn, pre, va, spec).argmax(1))
        cp, owner = crop_probs(torch_fn, va_crops)
        yc = y_all[va][owner]
        ten = challenge_score(yc, cp.argmax(1))
        a = classes.index("af")
        from ..metrics import roc_auc

        return {"score": 0.5 * (full + ten), "challenge_full": full, "challenge_10s": ten,
                "af_auroc_10s": roc_auc((yc == a).astype(int), cp[:, a])}

    def human_epoch(e):
        emit(e)

    budget = max_minutes * 60 if max_minutes else None
    res = fit(net, batches, step, validate, epochs=epochs, patience=patience, lr=lr, weight_decay=1e-2,
              warmup_epochs=1, time_budget_s=budget, emit=human_epoch, checkpoint=checkpoint,
              stop_after=stop_after, grad_clip=5.0)

    onnx_path = out_dir / f"{name}.onnx"
    model = _with_softmax(net)
    export(model, torch.zeros(1, 1, int(round(10 * spec.fs))), onnx_path, input_names=["ecg"],
           output_names=["probabilities"], dynamic_axes={"ecg": {2: "samples"}})
    probe = np.concatenate([va_crops[0][0][:8], va_crops[0][0][8:16]])
    agree = agreement_check(model, onnx_path, {"ecg": probe}, tol=1e-4, threads=threads)
    full_probe = make_windows(pre[va[0]], spec)[0]
    agree30 = agreement_check(model, onnx_path, {"ecg": full_probe}, tol=1e-4, threads=threads)
    sess = onnx_session(onnx_path, threads)

    def onnx_fn(x):
        return sess.run(None, {"ecg": x})[0]

    # the operating point, on validation only: AF threshold on the 10-s crops
    cp, owner = crop_probs(onnx_fn, va_crops)
    yc = y_all[va][owner]
    a = classes.index("af")
    op = calibrate_af_threshold(yc, cp[:, a], af_min_specificity)
    thr = op["threshold"]
    # two operating points (chosen before any test figure of this run): short windows (a 10-s resting ECG,
    # whose goal is AF sensitivity at a set specificity) use the threshold from the 10-s validation crops;
    # 30-s windows (AliveCor recordings, Holter windows; goal: the challenge's 4-class F1) the argmax
    decision = Decision(leads=tuple(leads), combine="mean", af_threshold=round(thr, 4), short_window_s=short_window_s,
                        af_threshold_long=None,
                        source=f"CinC 2017 validation split: windows up to {short_window_s:g} s use the threshold of "
                               f"the 10-s crops with the highest sensitivity + specificity at specificity >= "
                               f"{af_min_specificity:g} (AF vs rest); longer windows the most probable class")

    def rec_decide(probs, idx):
        return np.array([int(decide(p, classes, decision.threshold_for(min(len(pre[i]), spec.window) / spec.fs))[0])
                         for p, i in zip(probs, idx)])

    vp = record_probs(onnx_fn, pre, va, spec)
    val_m = summary(y_all[va], rec_decide(vp, va), classes)
    val_m["argmax"] = _short(summary(y_all[va], vp.argmax(1), classes))
    val_m["ten_s"] = crop_metrics(yc, cp, thr)
    t0 = time.time()
    test_m = None
    if len(te):  # the one look at the internal test split
        tp = record_probs(onnx_fn, pre, te, spec)
        test_m = summary(y_all[te], rec_decide(tp, te), classes, ci=True, seed=seed)
        test_m["argmax"] = _short(summary(y_all[te], tp.argmax(1), classes))
        tcp, towner = crop_probs(onnx_fn, fixed_crops(pre, te, spec))
        test_m["ten_s"] = crop_metrics(y_all[te][towner], tcp, thr, ci=True, seed=seed)
        test_m["af_auroc"] = _af_auroc(y_all[te], tp)
    eval_s = time.time() - t0
    secs = [len(p) / spec.fs for p in pre]
    tr_facts = res.as_dict()
    meta = {
        "name": name, "version": 2, "classes": classes, "challenge_codes": list(CHALLENGE_CODES),
        "preprocessing": spec.to_dict(), "decision": decision.to_dict(), "operating_point": op,
        "input": {"name": "ecg", "shape": [None, 1, None]},
        "output": {"name": "probabilities", "shape": [None, len(classes)]},
        "aggregation": (f"per lead: a recording up to {spec.window_s:g} s is one window of its own length, a longer "
                        f"one windows of {spec.window_s:g} s every {spec.hop_s:g} s; per window the mean over the "
                        f"leads used ({', '.join(leads)} when present); recording = mean of the windows; windows up "
                        f"to {short_window_s:g} s: AF when p(AF) >= {thr:.3f}, else the most probable other class; "
                        "longer windows: the most probable class; per-window labels form the band"),
        "metrics": {"validation": val_m, "test": test_m},
        "training": {"seed": seed, "epochs_run": tr_facts["epochs_run"], "max_epochs": epochs, "patience": patience,
                     "best_epoch": tr_facts["best_epoch"] + 1, "stopped": tr_facts["stopped"], "batch": batch,
                     "width": width, "lr": lr, "threads": threads, "class_weights": [round(float(c), 4) for c in cw],
                     "class_weight_power": class_weight_power, "crop_mix": list(crop_mix),
                     "seconds": round(time.time() - t_start, 1),
                     "torch_onnx_max_abs_diff": max(agree["max_abs_diff"], agree30["max_abs_diff"]),
                     "params": int(sum(p.numel() for p in net.parameters())), "eval_seconds": round(eval_s, 1),
                     "loop": "inference.training.fit (AdamW, 1 warm-up epoch, cosine to 1 %, early stop, grad clip 5)",
                     "stop_after": stop_after, "init_state": str(init_state) if init_state else None},
        "split": {k: {"records": int(len(v)), **{c: int(np.sum(y_all[v] == classes.index(c))) for c in classes}}
                  for k, v in parts.items()},
        "record_seconds": {"min": round(min(secs), 1), "median": round(float(np.median(secs)), 1),
                           "max": round(max(secs), 1)},
        "test_records": sorted(records[i] for i in te),
        "data": data_description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "looks": ([f"{time.strftime('%Y-%m-%d')}: CinC 2017 internal test split ({len(te)} records), once, on the "
                   "exported ONNX file at the end of this training run, after early stopping and the AF threshold "
                   "were fixed on validation."] if len(te) else []),
    }
    _embed_metadata(onnx_path, {k: meta[k] for k in ("name", "version", "classes", "preprocessing", "decision",
                                                     "aggregation")}
                    | {"test": _short(test_m), "validation": _short(val_m)})
    meta.update(file_facts(onnx_path))
    meta["history"] = tr_facts["history"]
    if previous_card:  # finalised from a checkpoint (epochs = 0): the run that trained it keeps its facts
        prev = json.loads(Path(previous_card).read_text())
        kept = {k: prev["training"][k] for k in ("epochs_run", "max_epochs", "patience", "best_epoch", "stopped",
                                                 "seconds", "stop_after") if k in prev["training"]}
        meta["training"].update(kept, finalised_from=str(init_state))
        meta["history"] = prev.get("history") or []
        meta["looks"] = list(prev.get("looks") or []) + meta["looks"]
    from .rhythm_card import model_card

    write_card_files(out_dir, name, meta, model_card(meta) if write_card else None)
    emit({"event": "done", "onnx": str(onnx_path), "sha256": meta["onnx_sha256"], "validation": _short(val_m),
          "test": _short(test_m), "confusion": (test_m or val_m)["confusion"], "classes": classes,
          "operating_point": op, "seconds": meta["training"]["seconds"]})
    return meta


def _af_auroc(y, probs) -> float:
    from ..metrics import roc_auc

    a = CLASSES.index("af")
    return float(roc_auc((np.asarray(y) == a).astype(int), np.asarray(probs)[:, a]))


def crop_metrics(y, probs, thr: float | None, ci: bool = False, seed: int = 0) -> dict:
    """10-s crops: the 4-class summary at the shipped decision, and AF vs rest (sensitivity, specificity with
    Wilson intervals, AUROC)."""
    from ..metrics import wilson_ci

    y = np.asarray(y)
    pred = decide(probs, CLASSES, thr)
    m = _short(summary(y, pred, CLASSES))
    m["confusion"] = summary(y, pred, CLASSES)["confusion"]
    a = CLASSES.index("af")
    pos, called = y == a, pred == a
    tp, fn = int(np.sum(pos & called)), int(np.sum(pos & ~called))
    tn, fp = int(np.sum(~pos & ~called)), int(np.sum(~pos & called))
    m.update({"af_tp": tp, "af_fn": fn, "af_tn": tn, "af_fp": fp,
              "af_sens": tp / max(tp + fn, 1), "af_spec": tn / max(tn + fp, 1),
              "af_sens_ci": list(wilson_ci(tp, tp + fn)), "af_spec_ci": list(wilson_ci(tn, tn + fp)),
              "af_auroc": _af_auroc(y, probs)})
    return m


def _short(m):
    if not m:
        return None
    out = {k: round(m[k], 4) for k in ("challenge_score", "accuracy", "macro_f1", "af_sensitivity", "af_ppv") if k in m}
    out["n"] = m["n"]
    out["f1"] = {c: round(d["f1"], 4) for c, d in m["per_class"].items()}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox ecg-rhythm-train", description=__doc__.split("\n\n")[0])
    p.add_argument("data", nargs="?", help="PhysioNet/CinC 2017 folder (REFERENCE.csv + <record>.mat/.hea)")
    p.add_argument("--out", default="out/ecg-rhythm-train", help="output folder (resources/models for the shipped model)")
    p.add_argument("--name", default=MODEL_NAME)
    p.add_argument("--seed", type=int, default=2017)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads (1: deterministic, and fastest on a shared 2-core machine)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this many minutes (best epoch kept)")
    p.add_argument("--max-epochs-run", type=int, default=None,
                   help="stop after this many epochs, the schedule still spanning --epochs (reproduces a timed-out run)")
    p.add_argument("--val", type=float, default=0.15)
    p.add_argument("--test", type=float, default=0.15)
    p.add_argument("--limit", type=int, default=None, help="use only the first N records (smoke runs)")
    p.add_argument("--no-cache", action="store_true", help="do not cache the decoded signals")
    p.add_argument("--jsonl", action="store_true", help="print JSON events, one per line")
    p.add_argument("--af-min-specificity", type=float, default=0.95,
                   help="AF operating point on validation 10-s crops: best sensitivity + specificity with at least this "
                        "specificity")
    p.add_argument("--checkpoint", default=None, help="save the best state dict here after each improvement")
    p.add_argument("--init", default=None, help="start from this state dict (plain tensors) instead of random weights")
    p.add_argument("--previous-card", default=None,
                   help="with --init CKPT --epochs 0: finalise that run's checkpoint (export, operating points, one "
                        "look at test) keeping the training facts, history and looks of its JSON")
    p.add_argument("--card", metavar="JSON", help="only rewrite <name>.md from <name>.json, adding measured speed")
    args = p.parse_args(argv)
    if args.card:
        from .rhythm_card import rewrite_card

        print(rewrite_card(Path(args.card)))
        return 0
    if not args.data:
        p.error("the data folder is required (or --card JSON)")

    def human(e: dict) -> None:
        if e["event"] == "epoch":
            print(f"epoch {e['epoch'] + 1:3d}  lr {e['lr']:.2e}  loss {e['train_loss']:.3f}  |  val score "
                  f"{e['val_score']:.4f} (whole {e['val_challenge_full']:.4f}, 10-s {e['val_challenge_10s']:.4f}, "
                  f"AF AUROC 10-s {e['val_af_auroc_10s']:.4f}){'  *' if e['best'] else ''}  {e['seconds']:.0f} s",
                  flush=True)
        elif e["event"] in ("decoding", "decoded", "preprocessed", "split", "skipped"):
            print(e, flush=True)
        elif e["event"] == "done":
            print(f"wrote {e['onnx']} (sha256 {e['sha256']})\nvalidation: {e['validation']}\ntest: {e['test']}\n"
                  f"confusion (test): {e['confusion']}", flush=True)

    emit = event_printer(args.jsonl, human)
    try:
        names, labs, sigs = load_cinc(args.data, emit, cache=not args.no_cache)
        if args.limit:
            names, labs, sigs = names[:args.limit], labs[:args.limit], sigs[:args.limit]
        counts = ", ".join(f"{sum(1 for x in labs if x == c)} {code}" for c, code in zip(CLASSES, CHALLENGE_CODES))
        from .rhythm_card import CINC_DESCRIPTION

        desc = CINC_DESCRIPTION.format(n=len(names), counts=counts)
        train_arrays(sigs, RAW_FS, labs, args.out, args.name, seed=args.seed, epochs=args.epochs,
                     patience=args.patience, batch=args.batch, width=args.width, lr=args.lr, threads=args.threads,
                     val_frac=args.val, test_frac=args.test, max_minutes=args.max_minutes, emit=emit,
                     stop_after=args.max_epochs_run, af_min_specificity=args.af_min_specificity,
                     checkpoint=args.checkpoint, init_state=args.init, previous_card=args.previous_card,
                     records=names, data_description=desc)
    except DatasetError as e:
        return report_error(e, args.jsonl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
