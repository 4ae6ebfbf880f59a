"""One small interface over ONNX Runtime, PyTorch and Keras/TensorFlow.

``Runtime.run(inputs) -> outputs`` takes and returns dicts of numpy arrays and reports the
device that ran it. Frameworks are imported only when a runtime of that kind is made, so start-up
stays fast and a missing framework only disables the models that need it.

GPU work is serialised through ``GPU_LOCK`` so two models never fight for device memory.
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Any, Protocol

import numpy as np

GPU_LOCK = threading.RLock()


class Runtime(Protocol):
    name: str  # "onnxruntime" | "torch" | "keras"
    device: str  # human-readable, e.g. "CUDA: NVIDIA H100" / "CPU, 2 threads"
    on_gpu: bool  # the model runs on a CUDA device

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1


def cpu_label() -> str:
    n = cpu_threads()
    return f"CPU, {n} thread{'s' if n != 1 else ''}"


@functools.lru_cache(maxsize=1)
def cuda_name() -> str | None:
    """Name of the first CUDA GPU, or None. Asks torch if it is importable, else nvidia-smi."""
    if os.environ.get("LIGHTBOX_FORCE_CPU"):
        return None
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
        return None
    except Exception:
        return None


def device_summary() -> str:
    name = cuda_name()
    return f"CUDA: {name}" if name else cpu_label()


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    avail = ort.get_available_providers()
    if not os.environ.get("LIGHTBOX_FORCE_CPU") and "CUDAExecutionProvider" in avail:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OnnxRuntime:
    name = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or cpu_threads()
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        src = model if isinstance(model, bytes) else str(model)
        self.session = ort.InferenceSession(src, sess_options=so, providers=_ort_providers())
        used = self.session.get_providers()[0]
        self.on_gpu = used == "CUDAExecutionProvider"
        self.device = f"CUDA: {cuda_name() or 'GPU'}" if self.on_gpu else cpu_label()
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feed = {k: np.ascontiguousarray(v) for k, v in inputs.items()}
        if self.on_gpu:
            with GPU_LOCK:
                outs = self.session.run(self.output_names, feed)
        else:
            outs = self.session.run(self.output_names, feed)
        return dict(zip(self.output_names, outs))


class TorchRuntime:
    """Wraps an ``nn.Module``; ``forward`` receives the inputs in ``input_names`` order."""

    name = "torch"

    def __init__(self, module: Any, input_names: list[str], output_names: list[str],
                 device: str | None = None, dtype: Any = None):
        import torch

        self.torch = torch
        if device is None:
            device = "cuda" if cuda_name() else "cpu"
        self.dev = torch.device(device)
        self.dtype = dtype
        self.module = module.eval().to(self.dev)
        if dtype is not None:
            self.module = self.module.to(dtype)
        self.input_names, self.output_names = input_names, output_names
        self.on_gpu = self.dev.type == "cuda"
        self.device = f"CUDA: {cuda_name()}" if self.on_gpu else cpu_label()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        args = []
        for n in self.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[n])).to(self.dev)
            if self.dtype is not None and t.is_floating_point():
                t = t.to(self.dtype)
            args.append(t)
        lock = GPU_LOCK if self.on_gpu else _NullLock()
        with lock, torch.inference_mode():
            out = self.module(*args)
        if isinstance(out, dict):
            out = [out[k] for k in self.output_names]
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, out)}


class KerasRuntime:
    name = "keras"

    def __init__(self, model: Any):
        self.model = model
        self.input_names = [t.name.split(":")[0] for t in model.inputs]
        self.output_names = list(model.output_names)
        self.on_gpu = _tf_gpu()
        self.device = f"CUDA: {cuda_name()}" if self.on_gpu else cpu_label()

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        xs = [inputs[n] for n in self.input_names] if len(self.input_names) > 1 else inputs[self.input_names[0]]
        outs = self.model(xs, training=False)
        if isinstance(outs, dict):
            return {k: np.asarray(v) for k, v in outs.items()}
        if not isinstance(outs, (list, tuple)):
            outs = [outs]
        return {n: np.asarray(o) for n, o in zip(self.output_names, outs)}


def _tf_gpu() -> bool:
    try:
        from inference.frameworks import import_tensorflow

        tf = import_tensorflow()
        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:
        return False


class _NullLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
