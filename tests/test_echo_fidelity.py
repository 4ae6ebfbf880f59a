"""EchoNet-Dynamic fidelity: Lightbox's echo path against the reference's own procedure (issue 17).

Every check compares Lightbox with an *oracle* written here, in this file, from the reference's
documented steps (github.com/echonet/dynamic: utils/video.py, utils/segmentation.py,
datasets/echo.py, scripts/ConvertDICOMToAVI.ipynb, scripts/beat_by_beat_analysis.R). The oracle
imports nothing from Lightbox's echo code and nothing from the reference (its licence forbids
copying; these are re-statements of its steps):

  clips      float32 (3, F, H, W); ``x - mean[c]`` then ``/ std[c]``; F < 64 -> zero frames appended
             (after normalisation) up to 64; all starts 0 .. F-63; clip = frames s, s+2, ..., s+62;
             whole-video EF = mean of the clip outputs.
  systole    size[f] = #pixels with logit > 0; sorted sizes s, n frames;
             range = s[round(n**0.95)] - s[round(n**0.05)]; ES = find_peaks(-size, distance=20,
             prominence=0.5*range).
  beats      start = max(ES - 32, 0); kept when a clip starts there; beat-by-beat EF = mean.
  DICOM      banner rows cut to the first row of frame 0 with mean < 1; longer side cut by
             int(|W-H|/2) at both ends; channel 0; margin int(height/10) on rows and columns (both
             from height); bicubic 112x112; zero where not (col+row > 67 and col-row < 67); 3 channels.
  checkpoint the training scripts' torch.save dict: epoch, state_dict from a DataParallel model
             ("module." keys), period, frames, best_loss, loss, r2 (numpy float64, as sklearn's
             r2_score returns), opt_dict (SGD with momentum buffers), scheduler_dict (StepLR).

Networks: "probe" runtimes stand in for the networks where the test is about what reaches them
(they record their inputs and compute a fixed, frame-sensitive function); the real torchvision
architectures run in the end-to-end test.
"""
from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

MEAN = np.array([32.6, 32.7, 33.0], np.float32)
STD = np.array([49.9, 50.0, 50.2], np.float32)


# -- the oracle (the reference's documented steps, nothing imported from Lightbox's echo code) ----
def oracle_normalise(frames_fhwc: np.ndarray, mean=MEAN, std=STD) -> np.ndarray:
    v = np.transpose(frames_fhwc.astype(np.float32), (3, 0, 1, 2)).copy()  # (3, F, H, W)
    for c in range(3):
        v[c] -= np.float32(mean[c])
        v[c] /= np.float32(std[c])
    return v


def oracle_pad(v: np.ndarray, length: int = 32, period: int = 2) -> np.ndarray:
    c, f, h, w = v.shape
    if f < length * period:
        v = np.concatenate((v, np.zeros((c, length * period - f, h, w), v.dtype)), axis=1)
    return v


def oracle_starts(f_padded: int, length: int = 32, period: int = 2) -> list[int]:
    return list(range(f_padded - (length - 1) * period))


def oracle_clip(v: np.ndarray, s: int, length: int = 32, period: int = 2) -> np.ndarray:
    return v[:, [s + period * k for k in range(length)]]


def oracle_all_clips_ef(frames, net, mean=MEAN, std=STD):
    """(whole-video EF, {start: clip EF}) with ``net(clip (1, 3, 32, H, W)) -> float``."""
    v = oracle_pad(oracle_normalise(frames, mean, std))
    preds = {s: float(net(oracle_clip(v, s)[None])) for s in oracle_starts(v.shape[1])}
    return float(np.mean(list(preds.values()))), preds


def oracle_systole(size) -> list[int]:
    from scipy.signal import find_peaks

    size = np.asarray(size)
    n = len(size)
    srt = sorted(size.tolist())
    rng = srt[round(n ** 0.95)] - srt[round(n ** 0.05)]
    return [int(i) for i in find_peaks(-size, distance=20, prominence=0.50 * rng)[0]]


def oracle_beats(es, preds: dict[int, float]) -> list[tuple[int, int, float]]:
    out = []
    for e in es:
        s = e - 32 if e - 32 > 0 else 0
        if s in preds:
            out.append((e, s, preds[s]))
    return out


