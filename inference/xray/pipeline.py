"""Chest X-ray pipelines.

``xray-pneumonia`` (the default, bundled): Lightbox's own pneumonia classifier trained on the Kermany
paediatric set (``inference.xray.pneumonia``): display image -> edge bands cropped -> 192 px -> ONNX
(EfficientNet-Lite0) -> P(pneumonia), threshold, label, class-activation heatmap (stride-16 logit map), and
an out-of-distribution gate that withholds the label (and the heatmap) for images that are not like its
training radiographs (rotated, inverted, not a chest film, unusual statistics or features). Its CAM grid
is stored as ``_gradcam_grid`` too, so
the viewer, the PDF and a reopened study draw it exactly like the MedSight heatmap.

``xray-anomaly`` (installable: MedSight): display image -> VGG16 -> VAE -> ViT -> fused anomaly score + Grad-CAM.
One forward + one backward pass: the forward gives the three components and the fused score, the
backward gives the Grad-CAM of the fused score on VGG16's last conv block (14 x 14 for a 224 input),
which is upsampled to the image. The Grad-CAM grid is kept in the stored outputs (``_gradcam_grid``)
so a reopened study shows the same heatmap without re-running the model.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from inference import site_points
from inference.registry import Registry, WeightsError
from inference.results import Result, jsonable
from inference.runtimes import GPU_LOCK, cpu_label, cuda_name
from inference.study import Study
from inference.xray import imaging

MODELS = ("xray-pneumonia", "xray-anomaly")  # default first
PNEUMONIA = "xray-pneumonia"
BACKBONE = "vgg16-imagenet"
DEFAULT_BANDS = [[0.0, "low"], [0.348, "intermediate"], [0.70, "high"]]

_cache: dict[tuple[str, str], object] = {}
_cache_lock = threading.Lock()


def risk_band(score: float, bands=None) -> str:
    bands = sorted(bands or DEFAULT_BANDS, key=lambda b: float(b[0]))
    name = bands[0][1]
    for lo, label in bands:
        if score >= float(lo):
            name = label
    return name


def _states(registry: Registry, model_id: str):
    if model_id not in MODELS or model_id == PNEUMONIA:
        raise WeightsError(f"unknown chest X-ray model {model_id!r}; known: {', '.join(MODELS)}")
    heads = registry.require(model_id)
    try:
        backbone = registry.require(BACKBONE)
    except WeightsError as e:
        raise WeightsError(f"{heads.entry.title} needs the VGG16 ImageNet backbone, which is not usable: {e}") from None
    return heads, backbone


def load_model(registry: Registry, model_id: str = "xray-anomaly"):
    """The verified model (cached per weights pair) and the two model states."""
    import torch

    from inference.xray.medsight import CheckpointError, build_model

    heads, backbone = _states(registry, model_id)
    key = (backbone.sha256, heads.sha256)
    with _cache_lock:
        model = _cache.get(key)
        if model is None:
            try:
                model = build_model(registry.path_of(backbone.entry), registry.path_of(heads.entry))
            except CheckpointError as e:
                raise WeightsError(str(e)) from None
            # NHWC convolutions: ~30 % faster VGG16 on CPU (oneDNN), numerically identical
            model = model.to(memory_format=torch.channels_last)
            _cache.clear()  # one model in memory at a time
            _cache[key] = model
    return model, heads, backbone


def _device():
    import torch

    return torch.device("cuda" if cuda_name() else "cpu")


# -- xray-pneumonia (Lightbox, bundled ONNX) ----------------------------------------------------------
def load_pneumonia(registry: Registry, model_id: str = PNEUMONIA):
    """(PneumoniaModel, runtime, model state), cached per file hash."""
    from inference.runtimes import OnnxRuntime
    from inference.xray.pneumonia import PneumoniaModel

    st = registry.require(model_id)
    path = registry.path_of(st.entry)
    key = (str(path), st.sha256 or "")
    with _cache_lock:
        hit = _cache.get(key)
        if hit is None:
            rt = OnnxRuntime(path)
            try:
                hit = (PneumoniaModel(path, session=rt.session), rt)
            except ValueError as e:
                raise WeightsError(str(e)) from None
            _cache[key] = hit
    return hit[0], hit[1], st


HEAT_SCALE_MEANING = ("0 (no colour) where the local evidence is at or below the decision threshold, 1 at the "
                      "typical strength of the evidence on the validation pneumonia films; not relative to "
                      "this film's own peak, so a normal film stays cool")


HOT = 0.25  # a fixed-scale heatmap region counts as hot from a quarter of the typical pneumonia evidence


def heat_is_fixed(result: Result | None) -> bool:
    """The result's heatmap is on the pneumonia model's fixed scale (not relative to its own peak)."""
    return bool(result is not None and result.outputs.get("_heat_scale"))


def analyse_pneumonia(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    from inference.xray.pneumonia import OUTSIDE

    ctx.progress(0.05, "loading model")
    t0 = time.perf_counter()
    model, rt, st = load_pneumonia(registry, model_id)
    display = study.data.get("display")
    if display is None:
        raise ValueError("the study has no display image")
    md = study.metadata
    colour = any("colour image" in n for n in (study.notes or []))
    hint = str(md.get("dicom_modality") or "")
    site, site_note = site_points.current(model_id, st.sha256 or "")
    thr = site.threshold if site is not None else model.threshold
    thr_source = site.describe() if site is not None else \
        f"the model's own, chosen on its validation films: {model.spec.get('threshold_rule') or 'see the model card'}"
    ctx.progress(0.3, f"preprocessing (grey, {model.size} px)")
    t_inf = time.perf_counter()
    r = model.analyse(display, colour=colour, modality_hint=hint, threshold=None if site is None else thr)
    infer_s = time.perf_counter() - t_inf
    ctx.progress(0.85, "heatmap")
    ok = r["in_distribution"]
    cam = np.maximum(np.asarray(r["cam"], np.float64), 0)
    peak = float(cam.max())
    box = [int(v) for v in r.get("box") or (0, display.shape[0], 0, display.shape[1])]
    notes = []
    outputs = {
        "finding": r["label"] if ok else "not assessed",
        "p_pneumonia": round(r["probability"], 4) if ok else None,
        "threshold": round(thr, 4),
        "threshold_source": thr_source,
        "model_threshold": round(model.threshold, 4),
        "label": {"pneumonia": "PNEUMONIA", "normal": "normal"}.get(r["label"], OUTSIDE),
        "in_distribution": bool(ok),
        "ood_message": r["ood_message"],
        "ood_scores": r["ood_scores"],
        "population": "paediatric (1-5 y) AP chest radiographs, one centre (Guangzhou); adults are out of distribution",
        "_p_raw": round(r["probability"], 4),
        "_inference_s": infer_s,
        "_gradcam_layer": f"stride-16 logit map ({cam.shape[0]}x{cam.shape[1]}): class activation map of the decision",
        "_weights": {model_id: st.sha256},
    }
    if site is not None:
        outputs["_site_point"] = {"adopted_at": site.adopted_at, "adopted_by": site.adopted_by,
                                  "target_sensitivity": site.target_sensitivity, "n_positive": site.n_positive,
                                  "n_negative": site.n_negative, "evaluation_sha256": site.evaluation_sha256}
    if site_note:
        notes.append(site_note)
    if r.get("bands_cropped"):
        outputs["_analysed_box"] = box  # top, bottom, left, right of the part the model read
        notes.append("uniform bands at the image edges (a frame or padding) were left out of the analysis")
    heat = None
    if ok:
        heat = np.asarray(r["heatmap"], np.float32)
        hot = float(heat.max())
        outputs["_gradcam_grid"] = np.round(np.asarray(r["heat_grid"], np.float64), 4)
        outputs["_heat_scale"] = dict(r["heat_scale"], meaning=HEAT_SCALE_MEANING)
        outputs["_gradcam_peak"] = peak
        outputs["hottest_regions_px"] = [[g["x"], g["y"], g["width"], g["height"]]
                                         for g in (imaging.top_regions(heat, floor=HOT) if hot >= HOT else [])]
        notes.append(f"heatmap: class activation map of the decision (the network's stride-16 logit map, "
                     f"{cam.shape[0]}×{cam.shape[1]}), upsampled to the image, on a fixed scale: "
                     f"{HEAT_SCALE_MEANING}")
        if hot <= 0:
            notes.append("the heatmap is empty: no region of the film is as pneumonia-like as the threshold")
        elif hot < HOT:
            notes.append(f"the heatmap is faint everywhere (peak {hot:.2f} of the typical pneumonia evidence): "
                         f"no hot region")
    else:
        notes.append(f"{OUTSIDE}: {r['ood_reason']}; no pneumonia label and no heatmap are given")
    if colour:
        notes.append("the image was in colour; chest radiographs are greyscale")
    ctx.progress(1.0, "done")
    arrays = {"heatmap": heat, "gradcam": cam.astype(np.float32)} if heat is not None else {}
    return Result(model_id=model_id, weights_sha256=st.sha256 or "", runtime=rt.name, device=rt.device,
                  seconds=time.perf_counter() - t0, outputs=jsonable(outputs), clinical=st.clinical, notes=notes,
                  arrays=arrays)


def analyse(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    if model_id == PNEUMONIA:
        return analyse_pneumonia(study, model_id, registry, ctx)
    return analyse_anomaly(study, model_id, registry, ctx)


def analyse_anomaly(study: Study, model_id: str, registry: Registry, ctx) -> Result:
    import torch

    from inference.xray.medsight import grad_cam

    ctx.progress(0.05, "loading model")
    t0 = time.perf_counter()
    model, heads, backbone = load_model(registry, model_id)
    display = study.data.get("display")
    if display is None:
        raise ValueError("the study has no display image")
    ctx.progress(0.3, "preprocessing")
    from inference.xray.medsight import preprocess

    x = torch.from_numpy(preprocess(display)).contiguous(memory_format=torch.channels_last)
    dev = _device()
    ctx.progress(0.45, "VGG16 → VAE → ViT + Grad-CAM")
    t_inf = time.perf_counter()
    if dev.type == "cuda":
        with GPU_LOCK:
            model.to(dev)
            cam, outs = grad_cam(model, x.to(dev))
        device = f"CUDA: {cuda_name()}"
    else:
        model.to(dev)
        cam, outs = grad_cam(model, x)
        device = cpu_label()
    infer_s = time.perf_counter() - t_inf
    ctx.progress(0.85, "heatmap")
    entry = heads.entry
    bands = entry.outputs.get("risk_bands") or DEFAULT_BANDS
    thr = float(model.calibration.threshold)
    score = float(outs["fused"])
    comp = model.normalised_components(outs["recon_error"], outs["kl_divergence"], outs["vit_score"])
    peak = float(cam.max())
    grid = (cam / peak) if peak > 0 else cam
    heat = imaging.upsample_cam(cam, display.shape[:2])
    regions = imaging.top_regions(heat) if peak > 0 else []
    flagged = score > thr  # the reference's decision: score > threshold
    outputs = {
        "anomaly_score": score,
        "risk_band": risk_band(score, bands),
        "flagged": bool(flagged),
        "threshold": thr,
        "recon_component": comp["recon_sigma"],
        "kl_component": comp["kl_sigma"],
        "vit_score": outs["vit_score"],
        "recon_error": outs["recon_error"],
        "kl_divergence": outs["kl_divergence"],
        "contributions": {"reconstruction (0.4)": comp["recon_contribution"],
                          "KL (0.2)": comp["kl_contribution"], "ViT (0.4)": comp["vit_contribution"]},
        "hottest_regions_px": [[r["x"], r["y"], r["width"], r["height"]] for r in regions],
        "_calibration": model.calibration.as_dict(),
        "_threshold_source": model.info.get("threshold_source", ""),
        "_reference_auroc": model.info.get("auroc"),
        "_fusion_weights": list(model.fusion_weights),
        "_risk_bands": bands,
        "_gradcam_grid": np.round(grid.astype(np.float64), 4),
        "_gradcam_peak": peak,
        "_gradcam_layer": "vgg16.features[29] (conv5_3 + ReLU)",
        "_inference_s": infer_s,
        "_weights": {"xray-anomaly": heads.sha256, BACKBONE: backbone.sha256},
    }
    notes = [f"heatmap: Grad-CAM of the fused score on VGG16 conv5_3 ({cam.shape[0]}×{cam.shape[1]}), "
             "upsampled to the image"]
    notes.append(model_info_note(model.info))
    if peak <= 0:
        notes.append("Grad-CAM is zero everywhere: no image region raised the score")
    if not backbone.clinical:
        notes.append("VGG16 backbone weights are not the official torchvision file")
    clinical = heads.clinical and backbone.clinical
    ctx.progress(1.0, "done")
    return Result(
        model_id=model_id,
        weights_sha256=heads.sha256 or "",
        runtime="torch",
        device=device,
        seconds=time.perf_counter() - t0,
        outputs=jsonable(outputs),
        clinical=clinical,
        notes=notes,
        arrays={"heatmap": heat, "gradcam": cam},
    )


def model_info_note(info: dict) -> str:
    """One line on what the checkpoint records about itself (the reference saves its test AUROC)."""
    parts = []
    if info.get("auroc") is not None:
        parts.append(f"checkpoint records test AUROC {info['auroc']:.3f} (the publisher's own held-out test)")
    else:
        parts.append("checkpoint records no test AUROC")
    src = info.get("threshold_source") or ""
    if src and src != "checkpoint":
        parts.append(f"threshold: {src}")
    epochs = [f"{k} {info[f'{k}_epochs']} epochs" for k in ("vae", "vit") if info.get(f"{k}_epochs")]
    if epochs:
        parts.append("trained " + ", ".join(epochs))
    return "MedSight: " + "; ".join(parts)


def heatmap_from_result(result: Result, shape: tuple[int, int]) -> np.ndarray | None:
    """The heatmap at image size: from the result's arrays, else from its stored Grad-CAM grid."""
    heat = result.arrays.get("heatmap") if result.arrays else None
    if heat is not None and heat.shape[:2] == tuple(shape):
        return heat
    grid = result.outputs.get("_gradcam_grid")
    if grid is None:
        return None
    box = result.outputs.get("_analysed_box")
    fixed = heat_is_fixed(result)
    if box or fixed:  # the model read only part of the image (uniform edge bands cropped) / fixed scale
        from inference.xray.pneumonia import heat_on_image

        return heat_on_image(np.asarray(grid, np.float32), shape, tuple(box) if box else None, fixed=fixed)
    return imaging.upsample_cam(np.asarray(grid, np.float32), shape)


def export_onnx(registry: Registry, model_id: str = "xray-anomaly") -> Path:
    """ONNX twin of the verified weights: input ``image`` (N,3,224,224) -> fused, recon_error,
    kl_divergence, vit_score (calibration constants baked in)."""
    import torch

    model, heads, backbone = load_model(registry, model_id)
    out = registry.derived_path(model_id, f"-vgg{backbone.sha256[:8]}.onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").eval()
    dummy = torch.zeros(1, 3, imaging.INPUT_SIZE, imaging.INPUT_SIZE)
    tmp = out.with_suffix(".tmp.onnx")
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["image"],
                          output_names=list(model.output_names),
                          dynamic_axes={"image": {0: "n"}, **{k: {0: "n"} for k in model.output_names}},
                          opset_version=17, dynamo=False)
    tmp.replace(out)
    return out
