"""Frame models for endoscopy: one small interface, three backends.

``FrameModel.detect(frames) -> list[list[Detection]]`` takes RGB uint8 frames and returns, per frame,
what the model saw. Backends:

- ``endo-quality`` (:func:`load_quality_config`): no weights: the frame-selection thresholds in
  ``resources/models/endo-quality.json`` (sha256 pinned in the manifest, so a result names the exact
  thresholds that produced it). Runtime "numpy".
- ``endo-polyp`` (:class:`PolypOnnx`): any polyp segmenter exported to ONNX with the contract in
  ``weights/manifest.toml`` ``[models.endo-polyp]``: input ``image`` float32 [N, 3, S, S] (RGB /255,
  ImageNet mean/std), output ``mask`` float32 [N, 1, h, w] logits. Probability = sigmoid; pixels >=
  ``threshold`` form connected regions; each region >= ``min_area`` of the frame is a detection with
  its box (x0, y0, x1, y1 as fractions of width/height) and confidence = the region's peak
  probability. An optional second output ``score`` [N, 1] (frame-level logit) is used as the
  confidence of the frame when present. Not installed until its weights are.
- ``endo-polyp-lightbox`` (:class:`inference.endo.polyp.PolypSegmenter`): Lightbox's own segmenter,
  bundled and sha256-pinned, in the same ONNX contract (its fixed input size), with an out-of-domain gate and
  masks for the overlay; see :func:`polyp_model`.
- MedGemma-4B-it (:class:`MedGemmaBackend`): optional local vision-language model (Hugging Face
  folder, transformers, CUDA bf16) asked for structured JSON findings. Used only when the folder is
  installed and ``transformers`` is importable; transformers is never imported at module import.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference import paths
from inference.registry import Registry
from inference.endo.quality import QualityConfig

QUALITY_ID = "endo-quality"
POLYP_ID = "endo-polyp"
LIGHTBOX_POLYP_ID = "endo-polyp-lightbox"  # the bundled default: resources/models/polyp_unet.onnx
POLYP_IDS = (POLYP_ID, LIGHTBOX_POLYP_ID)  # a model the user installed on purpose first, else the bundled one
VLM_ID = "endo-medgemma"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class Detection:
    label: str
    confidence: float
    box: list[float] | None = None  # x0, y0, x1, y1 as fractions of the frame
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# -- endo-quality ---------------------------------------------------------------------------------
def load_quality_config(registry: Registry) -> tuple[QualityConfig, str]:
    """The verified thresholds file -> (QualityConfig, its sha256)."""
    st = registry.require(QUALITY_ID)
    raw = json.loads(registry.path_of(st.entry).read_text())
    known = QualityConfig.__dataclass_fields__
    cfg = QualityConfig(**{k: v for k, v in raw.get("thresholds", {}).items() if k in known})
    return cfg, st.sha256 or ""


# -- endo-polyp (ONNX) ----------------------------------------------------------------------------
class PolypOnnx:
    """Polyp segmenter/detector behind the ONNX contract above."""

    model_id = POLYP_ID

    def __init__(self, onnx_path: str | Path, inputs: dict | None = None, outputs: dict | None = None,
                 threads: int | None = None):
        from inference.runtimes import OnnxRuntime

        inputs, outputs = inputs or {}, outputs or {}
        self.runtime = OnnxRuntime(onnx_path, threads=threads)
        self.size = int(inputs.get("size", 352))
        self.mean = np.asarray(inputs.get("mean", IMAGENET_MEAN), np.float32)
        self.std = np.asarray(inputs.get("std", IMAGENET_STD), np.float32)
        self.threshold = float(outputs.get("threshold", 0.5))
        self.min_area = float(outputs.get("min_area", 0.002))
        self.label = str(outputs.get("label", "polyp"))
        self.input_name = self.runtime.input_names[0]
        shape = self.runtime.session.get_inputs()[0].shape  # a model with a fixed size states it: use it
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] == shape[3]:
            self.size = int(shape[2])
        if "mask" not in self.runtime.output_names:
            from inference.registry import WeightsError

            raise WeightsError(f"{Path(onnx_path).name}: the ONNX model has outputs {self.runtime.output_names}; "
                               "the endo-polyp contract needs an output named 'mask' [N, 1, H, W]")

    @classmethod
    def from_registry(cls, registry: Registry, threads: int | None = None) -> "PolypOnnx":
        st = registry.require(POLYP_ID)
        return cls(registry.path_of(st.entry), st.entry.inputs, st.entry.outputs, threads)

    @property
    def device(self) -> str:
        return self.runtime.device

    def preprocess(self, frames: list[np.ndarray]) -> np.ndarray:
        import cv2

        batch = np.empty((len(frames), 3, self.size, self.size), np.float32)
        for i, f in enumerate(frames):
            x = cv2.resize(f, (self.size, self.size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
            batch[i] = ((x - self.mean) / self.std).transpose(2, 0, 1)
        return batch

    def probabilities(self, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        out = self.runtime.run({self.input_name: self.preprocess(frames)})
        prob = 1.0 / (1.0 + np.exp(-out["mask"].astype(np.float32)))
        score = out.get("score")
        if score is not None:
            score = 1.0 / (1.0 + np.exp(-np.asarray(score, np.float32).reshape(len(frames), -1)[:, 0]))
        return prob[:, 0], score

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [d for d, _ in self.detect_with_masks(frames)]

    def detect_with_masks(self, frames: list[np.ndarray]) -> list[tuple[list[Detection], np.ndarray | None]]:
        """Per frame: the detections and the mask of their regions (bool at the model's size, None
        when there is none)."""
        import cv2

        if not frames:
            return []
        probs, scores = self.probabilities(frames)
        out: list[tuple[list[Detection], np.ndarray | None]] = []
        for k, p in enumerate(probs):
            h, w = p.shape
            n, lab, stats, _ = cv2.connectedComponentsWithStats((p >= self.threshold).astype(np.uint8), 8)
            dets, kept = [], []
            for j in range(1, n):
                x, y, bw, bh, area = stats[j]
                if area < self.min_area * h * w:
                    continue
                kept.append(j)
                conf = float(p[lab == j].max())
                if scores is not None:
                    conf = float(scores[k])
                dets.append(Detection(self.label, round(conf, 4),
                                      [round(x / w, 4), round(y / h, 4), round((x + bw) / w, 4), round((y + bh) / h, 4)]))
            dets.sort(key=lambda d: -d.confidence)
            out.append((dets, np.isin(lab, kept) if kept else None))
        return out


def polyp_model(registry: Registry, model_id: str = LIGHTBOX_POLYP_ID, threads: int | None = None,
                stills: bool = False):
    """The frame model of a polyp id, verified by the registry: the bundled Lightbox segmenter (with
    its out-of-domain gate) or a user-installed ``endo-polyp`` ONNX file. ``stills``: the model reads still
    images (one result per image), so it runs the manifest's ``tta_stills`` test-time augmentation; video
    sweeps, live mode and key-frame masks of video findings run the single view they were found with."""
    if model_id == POLYP_ID:
        return PolypOnnx.from_registry(registry, threads)
    from .polyp import TTA_VIEWS, PolypSegmenter

    st = registry.require(model_id)
    o = st.entry.outputs or {}
    tta = str(o.get("tta_stills", "none")) if stills else "none"
    if tta not in TTA_VIEWS:
        from ..registry import WeightsError

        raise WeightsError(f"{model_id}: the manifest's tta_stills {tta!r} is not one of {', '.join(TTA_VIEWS)}")
    return PolypSegmenter(registry.path_of(st.entry), threads=threads, threshold=float(o.get("threshold", 0.5)),
                          min_area=float(o.get("min_area", 0.002)), min_confidence=float(o.get("min_confidence", 0.5)),
                          tta=tta)


def default_polyp_id(registry: Registry) -> str | None:
    """The polyp model the viewer uses: a user-installed ``endo-polyp`` when there is one (installing it
    is the user's choice), else the bundled Lightbox segmenter (the default of a fresh install)."""
    for mid in POLYP_IDS:
        if mid in registry.entries and registry.state(mid).usable:
            return mid
    return None


def make_test_polyp_onnx(path: str | Path, size: int = 352, seed: int = 0, with_score: bool = False,
                         bias: float = -0.5) -> Path:
    """A tiny ONNX model in exactly the endo-polyp contract with seeded random weights (tests, bench).

    image [N,3,S,S] -> Conv3x3(3->8) -> Relu -> Conv3x3(8->1) -> mask [N,1,S,S] (+ score = global mean).
    Its outputs mean nothing: it exercises the loading and decoding code, never a clinical claim.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((1, 8, 3, 3)) * 0.3).astype(np.float32)
    b2 = np.array([bias], np.float32)
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["mask"], pads=[1, 1, 1, 1]),
    ]
    outputs = [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, size, size])]
    if with_score:
        nodes.append(helper.make_node("GlobalAveragePool", ["mask"], ["gap"]))
        nodes.append(helper.make_node("Flatten", ["gap"], ["score"], axis=1))
        outputs.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(
        nodes, "endo_polyp_test",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])], outputs,
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="lightbox-test")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    path.write_bytes(model.SerializeToString())
    return path


# -- MedGemma-4B-it (optional local VLM) ----------------------------------------------------------
VLM_PROMPT = (
    "You are assisting an endoscopist reviewing one frame of a GI endoscopy video. Describe only what "
    "is visible. Do not give a diagnosis. Reply with ONLY a JSON object of this form:\n"
    '{"findings": [{"label": "polyp | bleeding | ulcer | inflammation | normal mucosa | other", '
    '"location": "anatomical location if recognisable, else null", "risk_level": "low | medium | high", '
    '"confidence": 0.0, "box": [x0, y0, x1, y1] or null (fractions of the image), '
    '"suggested_action": "short next step"}]}'
)
REQUIRED_VLM_FILES = ("config.json",)


def medgemma_dir() -> Path:
    env = os.environ.get("LIGHTBOX_MEDGEMMA")
    return Path(env) if env else paths.weights_dir() / "medgemma-4b-it"


@dataclass
class VlmState:
    available: bool
    message: str
    folder: Path


def medgemma_state(folder: str | Path | None = None) -> VlmState:
    """Installed = a Hugging Face model folder (config.json + *.safetensors + processor files) and an
    importable ``transformers``; else a clear 'not installed' message saying how to install it."""
    folder = Path(folder) if folder else medgemma_dir()
    how = (f"MedGemma-4B-it (optional): not installed. Put the Hugging Face folder of google/medgemma-4b-it "
           f"(config.json, *.safetensors, tokenizer and processor files) at {folder} or point "
           "$LIGHTBOX_MEDGEMMA to it, and pip install transformers accelerate. Runs on a CUDA GPU in bf16.")
    if not folder.is_dir() or not all((folder / f).exists() for f in REQUIRED_VLM_FILES) \
            or not any(folder.glob("*.safetensors")):
        return VlmState(False, how, folder)
    if importlib.util.find_spec("transformers") is None:
        return VlmState(False, f"MedGemma-4B-it found at {folder}, but the transformers package is not "
                               "installed (pip install transformers accelerate).", folder)
    return VlmState(True, f"MedGemma-4B-it: local folder {folder} (results are NOT A CLINICAL RESULT: "
                          "the weights' hashes are not pinned by Lightbox)", folder)


def folder_fingerprint(folder: Path) -> str:
    """sha256 over the folder's small files (config, index, tokenizer) and the names + sizes of its
    weight shards: identifies the install without hashing 8 GB on every start."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        h.update(p.relative_to(folder).as_posix().encode())
        if p.stat().st_size < 32 << 20:
            h.update(p.read_bytes())
        else:
            h.update(str(p.stat().st_size).encode())
    return h.hexdigest()


def parse_vlm_json(text: str) -> list[Detection]:
    """The model's reply -> detections. Tolerates code fences and text around the JSON object;
    anything unparseable gives no detections (never an invented one)."""
    m = re.search(r"\{.*\}", text, flags=re.S)
    if not m:
        return []
    try:
        obj = json.loads(m.group(0))
    except ValueError:
        return []
    items = obj.get("findings", []) if isinstance(obj, dict) else []
    out = []
    for it in items if isinstance(items, list) else []:
        if not isinstance(it, dict) or not it.get("label"):
            continue
        try:
            conf = float(it.get("confidence")) if it.get("confidence") is not None else float("nan")
        except (TypeError, ValueError):
            conf = float("nan")
        box = it.get("box")
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            box = None
        extra = {k: it.get(k) for k in ("location", "risk_level", "suggested_action") if it.get(k)}
        note = "; ".join(f"{k.replace('_', ' ')}: {v}" for k, v in extra.items())
        out.append(Detection(str(it["label"])[:80], conf, box, note, extra))
    return out


class MedGemmaBackend:
    """Local MedGemma-4B-it through transformers (imported only here, when used)."""

    model_id = VLM_ID

    def __init__(self, folder: str | Path | None = None, max_new_tokens: int = 256):
        st = medgemma_state(folder)
        if not st.available:
            from inference.registry import WeightsError

            raise WeightsError(st.message)
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        from inference.runtimes import cuda_name

        self.folder = st.folder
        self.fingerprint = folder_fingerprint(st.folder)
        self.torch = torch
        dev = "cuda" if cuda_name() else "cpu"
        dtype = torch.bfloat16 if dev == "cuda" else torch.float32
        # local_files_only: never reach for a hub, even if a network were there
        self.processor = AutoProcessor.from_pretrained(str(st.folder), local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(
            str(st.folder), local_files_only=True, torch_dtype=dtype).to(dev).eval()
        self.device = f"CUDA: {cuda_name()}" if dev == "cuda" else "CPU"
        self.max_new_tokens = max_new_tokens

    def ask(self, frame: np.ndarray) -> str:
        from PIL import Image

        from inference.runtimes import GPU_LOCK

        messages = [{"role": "user", "content": [{"type": "image", "image": Image.fromarray(frame)},
                                                 {"type": "text", "text": VLM_PROMPT}]}]
        inputs = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        inputs = inputs.to(self.model.device, dtype=self.model.dtype)  # pixel values in bf16 on the GPU
        n_in = inputs["input_ids"].shape[-1]
        with GPU_LOCK, self.torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.decode(out[0][n_in:], skip_special_tokens=True)

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        return [parse_vlm_json(self.ask(f)) for f in frames]