def oracle_dicom(frames_rgb: np.ndarray) -> np.ndarray:
    import cv2

    arr = frames_rgb
    f0 = arr[0].astype(np.float64)
    means = [f0[r].mean() for r in range(f0.shape[0])]
    y = [r for r, m in enumerate(means) if m < 1][0]
    arr = arr[:, y:]
    bias = int(abs(arr.shape[2] - arr.shape[1]) / 2)
    if bias > 0:
        arr = arr[:, :, bias:-bias] if arr.shape[1] < arr.shape[2] else arr[:, bias:-bias]
    height = arr.shape[1]
    m = int(height / 10)
    keep = np.zeros((112, 112), np.uint8)
    for r in range(112):
        for c in range(112):
            keep[r, c] = 1 if (c + r > 56 + 11 and c - r < 56 + 11) else 0
    out = []
    for i in range(arr.shape[0]):
        g = np.ascontiguousarray(arr[i, m:height - m, m:height - m, 0])
        g = cv2.resize(g, (112, 112), interpolation=cv2.INTER_CUBIC)
        g = g * keep
        out.append(np.stack([g, g, g], axis=-1))
    return np.stack(out).astype(np.uint8)


# -- generated inputs ---------------------------------------------------------------------------
def beating_loop(n: int = 150, fps: float = 50.0, bpm: float = 75.0, size: int = 112, seed: int = 0) -> np.ndarray:
    """(n, size, size, 3) uint8: a bright fan with a dark LV cavity whose radius beats (min = ES)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    s = size / 112.0
    fan = ((xx - size / 2) ** 2 + yy ** 2 < (105 * s) ** 2) & (np.abs(xx - size / 2) < 0.8 * yy + 4)
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        ph = (i / fps * bpm / 60.0) % 1.0
        c = 0.5 - 0.5 * math.cos(2 * math.pi * ph)  # 0 at ED, 1 at ES (mid-cycle)
        a, b = (20 - 7 * c) * s, (38 - 9 * c) * s
        cav = ((xx - size / 2) / a) ** 2 + ((yy - 58 * s) / b) ** 2 <= 1
        img = np.where(fan, 110 + rng.normal(0, 18, (size, size)), 0)
        img = np.where(cav & fan, rng.uniform(0, 4, (size, size)), img)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)[..., None]
    return out


def write_avi(path, frames_rgb: np.ndarray, fps: float = 50.0, fourcc: str = "MJPG"):
    import cv2

    h, w = frames_rgb.shape[1:3]
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    for f in frames_rgb:
        wr.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    wr.release()
    return path


def cv2_decode(path) -> np.ndarray:
    """What the reference's loadvideo sees: OpenCV frames, BGR -> RGB."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(out)


# -- probe networks -----------------------------------------------------------------------------
class ProbeEF:
    """Stands in for r2plus1d_18: a fixed random linear read-out of the whole clip (any frame moved,
    rescaled or shifted changes it), recording every clip it is given."""

    name, device, on_gpu = "torch", "CPU (probe)", False
    input_names = ["clip"]

    def __init__(self, seed: int = 3):
        self.w = np.random.default_rng(seed).standard_normal((3, 32, 112, 112)).astype(np.float64)
        self.seen: list[np.ndarray] = []

    def value(self, clip) -> np.ndarray:
        return 55.6 + np.einsum("ncfhw,cfhw->n", clip.astype(np.float64), self.w) / 1e4

    def run(self, feeds):
        x = feeds["clip"]
        self.seen.extend(np.array(c) for c in x)
        return {"ef": self.value(x).astype(np.float32)[:, None]}


class ProbeSeg:
    """Stands in for DeepLabV3: LV logit = dark pixels of channel 0 (normalised value below -0.5)."""

    name, device, on_gpu = "torch", "CPU (probe)", False
    input_names = ["frames"]

    def __init__(self):
        self.seen: list[np.ndarray] = []

    @staticmethod
    def logits(x):
        return (-x[:, 0:1] - 0.5).astype(np.float32)

    def run(self, feeds):
        x = feeds["frames"]
        self.seen.extend(np.array(f) for f in x)
        return {"logits": self.logits(x)}


