"""``lightbox ecg-rhythm-train``: train the single-lead rhythm classifier (N / AF / other / noisy), export ONNX.

    lightbox ecg-rhythm-train /work/data/ecg/training2017 --out resources/models     # the shipped model

Data: the PhysioNet/CinC Challenge 2017 layout: ``REFERENCE.csv`` (record,label with labels N, A, O, ~) and
``<record>.mat`` (+ ``.hea``) per record, 300 Hz, 1000 units/mV. Decoded signals are cached once (int16, one
``.npz``) under ``$LIGHTBOX_ECG_CACHE`` (default: the temp folder).

Split by record, stratified by label, with a seed: train / validation (early stopping on the challenge
score, the mean F1 of N, A and O) / test (held out: evaluated once, at the end, on the exported ONNX file).
One CPU thread and fixed seeds: the command reproduces the shipped model (``--epochs`` = the epochs it ran).

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

from ..training import (cache_dir, embed_onnx_metadata, event_printer, file_facts, max_abs_diff, onnx_session,
                        pct as _pct, report_error, seed_everything, state_snapshot)
from ..training import write_card as write_card_files
from .rhythm import (CHALLENGE_CODES, CLASSES, MODEL_NAME, ONNX_META_KEY, RhythmSpec, make_windows, normalise,
                     preprocess)

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


def export_onnx(net, path: Path, window: int) -> None:
    import io

    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, n):
            super().__init__()
            self.n = n

        def forward(self, x):
            return torch.softmax(self.n(x), dim=1)

    net.eval()
    buf = io.BytesIO()
    torch.onnx.export(WithSoftmax(net), torch.zeros(1, 1, window), buf, input_names=["ecg"],
                      output_names=["probabilities"], dynamic_axes={"ecg": {0: "batch"}, "probabilities": {0: "batch"}},
                      opset_version=17, dynamo=False)
    Path(path).write_bytes(buf.getvalue())


def _embed_metadata(path: Path, meta: dict) -> None:
    embed_onnx_metadata(path, ONNX_META_KEY, meta, producer="lightbox ecg-rhythm-train")


# -- training -------------------------------------------------------------------------------------
def _crops(pre: list[np.ndarray], idx: np.ndarray, spec: RhythmSpec, rng, augment: bool = True) -> np.ndarray:
    """One training window per record: a random crop of the window length (or the whole record, zero-padded);
    a third of the time a shorter random crop (9 s up to the window) so short recordings are seen too;
    small Gaussian noise and a random baseline offset before normalisation."""
    W = spec.window
    out = np.zeros((len(idx), 1, W), np.float32)
    min_len = int(9 * spec.fs)
    for j, i in enumerate(idx):
        x = pre[i]
        n = len(x)
        L = min(n, W)
        if augment and n > min_len and rng.rand() < 0.33:
            L = int(rng.randint(min_len, min(n, W) + 1))
        s = int(rng.randint(0, n - L + 1)) if n > L else 0
        seg = x[s:s + L].astype(np.float32)
        if augment:
            seg = seg + rng.normal(0, 0.02 * (np.std(seg) + 1e-6), len(seg)).astype(np.float32)
            seg = seg * np.float32(rng.uniform(0.7, 1.3))
        out[j, 0, :L] = seg
        out[j, 0] = normalise(out[j, 0], spec, valid=L)
    return out


def _record_windows(pre, idx, spec):
    xs, owner, starts = [], [], []
    for r, i in enumerate(idx):
        w, s = make_windows(pre[i], spec)
        xs.append(w)
        owner += [r] * len(w)
        starts.append(s)
    return np.concatenate(xs), np.asarray(owner), starts


def train_arrays(signals: list[np.ndarray], fs: float, labels: list[str], out_dir: str | Path,
                 name: str = MODEL_NAME, *, spec: RhythmSpec | None = None, seed: int = 2017, epochs: int = 30,
                 patience: int = 8, batch: int = 64, width: int = 16, lr: float = 3e-3, threads: int = 1,
                 val_frac: float = 0.15, test_frac: float = 0.15, max_minutes: float | None = None,
                 emit: Callable[[dict], None] | None = None, should_stop: Callable[[], bool] | None = None,
                 records: list[str] | None = None, data_description: str = "", write_card: bool = True,
                 class_weight_power: float = 0.5, stop_after: int | None = None) -> dict:
    """Train on in-memory single-lead signals (mV at ``fs``), export ONNX, evaluate the ONNX once on test."""
    import torch
    from torch import nn

    emit = emit or (lambda e: None)
    spec = spec or RhythmSpec()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    rng = seed_everything(seed, threads)
    classes = list(CLASSES)
    y_all = np.array([classes.index(c) for c in labels])
    records = records or [f"r{i:05d}" for i in range(len(signals))]

    t0 = time.time()
    pre = [preprocess(s, fs, spec) for s in signals]
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
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    steps_per_epoch = max(1, int(np.ceil(len(tr) / batch)))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15, div_factor=10, final_div_factor=100)
    loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(cw, dtype=torch.float32), label_smoothing=0.05)
    va_x, va_owner, va_starts = _record_windows(pre, va, spec)

    def predict(x: np.ndarray) -> np.ndarray:
        net.eval()
        out = []
        with torch.inference_mode():
            for s in range(0, len(x), 128):
                out.append(torch.softmax(net(torch.from_numpy(x[s:s + 128])), 1).numpy())
        return np.concatenate(out)

    def record_probs(wp, owner, n):
        return np.stack([wp[owner == r].mean(axis=0) for r in range(n)])

    best, best_state, best_epoch, stale, history = -1.0, None, 0, 0, []
    stopped = "max epochs"
    for ep in range(1, epochs + 1):
        t0 = time.time()
        x = _crops(pre, tr, spec, rng)
        y = y_all[tr]
        perm = rng.permutation(len(x))
        net.train()
        tot, correct, nb = 0.0, 0, 0
        for s in range(0, len(perm), batch):
            b = perm[s:s + batch]
            if len(b) < 2:
                sched.step() if sched.last_epoch + 1 < epochs * steps_per_epoch else None
                continue
            xb, yb = torch.from_numpy(x[b]), torch.from_numpy(y[b])
            opt.zero_grad()
            logits = net(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            if sched.last_epoch + 1 < epochs * steps_per_epoch:
                sched.step()
            tot += float(loss.detach()) * len(b)
            correct += int((logits.argmax(1) == yb).sum())
            nb += len(b)
            if should_stop and should_stop():
                raise KeyboardInterrupt("stopped")
            if s // batch % 20 == 0:
                emit({"event": "step", "epoch": ep, "done": s + len(b), "total": len(perm),
                      "loss": round(tot / max(nb, 1), 4), "seconds": round(time.time() - t0, 1)})
        rp = record_probs(predict(va_x), va_owner, len(va))
        vm = summary(y_all[va], rp.argmax(1), classes)
        row = {"event": "epoch", "epoch": ep, "train_loss": round(tot / max(nb, 1), 4),
               "train_acc": round(correct / max(nb, 1), 4), "val_challenge": round(vm["challenge_score"], 4),
               "val_f1": {c: round(d["f1"], 3) for c, d in vm["per_class"].items()},
               "val_acc": round(vm["accuracy"], 4), "lr": opt.param_groups[0]["lr"],
               "seconds": round(time.time() - t0, 1)}
        history.append(row)
        if vm["challenge_score"] > best:
            best, best_epoch, stale = vm["challenge_score"], ep, 0
            best_state = state_snapshot(net)
        else:
            stale += 1
        row["best_epoch"] = best_epoch
        emit(row)
        if stale >= patience:
            stopped = f"early stop: no validation improvement for {patience} epochs"
            break
        if stop_after and ep >= stop_after:
            stopped = f"stopped after {stop_after} epochs (--max-epochs-run)"
            break
        if max_minutes and (time.time() - t_start) / 60 > max_minutes:
            stopped = f"time budget of {max_minutes:g} min reached"
            break
    net.load_state_dict(best_state)
    net.eval()

    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(net, onnx_path, spec.window)
    sess = onnx_session(onnx_path, threads)

    def onnx_probs(idx):
        x, owner, _ = _record_windows(pre, idx, spec)
        wp = np.concatenate([sess.run(None, {"ecg": x[s:s + 128]})[0] for s in range(0, len(x), 128)])
        return record_probs(wp, owner, len(idx))

    chk = va_x[:16]
    diff = max_abs_diff(predict, sess, "ecg", chk)
    t0 = time.time()
    val_m = summary(y_all[va], onnx_probs(va).argmax(1), classes)
    test_m = summary(y_all[te], onnx_probs(te).argmax(1), classes, ci=True, seed=seed) if len(te) else None
    eval_s = time.time() - t0
    secs = [len(p) / spec.fs for p in pre]
    meta = {
        "name": name, "classes": classes, "challenge_codes": list(CHALLENGE_CODES), "preprocessing": spec.to_dict(),
        "input": {"name": "ecg", "shape": [None, 1, spec.window]},
        "output": {"name": "probabilities", "shape": [None, len(classes)]},
        "aggregation": (f"windows of {spec.window_s:g} s every {spec.hop_s:g} s (one zero-padded window when the "
                        "recording is shorter); recording probabilities = mean of the window probabilities; "
                        "class = argmax; per-window labels form the rhythm band"),
        "metrics": {"validation": val_m, "test": test_m},
        "training": {"seed": seed, "epochs_run": len(history), "max_epochs": epochs, "patience": patience,
                     "best_epoch": best_epoch, "stopped": stopped, "batch": batch, "width": width, "lr": lr,
                     "threads": threads, "class_weights": [round(float(c), 4) for c in cw],
                     "class_weight_power": class_weight_power, "seconds": round(time.time() - t_start, 1),
                     "torch_onnx_max_abs_diff": diff, "params": int(sum(p.numel() for p in net.parameters())),
                     "eval_seconds": round(eval_s, 1)},
        "split": {k: {"records": int(len(v)), **{c: int(np.sum(y_all[v] == classes.index(c))) for c in classes}}
                  for k, v in parts.items()},
        "record_seconds": {"min": round(min(secs), 1), "median": round(float(np.median(secs)), 1),
                           "max": round(max(secs), 1)},
        "test_records": sorted(records[i] for i in te),
        "data": data_description,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    _embed_metadata(onnx_path, {k: meta[k] for k in ("name", "classes", "preprocessing", "aggregation")}
                    | {"test": _short(test_m), "validation": _short(val_m)})
    meta.update(file_facts(onnx_path))
    meta["history"] = history
    write_card_files(out_dir, name, meta, model_card(meta) if write_card else None)
    emit({"event": "done", "onnx": str(onnx_path), "sha256": meta["onnx_sha256"], "validation": _short(val_m),
          "test": _short(test_m), "confusion": (test_m or val_m)["confusion"], "classes": classes,
          "seconds": meta["training"]["seconds"]})
    return meta


def _short(m):
    if not m:
        return None
    out = {k: round(m[k], 4) for k in ("challenge_score", "accuracy", "macro_f1", "af_sensitivity", "af_ppv") if k in m}
    out["n"] = m["n"]
    out["f1"] = {c: round(d["f1"], 4) for c, d in m["per_class"].items()}
    return out


def _ci(c):
    return f" (95 % CI {100 * c[0]:.1f}–{100 * c[1]:.1f})" if c else ""


def model_card(meta: dict) -> str:
    t = meta["metrics"]["test"] or {}
    v = meta["metrics"]["validation"]
    sp = meta["preprocessing"]
    tr = meta["training"]
    classes = meta["classes"]
    codes = dict(zip(classes, meta.get("challenge_codes", classes)))
    rows = "\n".join(f"| {k} | {d['records']} | " + " | ".join(str(d.get(c, 0)) for c in classes) + " |"
                     for k, d in meta["split"].items())
    cm = t.get("confusion") or []
    cm_txt = ("| truth \\ predicted | " + " | ".join(classes) + " |\n|---|" + "---|" * len(classes) + "\n"
              + "\n".join(f"| {c} | " + " | ".join(str(x) for x in row) + " |" for c, row in zip(classes, cm)))
    per = "\n".join(f"| {c} ({codes[c]}) | {_pct(d['precision'])} | {_pct(d['recall'])} | {_pct(d['f1'])} | {d['support']} |"
                    for c, d in (t.get("per_class") or {}).items())
    vper = " / ".join(f"{c} {100 * d['f1']:.1f}" for c, d in v["per_class"].items())
    app = meta.get("app_check") or {}
    app_txt = ""
    if app:
        app_txt = (f"\nThe same test records opened as WFDB files and run through Lightbox's own reader and pipeline "
                   f"(`{app['command']}`): accuracy {_pct(app['accuracy'])}, macro F1 {_pct(app['macro_f1'])}, the same "
                   f"confusion matrix; AF against the rest by p(AF): AUROC {app['auroc']:.3f} (95 % CI "
                   f"{app['auroc_ci'][0]:.3f}–{app['auroc_ci'][1]:.3f}); at p(AF) ≥ 0.5 sensitivity "
                   f"{_pct(app['sensitivity'])}, specificity {_pct(app['specificity'])}, PPV {_pct(app['ppv'])} "
                   f"(the argmax above calls AF more often). {app['n']} recordings in {app['seconds']:.0f} s.\n")
    speed = meta.get("speed") or {}
    speed_txt = ""
    if speed:
        speed_txt = (f"\n## Speed (ONNX Runtime, CPU)\n{speed.get('text', '')}\n")
    return f"""# {meta['name']} — Lightbox single-lead ECG rhythm classifier ({' / '.join(classes)})

