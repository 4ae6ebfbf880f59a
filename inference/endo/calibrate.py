"""Measure the scene-cut rule and the still-image score on real images (the figures in
``inference.endo.scenes`` and ``inference.endo.stills``).

    python -m inference.endo.calibrate DATA_DIR [XRAY_DIR ...]
        DATA_DIR: Kvasir-SEG, CVC-ClinicDB, Children_NoPolip; XRAY_DIR: folders of chest radiographs

No-cut pairs: consecutive frames of simulated camera motion over 40 real images (Kvasir-SEG and
CVC-ClinicDB; the data sets hold stills, and CVC-ClinicDB's "sequences" are frames seconds apart, not
25-fps video): pan with a per-frame step of 2, 5 and 10 % of the frame (normal, fast, very fast),
rotation 2 deg/frame, zoom, exposure jitter 5 %, horizontal motion blur in 20 % of frames.
Cut pairs: two different images (Kvasir x Kvasir, Kvasir x CVC, polyp-free x polyp-free).
Deterministic (seed 0). Prints the false-cut rate on motion and the share of cuts found.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np

from inference.endo.scenes import CUT_SCORE, distance, signature


def _warp(img: np.ndarray, state: np.ndarray) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2 + state[0] * w, h / 2 + state[1] * h), state[2], state[3])
    return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def motion_pairs(img: np.ndarray, rng: np.random.Generator, speed: float, n: int = 12) -> list[dict]:
    import cv2

    img = cv2.resize(img, (320, 272), interpolation=cv2.INTER_AREA)
    st = np.array([0.0, 0.0, 0.0, 1.0])
    out, prev = [], None
    for _ in range(n):
        st[:3] += [rng.normal(0, speed), rng.normal(0, speed), rng.normal(0, 2)]
        st[3] *= np.exp(rng.normal(0, speed))
        f = np.clip(_warp(img, st).astype(np.float32) * np.exp(rng.normal(0, 0.05)), 0, 255).astype(np.uint8)
        if rng.random() < 0.2:
            f = cv2.blur(f, (int(rng.integers(3, 9)), 1))
        s = signature(f)
        if prev is not None:
            out.append(distance(prev, s))
        prev = s
    return out


def main(argv: list[str] | None = None) -> int:
    from inference.endo.polyp_data import load_pair, scan

    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    items, _ = scan(Path(argv[0]))
    kv = [i for i in items if i.source == "kvasir"]
    cvc = [i for i in items if i.source == "cvc"]
    neg = [i for i in items if i.source == "normal"]
    rng = np.random.default_rng(0)
    motion: dict[float, list[dict]] = {}
    picks = [(kv + cvc)[k] for k in rng.choice(len(kv) + len(cvc), 40, replace=False)]
    for speed in (0.02, 0.05, 0.10):
        motion[speed] = [d for it in picks for d in motion_pairs(load_pair(it)[0], rng, speed)]
    cache: dict[tuple, object] = {}

    def sig(it):
        k = (it.source, it.id)
        if k not in cache:
            cache[k] = signature(load_pair(it)[0])
        return cache[k]

    r = random.Random(0)
    cuts = [distance(sig(a), sig(b)) for a, b in [r.sample(kv, 2) for _ in range(400)]]
    if cvc:
        cuts += [distance(sig(r.choice(kv)), sig(r.choice(cvc))) for _ in range(200)]
    if len(neg) > 1:
        cuts += [distance(sig(a), sig(b)) for a, b in [r.sample(neg, 2) for _ in range(200)]]
    allm = [d for v in motion.values() for d in v]
    for speed, v in motion.items():
        print(f"motion {100 * speed:.0f} %/frame: {len(v)} pairs, false cuts "
              f"{sum(d['score'] > CUT_SCORE for d in v)}, max score {max(d['score'] for d in v):.3f}")
    print(f"all motion: {len(allm)} pairs, false-cut rate {np.mean([d['score'] > CUT_SCORE for d in allm]):.4f}")
    print(f"different images: {len(cuts)} pairs, cuts found {np.mean([d['score'] > CUT_SCORE for d in cuts]):.4f}, "
          f"median score {np.median([d['score'] for d in cuts]):.2f}")
    stills(kv, cvc, neg, [Path(a) for a in argv[1:]])
    return 0


def stills(kv, cvc, neg, xray_dirs: list[Path]) -> None:
    """The endoscopy still score on endoscopy images (should be >= AMBIGUOUS) and radiographs (0)."""
    from inference.endo.polyp_data import load_pair
    from inference.endo.polyp_eval import outdoor_scene
    from inference.endo.stills import AMBIGUOUS, endo_still_score, read_image

    r = random.Random(0)
    groups = {"Kvasir-SEG": [load_pair(i)[0] for i in r.sample(kv, min(300, len(kv)))],
              "CVC-ClinicDB": [load_pair(i)[0] for i in cvc[::3]],
              "polyp-free close-ups": [load_pair(i)[0] for i in r.sample(neg, min(200, len(neg)))],
              "synthetic outdoor photos": [outdoor_scene(s) for s in range(50)]}
    for d in xray_dirs:
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        groups[f"radiographs {d}"] = [im for im in (read_image(p) for p in r.sample(files, min(200, len(files))))
                                      if im is not None]
    for name, imgs in groups.items():
        sc = np.array([endo_still_score(im) for im in imgs])
        if len(sc):
            print(f"still score, {name}: n={len(sc)}, min {sc.min():.2f}, median {np.median(sc):.2f}, "
                  f"max {sc.max():.2f}, under {AMBIGUOUS}: {(sc < AMBIGUOUS).sum()}")


if __name__ == "__main__":
    sys.exit(main())