# -- checkpoints as the reference's training saves them ------------------------------------------
def reference_checkpoint(kind: str, path, *, legacy: bool = True, numpy1_names: bool = True,
                         cuda_tagged: bool = True, seed: int = 7):
    """Write ``kind`` ("ef" | "seg") the way echonet/utils/{video,segmentation}.py saves it.

    Model wrapped in DataParallel (keys "module."), SGD + StepLR with one step taken (momentum
    buffers exist), epoch/loss/best_loss as Python numbers, r2 a numpy float64 (EF only), period and
    frames (EF only). ``legacy``: torch's pre-1.6 file format (the v1.0.0 release dates from 2019);
    ``numpy1_names``: the scalar's pickle global spelled as numpy 1.x wrote it
    (numpy.core.multiarray.scalar); ``cuda_tagged``: storages recorded on "cuda:0" (trained on GPU).
    Returns (path, the bare model, the dict saved).
    To keep temporary disk small, each momentum buffer shares its parameter's storage (same keys,
    shapes and dtypes as the real file; torch.save writes a shared storage once).
    """
    import torch
    import torchvision

    torch.manual_seed(seed)
    if kind == "ef":
        model = torchvision.models.video.r2plus1d_18(weights=None)
        model.fc = torch.nn.Linear(model.fc.in_features, 1)
        model.fc.bias.data[0] = 55.6
        lr, wd, step = 1e-4, 1e-4, 15
    else:
        model = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None,
                                                                   aux_loss=False)
        model.classifier[-1] = torch.nn.Conv2d(model.classifier[-1].in_channels, 1,
                                               kernel_size=model.classifier[-1].kernel_size)
        lr, wd, step = 1e-5, 0, math.inf
    wrapped = torch.nn.DataParallel(model)
    optim = torch.optim.SGD(wrapped.parameters(), lr=lr, momentum=0.9, weight_decay=wd)
    sched = torch.optim.lr_scheduler.StepLR(optim, step)
    for p in wrapped.parameters():
        p.grad = torch.zeros_like(p)
    optim.step()
    sched.step()
    opt = optim.state_dict()
    params = list(wrapped.parameters())
    for i, st in opt["state"].items():
        st["momentum_buffer"] = params[i].detach()  # see docstring: shares the parameter's storage
    save = {"epoch": 0, "state_dict": wrapped.state_dict()}
    if kind == "ef":
        save.update(period=2, frames=32)
    y = np.array([55.0, 62.0, 35.0, 70.0])
    yhat = np.array([57.0, 60.0, 40.0, 66.0])
    save.update(best_loss=float("inf"), loss=float(np.mean((y - yhat) ** 2)))
    if kind == "ef":
        save["r2"] = np.float64(1 - np.sum((y - yhat) ** 2) / np.sum((y - y.mean()) ** 2))
    save.update(opt_dict=opt, scheduler_dict=sched.state_dict())
    orig_tag = torch.serialization.location_tag
    if cuda_tagged:
        torch.serialization.location_tag = lambda storage: "cuda:0"
    try:
        torch.save(save, str(path), _use_new_zipfile_serialization=not legacy)
    finally:
        torch.serialization.location_tag = orig_tag
    if numpy1_names:
        raw = path.read_bytes()
        new = raw.replace(b"numpy._core.multiarray\nscalar\n", b"numpy.core.multiarray\nscalar\n")
        if legacy:
            assert new != raw or kind == "seg"
        path.write_bytes(new)
    return path, model.eval(), save


# ==================================================================================================
# Reference facts implemented in inference/echo/reference.py
# ==================================================================================================
def test_clip_starts_and_padding_match_oracle():
    from inference.echo import reference as R

    for n in (1, 20, 40, 62, 63, 64, 65, 66, 150):
        assert R.all_starts(n).tolist() == oracle_starts(max(n, 64)), n
        assert R.padded_length(n) == max(n, 64)
    np.testing.assert_array_equal(R.clip_frames(7), [7 + 2 * k for k in range(32)])
    v = oracle_normalise(beating_loop(40))
    got, added = R.pad_video(v)
    assert added == 24 and got.shape[1] == 64
    np.testing.assert_array_equal(got, oracle_pad(v))
    # the bounded subset keeps the beat starts and never repeats a start
    s = R.pick_starts(150, 6, must=[0, 40, 87])
    assert len(s) == 6 and {0, 40, 87} <= set(s.tolist()) and len(set(s.tolist())) == 6
    assert R.pick_starts(150, 0).tolist() == oracle_starts(150)
    assert R.pick_starts(66, 6).tolist() == [0, 1, 2, 3]


