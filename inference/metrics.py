"""One definition of each metric Lightbox reports (numpy only).

Model cards (written by the training commands on their held-out sets) and ``lightbox evaluate`` (a
site's own labelled cases) both call these functions, so "AUROC" or "Dice" means the same thing
everywhere it is printed.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


# -- ranking ----------------------------------------------------------------------------------------

def roc_auc(y, score) -> float:
    """Area under the ROC curve (Mann-Whitney U with tied scores counted half); nan if one class is absent."""
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=float).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_s = s[order]
    # average ranks for ties
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(y, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false-positive rate, true-positive rate, thresholds), thresholds descending, starting at +inf."""
    y = np.asarray(y).astype(bool).ravel()
    s = np.asarray(score, dtype=float).ravel()
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1] if len(s) else np.array([], int)
    tps = np.cumsum(y)[distinct] if len(s) else np.array([])
    fps = (distinct + 1) - tps
    P, N = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    fpr = np.r_[0.0, fps / N]
    tpr = np.r_[0.0, tps / P]
    thr = np.r_[np.inf, s[distinct]]
    return fpr, tpr, thr


def bootstrap_ci(stat: Callable[..., float], *arrays, n: int = 2000, seed: int = 0,
                 alpha: float = 0.05, stratify=None, clusters=None) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(*arrays)``, resampling cases with replacement.

    ``stratify`` (e.g. the binary labels) resamples within each stratum so every replicate keeps both
    classes. ``clusters`` (e.g. a patient id per image) resamples whole clusters instead of cases, so
    several images of one patient do not count as independent evidence. Replicates where the statistic
    is undefined (nan) are skipped.
    """
    arrays = [np.asarray(a) for a in arrays]
    m = len(arrays[0])
    if m == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    if clusters is not None:
        _, inverse = np.unique(np.asarray(clusters), return_inverse=True)
        members = [np.flatnonzero(inverse == c) for c in range(inverse.max() + 1)]
        vals = []
        for _ in range(n):
            pick = rng.integers(0, len(members), len(members))
            idx = np.concatenate([members[c] for c in pick])
            v = stat(*[a[idx] for a in arrays])
            if v == v:
                vals.append(v)
        if not vals:
            return float("nan"), float("nan")
        lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        return float(lo), float(hi)
    groups = None
    if stratify is not None:
        st = np.asarray(stratify)
        groups = [np.flatnonzero(st == v) for v in np.unique(st)]
    vals = []
    for _ in range(n):
        if groups is None:
            idx = rng.integers(0, m, m)
        else:
            idx = np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])
        v = stat(*[a[idx] for a in arrays])
        if v == v:  # not nan
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    lo, hi = np.percentile(vals, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(lo), float(hi)


def wilson_ci(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (for sensitivity etc. on small sets)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return float(max(0.0, c - h)), float(min(1.0, c + h))


def calibration_bins(y, prob, bins: int = 10) -> list[dict]:
    """Reliability diagram rows: equal-width probability bins with their mean prediction and observed rate."""
    y = np.asarray(y, dtype=float).ravel()
    p = np.clip(np.asarray(prob, dtype=float).ravel(), 0.0, 1.0)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append({"bin": [float(edges[b]), float(edges[b + 1])], "mean_pred": float(p[sel].mean()),
                        "frac_pos": float(y[sel].mean()), "n": int(sel.sum())})
    return out


def _ratio(a: int, b: int) -> float:
    return float(a / b) if b else float("nan")


def binary_summary(y, score, threshold: float = 0.5, *, n_boot: int = 2000, seed: int = 0,
                   probabilities: bool = True, clusters=None) -> dict:
    """Everything a card or a local validation says about a binary classifier at its threshold.

    ``score >= threshold`` is called positive. Confusion is [[tn, fp], [fn, tp]] (rows = truth).
    AUROC carries a stratified 95 % bootstrap interval (over ``clusters``, e.g. patients, when given);
    sensitivity and specificity carry Wilson intervals.
    Calibration and Brier score only when ``probabilities`` (scores are probabilities in [0, 1]).
    """
    y = np.asarray(y).astype(int).ravel()
    s = np.asarray(score, dtype=float).ravel()
    pred = (s >= threshold).astype(int)
    tp = int(((pred == 1) & (y == 1)).sum())
    tn = int(((pred == 0) & (y == 0)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    auc = roc_auc(y, s)
    out = {
        "n": int(len(y)), "positives": int(y.sum()), "negatives": int((1 - y).sum()),
        "prevalence": _ratio(int(y.sum()), len(y)),
        "threshold": float(threshold),
        "auroc": auc,
        "auroc_ci": (list(bootstrap_ci(roc_auc, y, s, n=n_boot, seed=seed,
                                       **({"clusters": clusters} if clusters is not None else {"stratify": y})))
                     if auc == auc else [auc, auc]),
        "auroc_ci_resampled": "clusters" if clusters is not None else "cases",
        "sensitivity": _ratio(tp, tp + fn), "sensitivity_ci": list(wilson_ci(tp, tp + fn)),
        "specificity": _ratio(tn, tn + fp), "specificity_ci": list(wilson_ci(tn, tn + fp)),
        "ppv": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
        "accuracy": _ratio(tp + tn, len(y)),
        "confusion": [[tn, fp], [fn, tp]],
    }
    if probabilities:
        out["calibration"] = calibration_bins(y, s)
        out["brier"] = float(np.mean((np.clip(s, 0, 1) - y) ** 2)) if len(y) else float("nan")
    return out


def youden_threshold(y, score) -> float:
    """The threshold maximising sensitivity + specificity - 1 (for choosing on a validation split)."""
    fpr, tpr, thr = roc_curve(y, score)
    i = int(np.argmax(tpr - fpr))
    return float(thr[i]) if np.isfinite(thr[i]) else float(thr[min(i + 1, len(thr) - 1)])


def sensitivity_threshold(y, score, target: float) -> float:
    """The highest threshold whose sensitivity on (y, score) is at least ``target`` (score >= threshold is
    positive; with ties, the lower score). 0.5 when there is no positive case."""
    pos = np.sort(np.asarray(score, np.float64)[np.asarray(y) == 1])
    if not len(pos):
        return 0.5
    # this many positives may fall below the threshold (the epsilon: (1 - 0.9) * 10 is 0.99999... in floats)
    k = int(np.floor((1 - target) * len(pos) + 1e-9))
    return float(pos[min(k, len(pos) - 1)])


SITE_SENSITIVITIES = (0.90, 0.93, 0.95, 0.97)


def operating_points(y, score, targets: Sequence[float] = SITE_SENSITIVITIES) -> list[dict]:
    """For each target sensitivity: the highest threshold reaching it on these cases, and the sensitivity
    and specificity there (Wilson 95 % CIs). What a site reads off its own labelled cases to choose an
    operating point; chosen on these cases, so its figures are optimistic for them."""
    y = np.asarray(y, int)
    s = np.asarray(score, np.float64)
    n1, n0 = int(y.sum()), int(len(y) - y.sum())
    out = []
    if not n1 or not n0:
        return out
    for t in targets:
        thr = sensitivity_threshold(y, s, t)
        tp, tn = int(((s >= thr) & (y == 1)).sum()), int(((s < thr) & (y == 0)).sum())
        out.append({"target_sensitivity": float(t), "threshold": thr, "sensitivity": tp / n1,
                    "sensitivity_ci": list(wilson_ci(tp, n1)), "specificity": tn / n0,
                    "specificity_ci": list(wilson_ci(tn, n0)), "confusion": [[tn, n0 - tn], [n1 - tp, tp]]})
    return out


# -- multi-class --------------------------------------------------------------------------------------

def confusion_matrix(y_true, y_pred, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(np.asarray(y_true, int).ravel(), np.asarray(y_pred, int).ravel()):
        cm[t, p] += 1
    return cm


def multiclass_summary(y_true, y_pred, classes: Sequence[str]) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1 and the confusion matrix
    (rows = truth, columns = prediction), with integer labels indexing ``classes``."""
    y_true, y_pred = np.asarray(y_true, int).ravel(), np.asarray(y_pred, int).ravel()
    k = len(classes)
    cm = confusion_matrix(y_true, y_pred, k)
    per, recalls, f1s = {}, [], []
    for i, c in enumerate(classes):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(cm[i].sum())}
        if cm[i].sum():
            recalls.append(rec)
            f1s.append(f1)
    return {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per,
        "confusion": cm.tolist(),
        "classes": list(classes),
    }