**Lightbox's own research model. It is not a validated medical device and has not been evaluated
clinically: every result it produces is stamped NOT A CLINICAL RESULT.** The figures below come from a
held-out split of a public challenge data set recorded with one hand-held device; they say how the model does
on recordings like those, not on your patients, leads or recorders.

## Data
{meta['data'] or 'Labelled single-lead recordings supplied to `lightbox ecg-rhythm-train`.'}

## Split (by record; stratified by label; seed {tr['seed']})
| part | records | {' | '.join(classes)} |
|---|---|{'---|' * len(classes)}
{rows}

Each record is one recording of one person's session; the challenge publishes no patient ids, so a person with
several recordings could appear in more than one part. The test split was used once, after training, on the
exported ONNX file: never in training, early stopping or any other choice. Its record ids are in
`{meta['name']}.json`. Recording lengths: {meta['record_seconds']['min']}–{meta['record_seconds']['max']} s
(median {meta['record_seconds']['median']} s).

## Preprocessing (also embedded in the ONNX file's metadata)
One lead in mV -> polyphase resampling to {sp['fs']:g} Hz -> Butterworth band-pass order {sp['band_order']},
{sp['band_low_hz']:g}–{sp['band_high_hz']:g} Hz, zero phase -> windows of {sp['window_s']:g} s ({int(sp['window_s'] * sp['fs'])} samples):
a recording up to {sp['window_s']:g} s is one window zero-padded at the end, a longer one is cut every
{sp['hop_s']:g} s (last window aligned to the end) -> per window: minus the median, divided by the
{sp['scale_percentile']:g}th percentile of |x|, clipped to ±{sp['clip']:g} (padding stays 0).
Input `ecg` (N, 1, {int(sp['window_s'] * sp['fs'])}); output `probabilities` (N, {len(classes)}) in the order {classes}.
Recording: mean of the window probabilities, class = argmax. For recordings longer than one window the
per-window labels are drawn as a band over the rhythm strip; AF burden = share of time in windows labelled AF.