def test_systole_rule_matches_oracle_on_generated_curves():
    from inference.echo import reference as R

    rng = np.random.default_rng(0)
    for trial in range(40):
        n = int(rng.integers(30, 260))
        period = rng.uniform(25, 70)
        t = np.arange(n)
        size = (900 + 250 * np.cos(2 * np.pi * (t / period + rng.uniform()))
                + rng.normal(0, rng.uniform(5, 80), n)).round().astype(np.int64)
        assert R.systole_frames(size) == oracle_systole(size), trial
    flat = np.full(80, 500)
    assert R.systole_frames(flat) == oracle_systole(flat) == []


def test_systole_rule_on_published_example_loops():
    """The reference's own segmentations of its published example clips: echonet/dynamic's
    docs/media/0X*.mp4 are 224x112, the loop on the left and the same loop with the LV saturated in blue
    on the right; the cache (never committed) holds per loop the left half's grey frames and the LV
    pixel count per frame (right minus left blue channel > 60). Lightbox's reference rule gives the
    oracle's ES frames on these real curves."""
    from pathlib import Path

    from inference.echo import reference as R

    cache = Path("/work/cache/fidelity/real_loops.npz")
    if not cache.exists():
        pytest.skip("published example loops not cached on this machine")
    z = np.load(cache)
    names = [k[:-5] for k in z.files if k.endswith("_size")]
    assert names
    for name in names:
        size = z[name + "_size"]
        assert R.systole_frames(size) == oracle_systole(size), name


def test_beat_starts_follow_es_minus_32():
    from inference.echo import reference as R

    preds = {s: float(s) for s in oracle_starts(150)}
    es = [10, 33, 70, 118, 140]
    expect = [(e, s) for e, s, _ in oracle_beats(es, preds)]
    assert R.beat_starts(es, 150) == expect
    assert (10, 0) in expect and (118, 86) in expect and all(e != 140 for e, _ in expect)  # 108 > 87: dropped


def test_dicom_conversion_matches_oracle_on_pydicom_example():
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from inference.detect import open_study
    from inference.echo import reference as R

    study = open_study(get_testdata_file("examples_ybr_color.dcm"))
    frames = study.data["frames"]
    small, plan = R.convert_dicom(frames)
    np.testing.assert_array_equal(small, oracle_dicom(frames))
    assert small.shape == (len(frames), 112, 112, 3)


def test_dicom_conversion_with_banner_and_portrait_frames():
    from inference.echo import reference as R

    rng = np.random.default_rng(2)
    for h, w in ((300, 400), (420, 330), (301, 400)):
        f = rng.integers(0, 255, (4, h, w, 3)).astype(np.uint8)
        f[:, :25] = rng.integers(60, 200, (4, 25, w, 3))  # banner
        f[:, 25:27] = 0  # the first black row ends the banner
        small, plan = R.convert_dicom(f)
        np.testing.assert_array_equal(small, oracle_dicom(f))
        assert plan.y_crop == 25
        assert not small[:, 0, 0].any() and not small[:, 5, 100].any()  # outside the sector: zero
    mask = R.sector_mask()
    assert mask.sum() == sum(1 for r in range(112) for c in range(112) if c + r > 67 and c - r < 67)


