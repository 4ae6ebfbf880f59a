"""Classification metrics for heart-sound models: the shared definitions in ``inference.metrics``."""
from __future__ import annotations

import numpy as np

from inference.metrics import multiclass_summary


def evaluate(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix (rows = truth, cols = prediction),
    balanced accuracy; for a normal/abnormal model also sensitivity (abnormal recall), specificity
    (normal recall) and their mean, the PhysioNet/CinC 2016 'MAcc'."""
    out = multiclass_summary(y_true, y_pred, classes)
    out.pop("macro_f1", None)
    per = out["per_class"]
    if set(classes) == {"normal", "abnormal"}:
        se = per["abnormal"]["recall"]
        sp = per["normal"]["recall"]
        out.update(sensitivity=float(se), specificity=float(sp), macc=float((se + sp) / 2))
    return out
