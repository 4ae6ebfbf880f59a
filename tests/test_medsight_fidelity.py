"""MedSight chest X-ray model against the reference (hoshikrana/MediaAI): the checkpoint as the reference's
notebook saves it loads (numpy scalars, histories, AUROC), a missing threshold means 0.5, the input is
the reference's ``Resize((224, 224))`` (bilinear on a PIL RGB image), and the score follows the
reference's steps.

The expected numbers are computed here from the reference's documented steps, independently of
Lightbox's code: a numpy bilinear (triangle-filter) resampler with Pillow's antialiasing rule, ImageNet
normalisation, and the fused-score formula applied to the raw components.
"""
from __future__ import annotations

import math
import warnings
import zipfile

import numpy as np
import pytest

from tests.xray_fixtures import demo_path, weight_files  # noqa: F401  (fixtures)

from inference.xray import medsight as X

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
IMAGENET_STD = np.array([0.229, 0.224, 0.225])

#: the notebook's CFG, as saved under 'config' (Cell 2), with its non-architecture entries
REFERENCE_CFG = {
    "data_root": "/kaggle/input/datasets/tawsifurrahman/covid19-radiography-database/COVID-19_Radiography_Dataset",
    "img_size": 224, "batch_size": 32, "num_workers": 2, "vgg_feat_dim": 512, "freeze_vgg": True,
    "latent_dim": 256, "vae_hidden": [512, 384, 256], "kl_weight": 1e-3, "vit_patch_dim": 32, "vit_depth": 6,
    "vit_heads": 8, "vit_mlp_dim": 512, "vit_dropout": 0.1, "epochs_vae": 50, "epochs_vit": 30, "lr_vae": 1e-4,
    "lr_vit": 5e-5, "weight_decay": 1e-5, "patience": 10, "threshold": 0.5, "normal_class": "Normal",
    "anomaly_classes": ["COVID", "Lung_Opacity", "Viral Pneumonia"],
}


# -- the checkpoint as the reference's notebook writes it (Cell 18) ----------------------------------------
def _reference_checkpoint(path, seed=3, threshold=np.float64(0.3483), auroc=np.float64(0.7177),
                          drop=()):
    import torch

    torch.manual_seed(seed)
    vae = X.FeatureVAE(512, [512, 384, 256], 256)
    vit = X.LatentViT(256, 32, 6, 8, 512, 0.1)
    ck = {
        "vae_state": vae.state_dict(),
        "vit_state": vit.state_dict(),
        "config": dict(REFERENCE_CFG),
        "auroc": auroc,  # sklearn roc_auc_score: a numpy float64
        "threshold": threshold,  # an element of roc_curve's thresholds: a numpy float
        "vae_history": {"train_loss": [np.float64(0.91), np.float64(0.52), 0.41],
                        "val_loss": [np.float64(0.95), np.float64(0.60), 0.47]},
        "vit_history": {"train_loss": [0.69, np.float32(0.55)], "val_loss": [0.70, np.float32(0.58)],
                        "val_auroc": [np.float64(0.61), np.float64(0.66)]},
        "recon_mean": 0.0123, "recon_std": 0.0041, "kl_mean": 0.0871, "kl_std": 0.0213,  # .item(): floats
    }
    for k in drop:
        ck.pop(k)
    torch.save(ck, str(path))
    return path


def _as_numpy1_pickle(src, dst):
    """The same file as numpy 1.x pickles it (``numpy.core.multiarray.scalar``): Kaggle images of
    2024-25 still shipped numpy 1.26."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            zout.writestr(info.filename, data)
    return dst


def test_reference_checkpoint_loads_without_complaint_and_keeps_its_record(tmp_path, weight_files):
    p = _reference_checkpoint(tmp_path / "pulmonary_anomaly_detector.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning either
        model = X.build_model(weight_files[0], p)
    info = model.info
    assert info["auroc"] == pytest.approx(0.7177)
    assert info["threshold"] == pytest.approx(0.3483) and info["threshold_source"] == "checkpoint"
    assert info["vae_epochs"] == 3 and info["vit_epochs"] == 2
    assert model.calibration.threshold == pytest.approx(0.3483)
    assert model.calibration.recon_std == pytest.approx(0.0041)
    assert model.config["vae_hidden"] == [512, 384, 256]


def test_numpy1_pickled_checkpoint_loads(tmp_path, weight_files):
    p = _as_numpy1_pickle(_reference_checkpoint(tmp_path / "a.pth"), tmp_path / "np1.pth")
    model = X.build_model(weight_files[0], p)
    assert model.info["auroc"] == pytest.approx(0.7177)
    assert model.calibration.threshold == pytest.approx(0.3483)


def test_missing_threshold_is_the_references_default(tmp_path, weight_files):
    p = _reference_checkpoint(tmp_path / "nothr.pth", drop=("threshold", "auroc", "vae_history", "vit_history"))
    model = X.build_model(weight_files[0], p)
    assert model.calibration.threshold == 0.5  # float(ckpt.get("threshold", 0.5))
    assert model.info["threshold_source"].startswith("reference default")
    assert model.info["auroc"] is None


def test_still_refuses_code_in_a_checkpoint(tmp_path, weight_files):
    import datetime

    import torch

    torch.save({"vae_state": {}, "vit_state": {}, "auroc": datetime.date(2020, 1, 1)}, tmp_path / "evil.pth")
    with pytest.raises(X.CheckpointError, match="weights_only"):
        X.build_model(weight_files[0], tmp_path / "evil.pth")


# -- the input: torchvision Resize((224, 224)) on a PIL RGB image --------------------------------------------
def _triangle_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) resampling matrix of a triangle (bilinear) filter whose support widens with the
    reduction factor (antialiasing), pixel centres at i + 0.5, weights normalised per output."""
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    W = np.zeros((n_out, n_in))
    for o in range(n_out):
        centre = (o + 0.5) * scale
        lo = max(int(centre - fscale + 0.5), 0)
        hi = min(int(centre + fscale + 0.5), n_in)
        i = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((i + 0.5 - centre) / fscale), 0.0, None)
        W[o, lo:hi] = w / w.sum()
    return W