def test_numpy_scalars_load_with_weights_only(tmp_path):
    """A small checkpoint with numpy float64 r2/loss loads through torch.load(weights_only=True) with
    Lightbox's allow-list, in both torch file formats and under both numpy pickle spellings; numpy
    arrays, object scalars and any other global are still refused."""
    import pickle

    import torch

    from inference.echo import reference as R

    good = {"epoch": 3, "r2": np.float64(0.81), "loss": np.float64(29.5), "best_loss": np.float32(28.0),
            "state_dict": {"module.fc.weight": torch.ones(1, 4)}}
    for legacy in (False, True):
        p = tmp_path / f"ck_{legacy}.pt"
        torch.save(good, str(p), _use_new_zipfile_serialization=not legacy)
        if legacy:
            p.write_bytes(p.read_bytes().replace(b"numpy._core.multiarray\nscalar\n", b"numpy.core.multiarray\nscalar\n"))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(str(p), map_location="cpu", weights_only=True)  # what Lightbox did before
        with torch.serialization.safe_globals(R.numpy_safe_globals()):
            ck = torch.load(str(p), map_location="cpu", weights_only=True)
        assert ck["r2"] == pytest.approx(0.81) and isinstance(ck["r2"], np.float64)
        assert R.plain(ck["loss"]) == pytest.approx(29.5) and type(R.plain(ck["loss"])) is float
    bad = [{"a": np.array([1.0, 2.0])}, {"a": np.str_("text")}, {"a": np.complex128(1j)}, {"a": tmp_path}]
    for i, obj in enumerate(bad):
        p = tmp_path / f"bad{i}.pt"
        torch.save(obj, str(p))
        with pytest.raises(pickle.UnpicklingError):
            with torch.serialization.safe_globals(R.numpy_safe_globals()):
                torch.load(str(p), map_location="cpu", weights_only=True)
    # the allow-list is scoped: afterwards plain weights_only loading is as strict as before
    p = tmp_path / "ck_False.pt"
    with pytest.raises(pickle.UnpicklingError):
        torch.load(str(p), map_location="cpu", weights_only=True)


# ==================================================================================================
# The pipeline against the oracle
# ==================================================================================================
@pytest.fixture
def probes(registry, tmp_path, monkeypatch):
    """Both EchoNet models 'installed' (placeholder files) and run by probe networks."""
    from inference.echo import pipeline as pipe

    for mid in ("echonet-ef", "echonet-seg"):
        f = tmp_path / f"{mid}.placeholder"
        f.write_bytes(mid.encode())
        registry.install(f, mid, unofficial=True)
    ef, seg = ProbeEF(), ProbeSeg()
    monkeypatch.setattr(pipe, "runtime_for",
                        lambda reg, mid: (ef if mid == "echonet-ef" else seg, reg.require(mid)))
    monkeypatch.setenv("LIGHTBOX_ECHO_VIEW", "A4C")
    monkeypatch.delenv("LIGHTBOX_ECHO_MAX_CLIPS", raising=False)
    return ef, seg


def _analyse(path_or_study, registry, **options):
    from inference.detect import open_study
    from inference.echo import pipeline as pipe
    from inference.pipeline import JobContext

    study = open_study(path_or_study) if not hasattr(path_or_study, "data") else path_or_study
    study.data["echo_options"] = options
    return study, pipe.analyse(study, "echonet-ef", registry, JobContext())


def _oracle_everything(decoded: np.ndarray, ef: ProbeEF):
    """The reference's numbers for a loop whose frames (as the reference loads them) are ``decoded``."""
    v = oracle_normalise(decoded)
    masks = ProbeSeg.logits(np.transpose(v, (1, 0, 2, 3)))[:, 0] > 0
    size = masks.reshape(len(decoded), -1).sum(axis=1)
    es = oracle_systole(size)
    whole, preds = oracle_all_clips_ef(decoded, lambda clip: ef.value(clip)[0])
    beats = oracle_beats(es, preds)
    return v, size, es, whole, preds, beats


