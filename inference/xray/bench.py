"""Chest X-ray timings.

Lightbox's pneumonia classifier (the default, bundled): one real radiograph end to end (decode, preprocess,
model, heatmap) — target < 0.5 s on the 2-core CPU — and batch throughput in images per minute.

MedSight (installable): read the demo DICOM, preprocess, model forward, Grad-CAM (forward + backward),
whole pipeline, and the ONNX export under onnxruntime. Target: analysis < 1 s on the 2-core CPU.

Uses the installed weights when both are usable, else seeded random weights in the official layouts
(timing does not depend on the weight values; the note says which was used).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from inference.bench import best_of as _best


def run():
    yield from run_pneumonia()
    yield from run_medsight()


def run_pneumonia(n_batch: int = 64):
    import numpy as np

    from inference.pipeline import JobContext
    from inference.registry import Registry
    from inference.xray import pipeline as pipe
    from inference.xray.demo import make
    from inference.xray.reader import read

    reg = Registry()
    if not reg.state(pipe.PNEUMONIA).usable:
        yield "xray-pneumonia", float("nan"), "s", "skipped: the bundled model is not usable"
        return
    with tempfile.TemporaryDirectory() as tmp:
        demo = make(Path(tmp))
        ctx = JobContext()
        t0 = time.perf_counter()
        model, rt, _ = pipe.load_pneumonia(reg)
        yield "pneumonia model: load + verify (first time)", time.perf_counter() - t0, "s", rt.device
        st = read(demo)
        best, med = _best(lambda: model.preprocess(st.data["display"]))
        yield (f"pneumonia: preprocess (grey, border crop, INTER_AREA {model.size}²)", best * 1000, "ms",
               f"median {med * 1000:.1f} ms")

        def one():
            pipe.analyse_pneumonia(read(demo), pipe.PNEUMONIA, reg, ctx)

        one()
        best, med = _best(one, n=7)
        yield ("pneumonia: one radiograph end to end (decode, preprocess, model, heatmap)", best, "s",
               f"median {med:.3f} s · target < 0.5 s on 2 CPU cores")
        small = np.repeat(model.preprocess(st.data["display"])[0][None], n_batch, axis=0)
        model.run_batch(small[:8])
        t0 = time.perf_counter()
        model.run_batch(small)
        dt = time.perf_counter() - t0
        yield f"pneumonia: batch model throughput ({n_batch} preprocessed images)", n_batch / dt * 60, "images/min", \
            f"{dt / n_batch * 1000:.1f} ms/image"
        t0 = time.perf_counter()
        n = 16
        for _ in range(n):
            one()
        dt = time.perf_counter() - t0
        yield "pneumonia: files end to end, one after another", n / dt * 60, "images/min", "decode + model + heatmap"


def run_medsight():
    import torch

    from inference.xray.demo import make_dicom as make
    from inference.xray.medsight import grad_cam
    from inference.pipeline import JobContext
    from inference.xray import pipeline as pipe
    from inference.xray.reader import read
    from inference.registry import Registry
    from inference.runtimes import cuda_name
    from inference.xray import imaging

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reg = Registry()
        weights_note = "installed weights"
        if not (reg.state("xray-anomaly").usable and reg.state("vgg16-imagenet").usable):
            from inference.xray.synthetic_weights import install_synthetic

            reg = Registry(weights=tmp / "weights")
            install_synthetic(reg, tmp / "src")
            weights_note = "seeded random weights (official layouts)"
        demo = make(tmp / "demo")
        best, med = _best(lambda: read(demo))
        yield "read demo DICOM (512², 16-bit)", best * 1000, "ms", f"median {med * 1000:.1f} ms"
        st = read(demo)
        best, med = _best(lambda: imaging.preprocess(st.data["display"]))
        yield "preprocess (reference Resize 224 bilinear RGB, ImageNet norm)", best * 1000, "ms", f"median {med * 1000:.1f} ms"
        t0 = time.perf_counter()
        model, _, _ = pipe.load_model(reg)
        yield "load + verify weights (first time)", time.perf_counter() - t0, "s", weights_note
        x = torch.from_numpy(imaging.preprocess(st.data["display"])).contiguous(memory_format=torch.channels_last)
        model.to("cpu")

        def fwd():
            with torch.inference_mode():
                model(x)

        fwd()
        best, med = _best(fwd)
        yield f"forward VGG16→VAE→ViT (CPU, {torch.get_num_threads()} threads)", best, "s", f"median {med:.3f} s"
        grad_cam(model, x)
        best, med = _best(lambda: grad_cam(model, x))
        yield "forward + Grad-CAM backward (CPU)", best, "s", f"median {med:.3f} s"
        ctx = JobContext()
        pipe.analyse(st, "xray-anomaly", reg, ctx)
        best, med = _best(lambda: pipe.analyse(st, "xray-anomaly", reg, ctx), n=3)
        yield "whole analysis incl. heatmap", best, "s", f"median {med:.3f} s · target < 1 s on CPU"
        try:
            import onnxruntime as ort

            path = pipe.export_onnx(reg)
            sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            xn = imaging.preprocess(st.data["display"])
            sess.run(None, {"image": xn})
            best, med = _best(lambda: sess.run(None, {"image": xn}))
            yield "onnxruntime forward (CPU, no Grad-CAM)", best, "s", f"median {med:.3f} s"
        except Exception as e:  # pragma: no cover - reported, not fatal
            yield "onnxruntime forward", float("nan"), "s", f"skipped: {type(e).__name__}: {e}"
        if cuda_name():
            dev = torch.device("cuda")
            model.to(dev)
            xg = x.to(dev)
            grad_cam(model, xg)
            torch.cuda.synchronize()

            def gpu():
                grad_cam(model, xg)
                torch.cuda.synchronize()

            best, med = _best(gpu, n=10)
            yield f"forward + Grad-CAM ({cuda_name()})", best * 1000, "ms", f"median {med * 1000:.1f} ms"
            model.to("cpu")
