"""Echo: decode speed, preprocessing, EchoNet-Dynamic EF and segmentation time per video (random-weights
checkpoints in the official format: timings only, no clinical numbers), and cine playback."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


PLAY_CODE = r"""
import os, sys, time
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from app.main import create_app, MainWindow
from app.store import Store
from inference.detect import open_study
app = create_app()
w = MainWindow(Store(os.environ["LIGHTBOX_DB"])); w.show()
st = open_study(sys.argv[1]); sid = w.ctx.store.add_study(st); w.show_study(st, sid)
v = w.current_viewer()
t0 = time.perf_counter()  # let the window finish its first paint, as it has long before a reader presses Play
while time.perf_counter() - t0 < 0.5:
    app.processEvents(); time.sleep(0.005)
v.play(); t0 = time.perf_counter()
while time.perf_counter() - t0 < float(sys.argv[2]):
    app.processEvents()
    time.sleep(0.0005)
v.pause()
print(v.shown, v.dropped)
"""


def _ms(t: float) -> float:
    return round(t * 1000.0, 1)


def run():
    from inference.echo import demo as demo
    from inference.detect import open_study
    from inference.echo import playback
    from inference.echo import preprocess as P
    from inference.echo import reference as R
    from inference.runtimes import device_summary

    dev = device_summary()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        path = demo.make(d)
        t0 = time.perf_counter()
        study = open_study(path)
        dt = time.perf_counter() - t0
        n = len(study.data["frames"])
        yield "read demo MP4 (480x360, 150 frames: decode + sector)", n / dt, "frames/s", f"{dt:.2f} s per video"

        frames = study.data["frames"]
        t0 = time.perf_counter()
        box = P.find_sector(frames)
        t1 = time.perf_counter()
        small = P.crop_resize(frames, box)
        P.normalise(small)
        t2 = time.perf_counter()
        yield "sector detection", _ms(t1 - t0), "ms/video", f"box {box.as_list()}"
        yield "crop + resize 112 + normalise", _ms(t2 - t1), "ms/video", f"{n} frames"

        r = playback.simulate(50.0, 10.0, paint_ms=3.0, jitter_ms=2.0)
        yield "playback schedule 50 fps, 10 s (simulated timer)", r["dropped"], "dropped", \
            f"{r['shown']}/{r['due']} frames shown; tick {playback.tick_interval_ms(50, 1)} ms"
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LIGHTBOX_HOME=str(d / "home"),
                   LIGHTBOX_DB=str(d / "home" / "b.sqlite"))
        try:
            out = subprocess.run([sys.executable, "-c", PLAY_CODE, str(path), "3"], env=env, capture_output=True,
                                 text=True, timeout=120, cwd=str(Path(__file__).resolve().parents[2]))
            shown, dropped = (int(x) for x in out.stdout.strip().splitlines()[-1].split())
            yield "playback in the viewer 50 fps, 3 s (offscreen Qt)", dropped, "dropped", f"{shown} frames painted"
        except Exception as e:  # no Qt here: the simulated figure stands
            yield "playback in the viewer (offscreen Qt)", -1, "", f"not measured: {type(e).__name__}"

        # models: seeded random weights saved in the official format, loaded through the real path
        import torch

        from inference.echo import echonet as E
        from inference.pipeline import JobContext
        from inference.echo import pipeline as pipe
        from inference.registry import Registry

        torch.manual_seed(0)
        ck = d / "ck"
        ck.mkdir()
        E.save_official_format(E.build_ef_model(), ck / "ef.pt")
        E.save_official_format(E.build_seg_model(), ck / "seg.pt")
        reg = Registry(weights=d / "weights")
        reg.install(ck / "ef.pt", "echonet-ef", unofficial=True)
        reg.install(ck / "seg.pt", "echonet-seg", unofficial=True)
        study.data["view_gate"] = {"decision": "A4C", "by": "bench", "at": "-"}
        for label in ("torch", "onnxruntime"):
            pipe.clear_cache()
            if label == "onnxruntime":
                t0 = time.perf_counter()
                pipe.export_onnx(reg, "echonet-ef")
                pipe.export_onnx(reg, "echonet-seg")
                yield "ONNX export (both models)", time.perf_counter() - t0, "s", "one-off"
            seg_rt, _ = pipe.runtime_for(reg, "echonet-seg")
            ef_rt, _ = pipe.runtime_for(reg, "echonet-ef")
            mean, std = P.MEAN, P.STD
            seg_rt.run({"frames": P.frame_batch(small[:2], mean, std)})  # warm-up
            t0 = time.perf_counter()
            pipe.segment(seg_rt, small, mean, std)
            ts = time.perf_counter() - t0
            yield f"LV segmentation, {label}", ts, "s/video", f"{n} frames, {_ms(ts / n)} ms/frame · {ef_rt.device}"
            norm = P.normalise(small, mean, std)
            clip = P.make_clip(norm, R.clip_frames(0))
            ef_rt.run({"clip": clip})  # warm-up
            t0 = time.perf_counter()
            for _ in range(2):
                ef_rt.run({"clip": clip})
            tc = (time.perf_counter() - t0) / 2
            all_clips = len(R.all_starts(n))
            yield f"EF one 32-frame clip, {label}", tc, "s", f"reference all-clips: {all_clips} clips ≈ {tc * all_clips:.0f} s"
            os.environ["LIGHTBOX_ECHO_MAX_CLIPS"] = str(pipe.DEFAULT_MAX_CLIPS)
            try:
                t0 = time.perf_counter()
                res = pipe.analyse(study, "echonet-ef", reg, JobContext())
                tw = time.perf_counter() - t0
            finally:
                os.environ.pop("LIGHTBOX_ECHO_MAX_CLIPS", None)
            seg_part = ts
            yield f"whole analysis (seg + {res.outputs[pipe.K_CLIPS]} clips), {label}", tw, "s/video", \
                f"EF part ≈ {max(0.0, tw - seg_part):.1f} s (target < 10 s) · {dev}"
        pipe.clear_cache()
