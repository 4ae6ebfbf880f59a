"""Classification metrics for heart-sound models (numpy only)."""
from __future__ import annotations

import numpy as np


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix (rows = truth, cols = prediction),
    balanced accuracy; for a normal/abnormal model also sensitivity (abnormal recall), specificity
    (normal recall) and their mean, the PhysioNet/CinC 2016 'MAcc'."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    k = len(classes)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, y_pred):
        cm[t, p] += 1
    per = {}
    recalls = []
    for i, c in enumerate(classes):
        tp = cm[i, i]
        prec = tp / cm[:, i].sum() if cm[:, i].sum() else 0.0
        rec = tp / cm[i].sum() if cm[i].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        per[c] = {"precision": float(prec), "recall": float(rec), "f1": float(f1), "support": int(cm[i].sum())}
        if cm[i].sum():
            recalls.append(rec)
    out = {
        "n": int(len(y_true)),
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": per,
        "confusion": cm.tolist(),
        "classes": list(classes),
    }
    if set(classes) == {"normal", "abnormal"}:
        se = per["abnormal"]["recall"]
        sp = per["normal"]["recall"]
        out.update(sensitivity=float(se), specificity=float(sp), macc=float((se + sp) / 2))
    return out
