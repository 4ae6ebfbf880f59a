"""Endoscopy: decode, frame-quality and model throughput; playback with live analysis attached.

Measured on the synthetic demo (256 x 256 MPEG-4) and on a 720p re-encode of it (the size of a
typical HD endoscopy stream after the usual 1280 x 720 capture). Model figures: the bundled Lightbox
polyp segmenter (``endo-polyp-lightbox``, its own input size, one thread) alone, and a seeded random ONNX model in
the user-installable endo-polyp contract (352 px input; it times the runtime, not a clinical network;
a PraNet/Polyp-PVT class segmenter is 10-50x heavier per frame). Live: playback at the file's 25 fps
for 4 s on the 720p stream with the bundled model attached on another thread.
Targets: issue 8: review >= 25 fps on a GPU; issue 16: live analysis of every 2nd frame or better at
25 fps on 2 CPU cores (>= 12.5 analysed frames/s), every frame on a GPU.
"""
from __future__ import annotations

import collections
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _fps(n: int, secs: float) -> float:
    return n / secs if secs > 0 else float("inf")


def run():
    import cv2

    from inference.endo import demo as demo
    from inference.endo.models import PolypOnnx, make_test_polyp_onnx
    from inference.endo.playback import LatestSlot, Prefetcher, live_loop
    from inference.endo.quality import FrameSelector
    from inference.pipeline import JobContext
    from inference.endo.reader import read

    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        small = demo.make(d)
        hd = demo.write_video(d / "hd.mp4", [np.pad(cv2.resize(f, (960, 720), interpolation=cv2.INTER_LINEAR),
                                                    ((0, 0), (160, 160), (0, 0))) for f in demo.frames()[:90]])

        for label, path in (("256x256", small), ("1280x720", hd)):
            src = read(path).data["source"]
            t0 = time.perf_counter()
            n = sum(1 for _ in src.iter_frames())
            yield f"decode {label} (sequential)", _fps(n, time.perf_counter() - t0), "fps", f"{n} frames, OpenCV/FFmpeg"
            rnd = np.random.default_rng(0).integers(0, len(src), 30)
            s2 = src.reopen()
            t0 = time.perf_counter()
            for i in rnd:
                s2.frame(int(i))
            yield f"random seek + decode {label}", _fps(len(rnd), time.perf_counter() - t0), "fps", "frame-accurate seek"
            s2.close()
            frames = [f for _, f in src.iter_frames(0, 60)]
            sel = FrameSelector(fps=src.fps)
            t0 = time.perf_counter()
            for i, f in enumerate(frames):
                sel.measure(i, f)
            yield f"frame quality {label}", _fps(len(frames), time.perf_counter() - t0), "fps", "blur+exposure+glare+dHash, 1 thread"
            src.close()

        from inference.endo.models import LIGHTBOX_POLYP_ID, polyp_model
        from inference.registry import Registry

        frames = [f for _, f in read(small).data["source"].iter_frames(0, 64)]
        reg = Registry()
        lb = polyp_model(reg, LIGHTBOX_POLYP_ID, threads=1) if reg.state(LIGHTBOX_POLYP_ID).usable else None
        if lb is not None:
            lb.analyse(frames[:2])
            t0 = time.perf_counter()
            for f in frames:
                lb.analyse([f])
            yield f"Lightbox polyp model alone, batch 1 ({lb.size}x{lb.size})", _fps(len(frames), time.perf_counter() - t0), \
                "fps", f"gate + ONNX + decoding, 1 thread, {lb.device}"
            hd_frames = [f for _, f in read(hd).data["source"].iter_frames(0, 32)]
            t0 = time.perf_counter()
            for f in hd_frames:
                lb.analyse([f])
            yield "Lightbox polyp model alone, 1280x720 frames", _fps(len(hd_frames), time.perf_counter() - t0), \
                "fps", "resize from 720p included"
            still = polyp_model(reg, LIGHTBOX_POLYP_ID, threads=1, stills=True)
            if still.tta != "none":  # a still image: every view of the manifest's test-time augmentation
                still.analyse(hd_frames[:1])
                t0 = time.perf_counter()
                for f in hd_frames[:8]:
                    still.analyse([f])
                yield f"Lightbox polyp model, 1280x720 still image ({still.tta} test-time augmentation)", \
                    round((time.perf_counter() - t0) / 8, 3), "s", "per image, 1 thread (stills only; live mode runs one view)"
        model = PolypOnnx(make_test_polyp_onnx(d / "p.onnx", size=352))
        model.detect(frames[:8])  # warm-up
        for bs in (1, 8):
            t0 = time.perf_counter()
            k = 0
            for i in range(0, 64, bs):
                model.detect(frames[i:i + bs])
                k += len(frames[i:i + bs])
            yield f"ONNX model, batch {bs} (352x352)", _fps(k, time.perf_counter() - t0), "fps", \
                f"random test model on {model.device}"

        # playback at 25 fps for 4 s with live analysis (quality + model) on another thread: frames the
        # display could not show on time vs frames dropped from the analysis queue
        live_model = lb if lb is not None else model
        src = read(hd).data["source"]
        pf = Prefetcher(src)
        slot, out = LatestSlot(), collections.deque()
        ctx = JobContext()
        from inference.endo.playback import make_live_analyser
        from inference.registry import default_registry

        # the viewer's own live analyser: quality, scene cut, model, mask
        analyse_frame, _ = make_live_analyser(default_registry(), src.fps, model=live_model)

        th = threading.Thread(target=live_loop, args=(ctx, slot, src, analyse_frame, out), daemon=True)
        th.start()
        fps, n_show = src.fps, min(len(src), int(src.fps * 4))
        late = 0
        t0 = time.perf_counter()
        for i in range(n_show):
            due = t0 + i / fps
            while time.perf_counter() < due:
                time.sleep(0.001)
            f = pf.get(i)
            if f is None:
                f = src.frame(i)
            if time.perf_counter() - due > 1.0 / fps:
                late += 1
            slot.put(i)
        ctx.cancel()
        th.join(2)
        pf.close()
        yield f"playback 25 fps, {n_show / fps:.1f} s: display frames late", late, "frames", f"of {n_show}; live analysis attached"
        name = "Lightbox polyp model" if lb is not None else "random test model"
        yield "live analysis: frames analysed", slot.taken, "frames", \
            f"of {n_show} shown (1280x720, {name}); dropped from analysis queue: {slot.dropped}"
        yield "live analysis rate at 25 fps", slot.taken / (n_show / fps), "fps", \
            "target >= 12.5 (every 2nd frame) on 2 CPU cores"
