"""Batch throughput: ECG2AF studies per minute through ``lightbox batch`` (the code the app runs).

Local engine with 1 and 2 worker processes, then Ray on a local cluster (``ray.init(num_cpus=2)``), on
a generated folder of synthetic ECGs, with a random-weights checkpoint in the official .h5 format
exported to ONNX (the runtime the pipeline prefers). The ratio between engines is the overhead of each.
Target: >= 1000 ECGs/min on 2 CPU cores.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

N = 400


def run():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from inference.batch import run_batch
    from inference.ecg.demo import synth_ecg
    from inference.ecg import ecg2af as E
    from inference.ecg.reader import write_ml4h_hd5
    from inference.registry import Registry

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        weights = d / "weights"
        folder = d / "ecgs"
        folder.mkdir()
        for i in range(N):
            write_ml4h_hd5(folder / f"e{i:04d}.hd5", synth_ecg(hr=50 + (i % 60), seed=i))
        ckpt = d / E.OFFICIAL_FILE
        E.save_official_format(E.build_model(seed=0), ckpt)
        reg = Registry(weights=weights)
        reg.install(ckpt, "ecg2af", unofficial=True)
        from inference.ecg.pipeline import export_onnx

        export_onnx(reg, "ecg2af")
        rates = {}
        for label, kw in (("local, 1 worker", dict(workers=1)), ("local, 2 workers", dict(workers=2))):
            s = run_batch("ecg2af", [str(folder)], d / f"{label[:7]}{kw['workers']}.csv", store=False,
                          progress=False, weights=str(weights), **kw)
            rates[label] = s.per_minute
            yield f"ECG2AF batch, {label}", s.per_minute, "ECGs/min", f"{N} ECGs, ONNX, target >= 1000"
        try:
            import ray  # noqa: F401
        except ImportError:
            yield "ECG2AF batch, Ray", float("nan"), "ECGs/min", "Ray not installed"
            return
        s = run_batch("ecg2af", [str(folder)], d / "ray.csv", engine="ray", workers=2, store=False,
                      progress=False, weights=str(weights))
        yield "ECG2AF batch, Ray local cluster, 2 actors", s.per_minute, "ECGs/min", \
            f"{s.per_minute / rates['local, 2 workers']:.2f} x local (includes cluster start)"
