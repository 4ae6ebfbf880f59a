"""Heart sounds: decode + segmentation + features + inference per 10-s recording; training throughput."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def run():
    from inference.pcg.features import FeatureSpec
    from inference.pcg.synth import heart_sound, write_wav
    from inference.pipeline import JobContext
    from inference.pcg.pipeline import analyse
    from inference.pcg.reader import read
    from inference.registry import Registry

    reg = Registry()
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "ten_s.wav"
        s = heart_sound(duration_s=10, bpm=75, sr=4000, murmur=0.4, seed=1)
        write_wav(p, s["audio"], s["sr"])
        st = reg.state("heart-sound")
        if st.usable:
            analyse(read(p), "heart-sound", reg, JobContext())  # warm-up: session creation
            times, t_read = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                study = read(p)
                t1 = time.perf_counter()
                analyse(study, "heart-sound", reg, JobContext())
                times.append(time.perf_counter() - t0)
                t_read.append(t1 - t0)
            yield "decode 10 s WAV (4 kHz)", float(np.median(t_read)), "s", ""
            yield "decode + S1/S2 + log-mel + CNN, 10 s recording", float(np.median(times)), "s", "target < 0.5 s"
        else:
            yield "heart-sound model", 0.0, "", st.message

        # training throughput on generated data (the same code path as lightbox pcg-train)
        data = Path(d) / "train"
        for cls, murmur in (("normal", 0.0), ("murmur", 0.7)):
            for i in range(20):
                h = heart_sound(duration_s=8, bpm=60 + 2 * i, sr=2000, murmur=murmur, seed=i + 100 * (murmur > 0))
                write_wav(data / cls / f"{i}.wav", h["audio"], h["sr"])
        from inference.pcg.dataset import scan
        from inference.pcg.train import train

        import inspect

        defaults = {k: v.default for k, v in inspect.signature(train).parameters.items()}
        events = []
        t0 = time.perf_counter()
        train(scan(data), Path(d) / "out", "bench", epochs=2, patience=2, emit=events.append, cache=False)
        total = time.perf_counter() - t0
        ep = [e for e in events if e["event"] == "epoch"]
        wps = float(np.mean([e["windows_per_s"] for e in ep]))
        yield (f"training throughput (4-s windows, width {defaults['width']}, {defaults['threads']} thread)", wps,
               "windows/s", "train step incl. augmentation")
        per_epoch_200 = 200 * 0.7 * defaults["windows_per_record"] / wps
        yield f"est. epoch on 200 recordings ({defaults['windows_per_record']} crops each)", float(per_epoch_200), "s", \
            "+ validation"
        yield "40 generated 8-s files: features + 2 epochs + export + test", float(total), "s", ""
        spec = FeatureSpec()
        yield "model input", float(spec.window_frames), "frames", f"{spec.n_mels} mels x {spec.window_s:g} s"