## Model and training
1-D ResNet: stem conv (k 15, stride 2) + max-pool, 5 residual blocks (two k-9 convs, stride 2), width {tr['width']},
global average + max pooling, dropout 0.3, linear. {tr['params']:,} parameters, {meta.get('onnx_bytes', 0) / 1024:.0f} KiB as ONNX (opset 17).
PyTorch, AdamW (one-cycle, max lr {tr['lr']:g}, weight decay 1e-2), cross-entropy with label smoothing 0.05 and
class weights {tr['class_weights']} (inverse frequency to the power {tr['class_weight_power']}),
one random crop per training record per epoch (a third of them shortened to 9 s or more), Gaussian noise,
batch {tr['batch']}, {tr['threads']} CPU thread(s). No sign flip (lead I polarity carries information).
Early stopping on the validation challenge score: best epoch {tr['best_epoch']} of {tr['epochs_run']}
({tr['stopped']}); {tr['seconds'] / 60:.1f} min in all.
ONNX and PyTorch window probabilities agree to {tr['torch_onnx_max_abs_diff']:.1e}.

## Results (recording level, the ONNX file)
| metric | held-out test (n = {t.get('n', 0)}) | validation (n = {v.get('n', 0)}, early stopping) |
|---|---|---|
| Challenge score (mean F1 of N, A, O) | {_pct(t.get('challenge_score'))}{_ci(t.get('challenge_score_ci'))} | {_pct(v.get('challenge_score'))} |
| AF sensitivity | {_pct(t.get('af_sensitivity'))}{_ci(t.get('af_sensitivity_ci'))} | {_pct(v.get('af_sensitivity'))} |
| AF positive predictive value | {_pct(t.get('af_ppv'))}{_ci(t.get('af_ppv_ci'))} | {_pct(v.get('af_ppv'))} |
| Accuracy (4 classes) | {_pct(t.get('accuracy'))} | {_pct(v.get('accuracy'))} |
| Macro F1 (4 classes) | {_pct(t.get('macro_f1'))} | {_pct(v.get('macro_f1'))} |