def _oracle_resize(rgb8: np.ndarray, size: int = 224) -> np.ndarray:
    """Horizontal pass, round to 8 bits, vertical pass, round: the reference's 224 x 224 RGB."""
    h, w = rgb8.shape[:2]
    a = rgb8.astype(np.float64)
    a = np.clip(np.rint(np.einsum("ow,hwc->hoc", _triangle_weights(w, size), a)), 0, 255)
    a = np.clip(np.rint(np.einsum("oh,hwc->owc", _triangle_weights(h, size), a)), 0, 255)
    return a.astype(np.uint8)


def _oracle_input(rgb8: np.ndarray) -> np.ndarray:
    x = _oracle_resize(rgb8) / 255.0  # ToTensor
    x = (x - IMAGENET_MEAN) / IMAGENET_STD  # Normalize
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def _radiograph_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = 120 + 60 * np.sin(xx / 7.0) * np.cos(yy / 11.0) + rng.normal(0, 25, (h, w))
    img[h // 4: h // 2, w // 5: w // 2] += 70  # an edge a Lanczos kernel would ring on
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(517, 431), (1024, 1024), (150, 300), (224, 224)])
def test_resize_is_the_references_bilinear_on_rgb(h, w):
    grey = _radiograph_like(h, w)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)  # Image.open(path).convert("RGB") of a grey radiograph
    got = X.resize_for_model(grey)
    assert got.shape == (224, 224, 3) and got.dtype == np.uint8
    want = _oracle_resize(rgb)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.mean(got != want) < 0.01  # fixed-point rounding differs on a handful of pixels at most
    np.testing.assert_allclose(X.preprocess(grey), _oracle_input(rgb), atol=1.01 / 255 / 0.224)


def test_resize_differs_from_the_old_lanczos_on_grey():
    from PIL import Image

    grey = _radiograph_like(517, 431, seed=2)
    lanczos = np.asarray(Image.fromarray(grey, mode="L").resize((224, 224), Image.LANCZOS))
    got = X.resize_for_model(grey)[:, :, 0]
    assert np.abs(got.astype(int) - lanczos.astype(int)).max() > 3  # the change is real, not cosmetic


def test_colour_input_keeps_its_channels():
    rgb = np.stack([_radiograph_like(300, 260, s) for s in (0, 1, 2)], axis=2)
    got = X.resize_for_model(rgb)
    assert np.abs(got.astype(int) - _oracle_resize(rgb).astype(int)).max() <= 1


# -- the score follows the reference's steps ---------------------------------------------------------------
def test_analysis_score_follows_the_reference(tmp_path, weight_files, demo_path):
    import torch

    from inference.pipeline import JobContext
    from inference.registry import Registry
    from inference.xray import pipeline, reader

    p = _reference_checkpoint(tmp_path / "pulmonary_anomaly_detector.pth", seed=4)
    reg = Registry()
    reg.install(weight_files[0], "vgg16-imagenet", unofficial=True)
    reg.install(p, "xray-anomaly", unofficial=True)
    study = reader.read(demo_path)
    r = pipeline.analyse(study, "xray-anomaly", reg, JobContext())
    o = r.outputs

    # independent: the reference's input from the display pixels, the model's raw components, then
    # the fused score and the decision exactly as the reference writes them
    disp = study.data["display"]
    x = torch.from_numpy(_oracle_input(np.repeat(disp[:, :, None], 3, axis=2)))
    model = X.build_model(weight_files[0], p)
    with torch.no_grad():
        _, recon, kl, vit = model(x)
    recon, kl, vit = float(recon), float(kl), float(vit)
    sig = lambda v: 1.0 / (1.0 + math.exp(-v))  # noqa: E731
    score = 0.4 * sig((recon - 0.0123) / 0.0041) + 0.2 * sig((kl - 0.0871) / 0.0213) + 0.4 * vit
    assert o["recon_error"] == pytest.approx(recon, rel=2e-3, abs=1e-6)
    assert o["vit_score"] == pytest.approx(vit, abs=2e-3)
    assert o["anomaly_score"] == pytest.approx(score, abs=2e-3)
    assert o["threshold"] == pytest.approx(0.3483)
    assert o["flagged"] == (o["anomaly_score"] > 0.3483)  # the notebook: score > threshold
    assert o["_reference_auroc"] == pytest.approx(0.7177)
    assert any("AUROC 0.718" in n for n in r.notes)
