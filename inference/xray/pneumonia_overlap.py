"""Near-duplicate check between a training folder and an external test folder of chest radiographs.

Why: Kermany's official ``test/`` split reuses patient numbers of ``train/`` (e.g. ``person100`` occurs in
both). The numbering may simply restart per release split; if the same *film* (or a re-encoded copy of it)
were in both, the external test would not be external. This module compares pixels, not names.

Method (stated on the model card):

- every image goes through the model's own preprocessing at 224 px (decode -> uniform edge bands cropped ->
  squashed to 224 x 224, INTER_AREA), then is reduced to a 32 x 32 thumbnail (INTER_AREA); both sets the
  same way, so the external set's 224-px copies and the full-resolution training films meet on one footing;
- **thumbnail correlation**: Pearson correlation of the two 32 x 32 thumbnails (each centred and scaled to
  unit norm), for every external x training pair;
- **perceptual hash**: the 64-bit DCT hash (sign of the 8 x 8 lowest DCT frequencies of the 32 x 32
  thumbnail against their median, DC excluded), Hamming distance for every pair;
- a pair is a **near-duplicate** when correlation >= ``CORR_LIMIT`` *and* Hamming distance <= ``HASH_LIMIT``.
  The limits are set by a positive control measured in the same run: training films re-encoded the way the
  external copies were made (squashed to 224 px with another interpolation, JPEG quality 75) against the
  training set must all be found; and the reference of *different* children is the nearest other-patient
  training film of each training film (films of one pneumonia set look alike at 32 x 32, so the limit must
  sit above that).

Pure numpy + OpenCV.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

THUMB = 32
CORR_LIMIT = 0.985
HASH_LIMIT = 10


def thumbnails(x224: np.ndarray) -> np.ndarray:
    """(N, 224, 224) uint8 model inputs -> (N, 1024) float32 centred unit-norm 32 x 32 thumbnails."""
    import cv2

    t = np.stack([cv2.resize(im, (THUMB, THUMB), interpolation=cv2.INTER_AREA) for im in x224]).astype(np.float32)
    t = t.reshape(len(t), -1)
    t -= t.mean(1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-6
    return t


def phash(x224: np.ndarray) -> np.ndarray:
    """(N, 224, 224) uint8 -> (N, 64) bool DCT perceptual hashes (from the 32 x 32 thumbnail)."""
    import cv2

    out = np.zeros((len(x224), 64), bool)
    for i, im in enumerate(x224):
        t = cv2.resize(im, (THUMB, THUMB), interpolation=cv2.INTER_AREA).astype(np.float32)
        d = cv2.dct(t)[:8, :8].ravel()
        d[0] = np.median(d[1:])  # DC carries brightness only
        out[i] = d > np.median(d)
    return out


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Na, 64) x (Nb, 64) bool -> (Na, Nb) int Hamming distances."""
    a8, b8 = a.astype(np.int16), b.astype(np.int16)
    return (a8 @ (1 - b8).T + (1 - a8) @ b8.T).astype(np.int16)


def reencoded_like_external(x224: np.ndarray, seed: int = 0) -> np.ndarray:
    """The positive control: training films as a redistributor's 224-px JPEG copy would make them
    (down to 160-200 px with a random interpolation, back up to 224 px bilinear, JPEG quality 75)."""
    import cv2

    rng = np.random.RandomState(seed)
    out = []
    for im in x224:
        s = int(rng.uniform(160, 200))
        interp = [cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC][rng.randint(3)]
        y = cv2.resize(cv2.resize(im, (s, s), interpolation=interp), (224, 224), interpolation=cv2.INTER_LINEAR)
        ok, enc = cv2.imencode(".jpg", y, [cv2.IMWRITE_JPEG_QUALITY, 75])
        out.append(cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE))
    return np.stack(out)