def test_112_avi_reaches_the_network_unchanged_and_numbers_match(probes, registry, tmp_path):
    from inference.echo import pipeline as pipe

    ef, seg = probes
    path = write_avi(tmp_path / "echonet_format.avi", beating_loop(150))
    decoded = cv2_decode(path)
    v, size, es, whole, preds, beats = _oracle_everything(decoded, ef)
    assert len(es) >= 3 and len(beats) >= 2  # the generated loop beats visibly

    study, r = _analyse(path, registry, all_clips=True)
    o = r.outputs
    # segmentation saw every frame exactly as the reference normalises it; no crop, no resize
    np.testing.assert_array_equal(np.stack(seg.seen), np.transpose(v, (1, 0, 2, 3)))
    assert o[pipe.K_CROP] == [0, 0, 112, 112] and "unchanged" in o[pipe.K_INPUT]
    assert "input: native" in r.provenance() and "approximate normalisation" in r.provenance()
    # every clip the EF network saw is the reference's clip, in start order
    assert [int(s) for s in r.arrays["clip_starts"]] == list(preds)
    for clip, s in zip(ef.seen, preds):
        np.testing.assert_array_equal(clip, oracle_clip(v, s))
    np.testing.assert_allclose(r.arrays["clip_ef"], [preds[s] for s in preds], rtol=0, atol=1e-4)
    assert o[pipe.K_EF] == pytest.approx(round(whole, 1), abs=0.051)
    assert o[pipe.K_CLIPS] == f"{len(preds)} of {len(preds)} (all, as the reference)"
    # systole, beats and beat-by-beat EF follow the reference
    assert o[pipe.K_ES] == [e + 1 for e in es]
    assert [(b["es"], b["clip_start"]) for b in o[pipe.K_BEATS]] == [(e, s) for e, s, _ in beats]
    assert o[pipe.K_EF_BEATS] == [round(p, 1) for _, _, p in beats]
    assert o[pipe.K_EF_BBB] == pytest.approx(round(float(np.mean([p for *_, p in beats])), 1), abs=0.051)
    assert o[pipe.K_RULE].startswith("reference")


def test_cpu_default_is_bounded_and_says_k_of_n(probes, registry, tmp_path):
    from inference.echo import pipeline as pipe

    ef, _ = probes
    path = write_avi(tmp_path / "loop.avi", beating_loop(150))
    _, _, es, _, preds, beats = _oracle_everything(cv2_decode(path), ef)
    study, r = _analyse(path, registry)
    starts = [int(s) for s in r.arrays["clip_starts"]]
    k = max(pipe.DEFAULT_MAX_CLIPS, len(beats))
    assert r.outputs[pipe.K_CLIPS] == f"{k} of {len(preds)}" and len(starts) == k
    assert {s for _, s, _ in beats} <= set(starts)  # every beat clip is among them
    np.testing.assert_allclose(r.arrays["clip_ef"], [preds[s] for s in starts], rtol=0, atol=1e-4)
    assert r.outputs[pipe.K_EF] == pytest.approx(round(float(np.mean([preds[s] for s in starts])), 1), abs=0.051)
    assert any(f"{k} of the {len(preds)} clips" in n for n in r.notes)
    assert r.outputs[pipe.K_CLIP_S] > 0


def test_short_loop_is_zero_padded_like_the_reference(probes, registry, tmp_path):
    from inference.echo import pipeline as pipe

    ef, _ = probes
    path = write_avi(tmp_path / "short.avi", beating_loop(40))
    decoded = cv2_decode(path)
    whole, preds = oracle_all_clips_ef(decoded, lambda clip: ef.value(clip)[0])
    assert list(preds) == [0, 1]
    _, r = _analyse(path, registry, all_clips=True)
    v = oracle_pad(oracle_normalise(decoded))
    for clip, s in zip(ef.seen, preds):
        np.testing.assert_array_equal(clip, oracle_clip(v, s))
    assert not ef.seen[1][:, -1].any()  # the last frame of clip 1 is frame 63: a zero (mean-colour) frame
    assert r.outputs[pipe.K_EF] == pytest.approx(round(whole, 1), abs=0.051)
    assert r.outputs[pipe.K_CLIPS] == "2 of 2 (all, as the reference)"