Per class on the test split (validation F1: {vper}):

| class | precision | recall | F1 | n |
|---|---|---|---|---|
{per}

Confusion matrix (test, recordings):

{cm_txt}

For scale: the best entries of the PhysioNet/CinC Challenge 2017 scored about 0.83 on the challenge's hidden
test set. That is a different evaluation (other recordings, re-reviewed labels), so the numbers are not
directly comparable; a random split of the public training set is usually somewhat easier.
{app_txt}{speed_txt}
## Reproduce
    lightbox ecg-rhythm-train /path/to/training2017 --out resources/models --seed {tr['seed']} --epochs {tr['max_epochs']} \\
        --patience {tr['patience']} --width {tr['width']} --batch {tr['batch']} --lr {tr['lr']:g} --threads {tr['threads']}
{"" if tr['epochs_run'] == tr['max_epochs'] or tr['stopped'].startswith("early") else
 f"(This run stopped after {tr['epochs_run']} of {tr['max_epochs']} epochs: {tr['stopped']}. The learning-rate schedule "
 f"spans all {tr['max_epochs']}, so add `--max-epochs-run {tr['epochs_run']}` to stop at the same point.)"}

The sha256 of the ONNX file is pinned in `weights/manifest.toml`; another torch build or CPU may change the
last digits of the weights, and so the hash, but not the figures above beyond noise.