def check(x_train: np.ndarray, train_names: list[str], train_patients: list[str], x_ext: np.ndarray,
          ext_names: list[str], *, corr_limit: float = CORR_LIMIT, hash_limit: int = HASH_LIMIT, seed: int = 0,
          n_control: int = 300, emit: Callable[[dict], None] | None = None) -> dict:
    """Compare every external image with every training image. Returns the method, limits, the controls,
    the distribution of each external image's best match, every near-duplicate pair and the training
    patients concerned."""
    emit = emit or (lambda e: None)
    tt, te = thumbnails(x_train), thumbnails(x_ext)
    ht, he = phash(x_train), phash(x_ext)
    corr = te @ tt.T                                    # (n_ext, n_train)
    ham = hamming(he, ht)
    best = corr.argmax(1)
    best_corr = corr[np.arange(len(te)), best]
    best_ham = ham.min(1)
    dup = (corr >= corr_limit) & (ham <= hash_limit)
    pairs = [{"external": ext_names[i], "train": train_names[j], "train_patient": train_patients[j],
              "corr": round(float(corr[i, j]), 4), "hamming": int(ham[i, j])}
             for i, j in zip(*np.nonzero(dup))]
    emit({"event": "overlap", "pairs": len(pairs)})

    # positive control: re-encoded training films must find their own original
    rng = np.random.RandomState(seed)
    ctrl = np.sort(rng.permutation(len(x_train))[:min(n_control, len(x_train))])
    xc = reencoded_like_external(x_train[ctrl], seed)
    cc = thumbnails(xc) @ tt.T
    hc = hamming(phash(xc), ht)
    own_corr = cc[np.arange(len(ctrl)), ctrl]
    own_ham = hc[np.arange(len(ctrl)), ctrl]
    found = (own_corr >= corr_limit) & (own_ham <= hash_limit)
    # negative reference: each control film's nearest training film of another patient
    pat = np.asarray(train_patients)
    other = np.where(pat[None, :] != pat[ctrl][:, None], (tt[ctrl] @ tt.T), -1.0)
    nearest_other = other.max(1)
    other_dup = ((other >= corr_limit) & (hamming(ht[ctrl], ht) <= hash_limit)
                 & (pat[None, :] != pat[ctrl][:, None])).any(1)

    def q(v):
        v = np.asarray(v, np.float64)
        if not len(v):
            return {}
        return {"min": float(v.min()), "q01": float(np.quantile(v, 0.01)), "median": float(np.median(v)),
                "q99": float(np.quantile(v, 0.99)), "max": float(v.max())}

    # the reused patient numbers: an external film against the training films carrying its number
    from .pneumonia_data import patient_id

    ext_pat = [patient_id(n) for n in ext_names]
    shared = sorted(set(ext_pat) & set(train_patients))
    same = [float(corr[i][pat == ext_pat[i]].max()) for i in range(len(te)) if ext_pat[i] in set(shared)]

    return {
        "method": (f"model preprocessing at 224 px (border crop, squash), 32 x 32 INTER_AREA thumbnail; "
                   f"Pearson correlation of thumbnails and 64-bit DCT perceptual-hash Hamming distance for "
                   f"every external x training pair; near-duplicate = correlation >= {corr_limit} and "
                   f"Hamming <= {hash_limit}"),
        "corr_limit": corr_limit, "hash_limit": hash_limit,
        "n_external": len(te), "n_train": len(tt), "pairs_compared": int(len(te) * len(tt)),
        "external_best_corr": q(best_corr), "external_best_hamming": q(best_ham),
        "external_over_0.95": int((best_corr >= 0.95).sum()),
        "external_over_0.97": int((best_corr >= 0.97).sum()),
        "control": {"n": int(len(ctrl)), "found": int(found.sum()), "own_corr": q(own_corr),
                    "own_hamming": q(own_ham), "nearest_other_patient_corr": q(nearest_other),
                    "other_patient_flagged": int(other_dup.sum())},
        "shared_patient_numbers": len(shared),
        "shared_number_films": len(same),
        "shared_number_best_corr": q(same),
        "pairs": pairs,
        "train_patients": sorted({p["train_patient"] for p in pairs}),
        "top": [{"external": ext_names[i], "train": train_names[int(best[i])], "corr": round(float(best_corr[i]), 4),
                 "hamming": int(ham[i, best[i]])} for i in np.argsort(-best_corr)[:10]],
    }