# -- segmentation -------------------------------------------------------------------------------------

def dice_iou(pred, true) -> tuple[float, float]:
    """Dice and IoU of two binary masks; two empty masks agree perfectly (1.0, 1.0)."""
    p = np.asarray(pred).astype(bool)
    t = np.asarray(true).astype(bool)
    inter = int((p & t).sum())
    total = int(p.sum()) + int(t.sum())
    union = int((p | t).sum())
    if total == 0:
        return 1.0, 1.0
    return float(2 * inter / total), float(inter / union)


# -- continuous values (EF) ------------------------------------------------------------------------------

def agreement(ref, est) -> dict:
    """Agreement of an estimate with a reference value (e.g. EF in %): MAE, RMSE, R², bias (est - ref) and
    the Bland-Altman 95 % limits of agreement (bias ± 1.96 SD of the differences)."""
    ref = np.asarray(ref, dtype=float).ravel()
    est = np.asarray(est, dtype=float).ravel()
    n = len(ref)
    if n == 0:
        nan = float("nan")
        return {"n": 0, "mae": nan, "rmse": nan, "r2": nan, "bias": nan, "sd_diff": nan,
                "loa_low": nan, "loa_high": nan}
    d = est - ref
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    ss_tot = float(((ref - ref.mean()) ** 2).sum())
    r2 = float(1 - float((d ** 2).sum()) / ss_tot) if ss_tot > 0 else float("nan")
    bias = float(d.mean())
    return {"n": n, "mae": float(np.abs(d).mean()), "rmse": float(np.sqrt((d ** 2).mean())), "r2": r2,
            "bias": bias, "sd_diff": sd, "loa_low": bias - 1.96 * sd, "loa_high": bias + 1.96 * sd}
