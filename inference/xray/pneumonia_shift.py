"""Shifted validation: the validation films as another site's equipment and software might deliver them.

Internal validation saturates (AUROC ~0.999 on films of the same acquisition as the training films), so it
tells early stopping and the operating point little about how the model holds up on other films. The
shifted validation passes every validation film through a **strong, random acquisition change**, stronger
than the training augmentation and partly of other kinds:

- tone: gamma 0.55-1.8, contrast 0.65-1.35, brightness +-30; or a vendor-like processing the training never
  sees: CLAHE (clip 1.5-4), global histogram equalisation, strong unsharp masking (edge enhancement), a soft
  log-like tone curve;
- quantum-mottle-like noise (Gaussian, sigma 2-7 grey levels) on some films;
- geometry: rotation +-7 deg, scale 0.85-1.15, shift +-8 %;
- resolution: always down to 96-200 px with a random interpolation (nearest, linear, area, cubic: with and
  without anti-aliasing) and back to 224 px (nearest or linear), i.e. the film arrives as a 224-px copy;
- JPEG quality 20-85 (most films);
- collimation/padding bands (flat, which the run-time crop removes, or noisy, which it does not) and text
  markers on some films.

The output is a 224 x 224 uint8 image that then goes through the model's own run-time preprocessing (border
crop, resize): exactly what the app would do with such a file. Two independent draws are used, never mixed:

- set **A** (seed ``seed * 1000 + 501``): early stopping and the operating point of a training run;
- set **B** (seed ``seed * 1000 + 502``): the rule that chooses between two trained models, scored on the
  exported ONNX files through the app's path (a draw no model was stopped or thresholded on).

Both are built from the validation split only; the external test set plays no part.
"""
from __future__ import annotations

import numpy as np

SEED_A, SEED_B = 501, 502
SEED_NOISE = 503
SEED_NOISE_THRESHOLD = 504
NOISE_SIGMA = 8.0
VERSION = "1"  # part of the feature-cache name: change it when shifted() changes


def shifted(img224: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """One strong random acquisition change of a (224, 224) uint8 film -> (224, 224) uint8."""
    import cv2

    from .pneumonia_net import add_bands

    s0 = img224.shape[0]
    ang, sc = rng.uniform(-7, 7), rng.uniform(0.85, 1.15)
    tx, ty = rng.uniform(-0.08, 0.08, 2) * s0
    M = cv2.getRotationMatrix2D((s0 / 2, s0 / 2), ang, sc)
    M[:, 2] += (tx, ty)
    border = cv2.BORDER_REPLICATE if rng.rand() < 0.6 else cv2.BORDER_CONSTANT
    x = cv2.warpAffine(img224, M, (s0, s0), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=0)
    kind = rng.choice(["gamma", "gamma", "clahe", "equalise", "unsharp", "log"])
    if kind == "gamma":
        f = x.astype(np.float32) / 255.0
        f = f ** np.exp(rng.uniform(np.log(0.55), np.log(1.8)))
        m = f.mean()
        f = (f - m) * rng.uniform(0.65, 1.35) + m + rng.uniform(-30, 30) / 255.0
        x = np.clip(f * 255 + 0.5, 0, 255).astype(np.uint8)
    elif kind == "clahe":
        x = cv2.createCLAHE(clipLimit=float(rng.uniform(1.5, 4.0)), tileGridSize=(8, 8)).apply(x)
    elif kind == "equalise":
        x = cv2.equalizeHist(x)
    elif kind == "unsharp":
        bl = cv2.GaussianBlur(x, (0, 0), rng.uniform(2.0, 5.0))
        a = rng.uniform(0.6, 1.5)
        x = cv2.addWeighted(x, 1 + a, bl, -a, 0)
    else:  # soft log-like curve: dark parts lifted
        f = x.astype(np.float32) / 255.0
        k = rng.uniform(3, 12)
        x = np.clip(np.log1p(k * f) / np.log1p(k) * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.rand() < 0.35:
        x = np.clip(x.astype(np.float32) + rng.normal(0, rng.uniform(2, 7), x.shape), 0, 255).astype(np.uint8)
    lo = int(rng.uniform(96, 200))
    down = [cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC][rng.randint(4)]
    up = [cv2.INTER_NEAREST, cv2.INTER_LINEAR][rng.randint(2)]
    x = cv2.resize(cv2.resize(x, (lo, lo), interpolation=down), (s0, s0), interpolation=up)
    if rng.rand() < 0.3:
        txt = str(rng.choice(["L", "R", "AP", "PORTABLE", "SUPINE"]))
        cv2.putText(x, txt, (int(rng.uniform(0.02, 0.7) * s0), int(rng.uniform(0.08, 0.98) * s0)),
                    cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.3, 0.7), int(rng.choice([0, 255])), 1)
    if rng.rand() < 0.3:
        x = add_bands(x, rng, flat=rng.rand() < 0.5)
    if rng.rand() < 0.8:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(20, 85))])
        x = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    return x


def shifted_set(x224: np.ndarray, seed: int, which: str = "A") -> np.ndarray:
    """(N, 224, 224) uint8: one shifted draw of every film (set ``A`` or ``B``, see the module text)."""
    rng = np.random.RandomState(seed * 1000 + (SEED_A if which == "A" else SEED_B))
    return np.stack([shifted(np.asarray(im), rng) for im in x224])


def noisy_set(x224: np.ndarray, seed: int, sigma: float = NOISE_SIGMA) -> np.ndarray:
    """(N, 224, 224) uint8: every film with uncorrelated Gaussian noise of ``sigma`` grey levels (seed
    ``seed * 1000 + 503``): the noise check of the model-choice rule (validation films only)."""
    from .pneumonia_net import add_noise

    rng = np.random.RandomState(seed * 1000 + SEED_NOISE)
    return np.stack([add_noise(np.asarray(im), rng, sigma=sigma, kind="gaussian", correlated=False)
                     for im in x224])


def threshold_noise_set(x224: np.ndarray, seed: int) -> np.ndarray:
    """(N, 224, 224) uint8: every film once with uncorrelated Gaussian noise of 4-12 grey levels (drawn per
    film; seed ``seed * 1000 + 504``): the noisy half of the films an operating point ``--threshold-on
    val+noise`` is chosen on (validation films only; a draw apart from the noise check's)."""
    from .pneumonia_net import add_noise

    rng = np.random.RandomState(seed * 1000 + SEED_NOISE_THRESHOLD)
    return np.stack([add_noise(np.asarray(im), rng, sigma=float(rng.uniform(4, 12)), kind="gaussian",
                               correlated=False) for im in x224])


def model_inputs(x224_shifted: np.ndarray, size: int) -> np.ndarray:
    """The run-time preprocessing (border crop, squash to ``size``) of shifted 224-px films."""
    from .pneumonia_data import model_input

    return np.stack([model_input(np.asarray(im), size) for im in x224_shifted])


def score_onnx(model, x224_shifted: np.ndarray) -> np.ndarray:
    """P(pneumonia) of shifted films through a :class:`~inference.xray.pneumonia.PneumoniaModel` (the app's
    path: border crop and resize as the file declares, then the ONNX graph)."""
    probs = []
    for im in x224_shifted:
        small, _, _ = model.preprocess_box(np.asarray(im))
        probs.append(float(model.run_batch(small[None])["prob"][0]))
    return np.asarray(probs)