def test_dicom_loop_gets_the_reference_conversion(probes, registry):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    from inference.detect import open_study
    from inference.echo import pipeline as pipe

    ef, seg = probes
    study = open_study(get_testdata_file("examples_ybr_color.dcm"))
    assert study.metadata["input_path"] == "reference-dicom"
    converted = oracle_dicom(study.data["frames"])
    v = oracle_normalise(converted)
    whole, preds = oracle_all_clips_ef(converted, lambda clip: ef.value(clip)[0])
    _, r = _analyse(study, registry, all_clips=True)
    np.testing.assert_array_equal(np.stack(seg.seen), np.transpose(v, (1, 0, 2, 3)))
    assert r.outputs[pipe.K_EF] == pytest.approx(round(whole, 1), abs=0.051)
    assert r.outputs[pipe.K_INPUT].startswith("reference DICOM conversion")
    assert "input: reference-dicom" in r.provenance()
    # the region the viewer outlines is the region converted
    x0, y0, x1, y1 = r.outputs[pipe.K_CROP]
    assert x1 - x0 == y1 - y0 and x1 <= study.data["frames"].shape[2]


def test_full_size_video_is_labelled_as_lightbox_sector_crop(probes, registry, tmp_path):
    from inference.echo import demo
    from inference.echo import pipeline as pipe

    path = demo.write(tmp_path / "phantom.mp4", demo.frames()[:70])
    _, r = _analyse(path, registry)
    assert r.outputs[pipe.K_INPUT].startswith("Lightbox sector crop")
    assert "input: sector" in r.provenance()


def test_lightbox_rule_stays_available_and_labelled(probes, registry, tmp_path):
    from inference.echo import pipeline as pipe

    path = write_avi(tmp_path / "loop.avi", beating_loop(150))
    _, r = _analyse(path, registry, beat_rule="lightbox")
    assert r.outputs[pipe.K_RULE].startswith("Lightbox's alternative")
    assert all(b["ed"] < b["es"] < b["ed_next"] for b in r.outputs[pipe.K_BEATS])


@pytest.mark.slow
def test_reference_checkpoints_end_to_end(registry, tmp_path, monkeypatch):
    """The real architectures, from checkpoints written exactly as the reference's training writes
    them (legacy format, cuda storages, numpy 1.x scalar, DataParallel keys, optimiser + scheduler):
    Lightbox loads them with weights_only and its numbers equal the oracle's on the same loop."""
    import torch

    from inference.echo import echonet as E
    from inference.echo import pipeline as pipe

    ck_ef, ef_model, saved = reference_checkpoint("ef", tmp_path / "r2plus1d_18_32_2_pretrained.pt")
    model, info = E.load_model("ef", ck_ef)
    assert info["r2"] == pytest.approx(float(saved["r2"])) and type(info["r2"]) is float
    assert (info["frames"], info["period"], info["epoch"]) == (32, 2, 0)
    ck_seg, seg_model, _ = reference_checkpoint("seg", tmp_path / "deeplabv3_resnet50_random.pt")
    registry.install(ck_ef, "echonet-ef", unofficial=True)
    registry.install(ck_seg, "echonet-seg", unofficial=True)
    ck_ef.unlink()
    ck_seg.unlink()
    monkeypatch.setenv("LIGHTBOX_ECHO_VIEW", "A4C")
    monkeypatch.setenv("LIGHTBOX_FORCE_CPU", "1")
    pipe.clear_cache()
    path = write_avi(tmp_path / "loop.avi", beating_loop(40))  # short: padded, 2 clips (CPU time)
    decoded = cv2_decode(path)
    with torch.inference_mode():
        whole, preds = oracle_all_clips_ef(decoded, lambda clip: ef_model(torch.from_numpy(clip)).item())
        v = oracle_normalise(decoded)
        logits = seg_model(torch.from_numpy(np.ascontiguousarray(np.transpose(v, (1, 0, 2, 3)))))["out"].numpy()
    size = (logits[:, 0] > 0).reshape(len(decoded), -1).sum(axis=1)
    _, r = _analyse(path, registry, all_clips=True)
    assert r.runtime == "torch" and r.clinical is False
    np.testing.assert_allclose(r.arrays["clip_ef"], [preds[s] for s in preds], rtol=0, atol=1e-3)
    assert r.outputs[pipe.K_EF] == pytest.approx(round(whole, 1), abs=0.051)
    np.testing.assert_array_equal(r.arrays["masks"].reshape(len(decoded), -1).sum(axis=1), size)
    assert r.outputs[pipe.K_ES] == [e + 1 for e in oracle_systole(size)]
    pipe.clear_cache()
    shutil.rmtree(tmp_path, ignore_errors=True)