## Limits
- One lead, one device: AliveCor hand-held recordings (lead I equivalent), 9–61 s. Other leads (II, V1, ...),
  12-lead carts and Holter recorders are outside what it was trained on; Lightbox says so beside the result.
- Four classes only. "Other rhythm" pools every non-AF abnormal rhythm in the challenge data (e.g. ectopy,
  flutter, blocks); it does not name them. "Too noisy" is the challenge's own noise class (284 recordings).
- Long recordings are classified window by window ({sp['window_s']:g} s); an episode much shorter than a window can be missed.
- Not for diagnosis.
"""


CINC_DESCRIPTION = (
    "{n} single-lead ECG recordings ({counts}) of the PhysioNet/Computing in Cardiology Challenge 2017, "
    "\"AF Classification from a Short Single Lead ECG Recording\" (public training set: AliveCor KardiaMobile, "
    "lead-I equivalent, 300 Hz, 9–61 s; labels N normal sinus rhythm, A atrial fibrillation, O other rhythm, "
    "~ too noisy, from `REFERENCE.csv`; the copy used is the `training2017/` folder of the public repository "
    "`Enei7/ECG2Text-AF`). Licence: Open Data Commons Attribution License v1.0 (ODC-By 1.0), the licence PhysioNet "
    "gives the challenge's files; PhysioNet lists the project as \"Challenge Open Access\" at "
    "physionet.org/content/challenge-2017/1.0.0/ (that page's title, authors, version 1.0.0 of 1 Feb 2017 and "
    "citation were checked for this card; its licence line could not be re-read offline, so confirm it there "
    "before redistributing anything derived from the data). "
    "Attribution: Clifford GD, Liu C, Moody B, Lehman LH, Silva I, Li Q, Johnson AE, Mark RG. AF Classification "
    "from a Short Single Lead ECG Recording: the PhysioNet/Computing in Cardiology Challenge 2017. Computing in "
    "Cardiology 2017;44; Goldberger AL, et al. PhysioBank, PhysioToolkit, and PhysioNet. Circulation "
    "2000;101(23):e215–e220. No recording is shipped with Lightbox; only the trained weights are.")


def measure_speed(onnx_path: Path, n: int = 200) -> dict:
    """Per-ECG latency (30 s, 300 Hz, 1 thread, best of 10) and batched throughput (all cores, best of 3)."""
    from .rhythm import RhythmModel
    from .rhythm_synth import synth_lead

    def best(fn, k):
        ts = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    one = RhythmModel(onnx_path, threads=1)
    x = synth_lead(30, 300.0, seed=1)
    one.classify(x, 300.0)
    per = best(lambda: one.classify(x, 300.0), 10)
    cores = os.cpu_count() or 1
    many = RhythmModel(onnx_path, threads=cores)
    ecgs = [(synth_lead(30, 300.0, irregular=bool(i % 3 == 0), seed=i), 300.0) for i in range(n)]
    dt = best(lambda: many.classify_many(ecgs, batch=100), 3)
    return {"per_ecg_ms": round(per * 1000, 2), "batch_per_min": round(n / dt * 60), "cores": cores,
            "text": (f"One 30-s recording at 300 Hz (resample, band-pass, ONNX, one thread, best of 10): "
                     f"{per * 1000:.1f} ms. Batched, {n} recordings through `classify_many` on {cores} CPU "
                     f"core(s) (best of 3): {n / dt * 60:,.0f} ECGs/min (target >= 5000/min on 2 cores). "
                     "Measured on a 2-core machine shared with other jobs; `lightbox bench --only ecg` "
                     "re-measures on the target PC.")}


def rewrite_card(json_path: Path) -> Path:
    meta = json.loads(json_path.read_text())
    onnx_path = json_path.with_suffix(".onnx")
    if onnx_path.exists():
        meta["speed"] = measure_speed(onnx_path)
    if "Challenge 2017" in (meta.get("data") or ""):  # the current wording of the data/licence paragraph
        tot = {c: sum(d.get(c, 0) for d in meta["split"].values()) for c in meta["classes"]}
        meta["data"] = CINC_DESCRIPTION.format(
            n=sum(tot.values()), counts=", ".join(f"{tot[c]} {code}" for c, code in zip(CLASSES, CHALLENGE_CODES)))
    json_path.write_text(json.dumps(meta, indent=2))
    out = json_path.with_suffix(".md")
    out.write_text(model_card(meta))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lightbox ecg-rhythm-train", description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="PhysioNet/CinC 2017 folder (REFERENCE.csv + <record>.mat/.hea)")
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
    p.add_argument("--card", metavar="JSON", help="only rewrite <name>.md from <name>.json, adding measured speed")
    args = p.parse_args(argv)
    if args.card:
        print(rewrite_card(Path(args.card)))
        return 0

    def human(e: dict) -> None:
        if e["event"] == "epoch":
            print(f"epoch {e['epoch']:3d}  loss {e['train_loss']:.3f}  acc {e['train_acc']:.3f}  |  val challenge "
                  f"{e['val_challenge']:.3f}  F1 {e['val_f1']}  (best {e['best_epoch']}, {e['seconds']:.0f} s)", flush=True)
        elif e["event"] == "step":
            if e["done"] >= e["total"] or e["done"] % (20 * args.batch * 2) < args.batch:
                print(f"  epoch {e['epoch']} {e['done']}/{e['total']} loss {e['loss']:.3f} {e['seconds']:.0f} s", flush=True)
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
        desc = CINC_DESCRIPTION.format(n=len(names), counts=counts)
        train_arrays(sigs, RAW_FS, labs, args.out, args.name, seed=args.seed, epochs=args.epochs,
                     patience=args.patience, batch=args.batch, width=args.width, lr=args.lr, threads=args.threads,
                     val_frac=args.val, test_frac=args.test, max_minutes=args.max_minutes, emit=emit,
                     stop_after=args.max_epochs_run,
                     records=names, data_description=desc)
    except DatasetError as e:
        return report_error(e, args.jsonl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
