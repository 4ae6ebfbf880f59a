"""The shared metric definitions (inference.metrics) against hand-computed answers."""
import numpy as np
import pytest

from inference import metrics as M


def test_auroc_perfect_constant_and_ties():
    y = np.array([0, 0, 1, 1])
    assert M.roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert M.roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    # one positive ranked between the negatives: 3 of 4 pairs ordered
    assert M.roc_auc(y, [0.1, 0.6, 0.5, 0.9]) == pytest.approx(0.75)
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.3]))


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200) + 0.3 * y, 1)  # many ties
    pos, neg = s[y == 1], s[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert M.roc_auc(y, s) == pytest.approx(pairs)
    fpr, tpr, _ = M.roc_curve(y, s)
    assert np.trapezoid(tpr, fpr) == pytest.approx(pairs)


def test_binary_summary_confusion_and_ci():
    y = [0, 0, 0, 1, 1, 1]
    s = [0.1, 0.2, 0.7, 0.4, 0.8, 0.9]
    r = M.binary_summary(y, s, 0.5, n_boot=200)
    assert r["confusion"] == [[2, 1], [1, 2]]
    assert r["sensitivity"] == pytest.approx(2 / 3) and r["specificity"] == pytest.approx(2 / 3)
    assert r["ppv"] == pytest.approx(2 / 3) and r["npv"] == pytest.approx(2 / 3)
    lo, hi = r["auroc_ci"]
    assert 0 <= lo <= r["auroc"] <= hi <= 1
    assert sum(b["n"] for b in r["calibration"]) == 6


def test_multiclass_and_segmentation_and_agreement():
    r = M.multiclass_summary([0, 1, 2, 2], [0, 1, 2, 1], ["N", "A", "O"])
    assert r["confusion"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert r["per_class"]["O"]["recall"] == 0.5 and r["per_class"]["A"]["precision"] == 0.5
    a = np.zeros((4, 4), bool); a[:2] = True
    b = np.zeros((4, 4), bool); b[1:3] = True
    assert M.dice_iou(a, b) == (pytest.approx(0.5), pytest.approx(1 / 3))
    assert M.dice_iou(np.zeros(3), np.zeros(3)) == (1.0, 1.0)
    ref = np.array([30.0, 45, 55, 60, 70])
    g = M.agreement(ref, ref + 5)
    assert g["bias"] == pytest.approx(5) and g["mae"] == pytest.approx(5) and g["sd_diff"] == pytest.approx(0)
    assert g["loa_low"] == pytest.approx(5) and g["loa_high"] == pytest.approx(5)


def test_cluster_bootstrap_resamples_whole_patients():
    # ten patients, each with five identical images: by image the interval is as narrow as 50 independent
    # cases would give; by patient it is as wide as 10 cases give
    rng = np.random.default_rng(1)
    y10 = np.array([0, 1] * 5)
    s10 = np.clip(y10 * 0.3 + rng.random(10) * 0.8, 0, 1)
    y, s, pid = np.repeat(y10, 5), np.repeat(s10, 5), np.repeat(np.arange(10), 5)
    by_image = M.bootstrap_ci(M.roc_auc, y, s, n=400, stratify=y)
    by_patient = M.bootstrap_ci(M.roc_auc, y, s, n=400, clusters=pid)
    assert (by_patient[1] - by_patient[0]) > 1.5 * (by_image[1] - by_image[0])
    r = M.binary_summary(y, s, 0.5, n_boot=200, clusters=pid)
    assert r["auroc_ci_resampled"] == "clusters" and r["auroc_ci"][0] <= r["auroc"] <= r["auroc_ci"][1]
