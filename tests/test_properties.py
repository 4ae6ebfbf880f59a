"""Property-based tests (hypothesis) on every reader and preprocessing step.

Readers: arbitrary bytes, and small valid files (tests/fuzz/seeds.py) with bytes flipped, cut,
spliced or inserted, must give a Study or a ReadError naming the file — never another exception.
Preprocessing: on arbitrary finite input the output has the documented shape, dtype, range and is
finite; NaN/Inf input is refused with a ValueError that says so, not turned into garbage.
Bounded: a few dozen examples per test, no deadline (2 busy cores).
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from inference.detect import reader_module
from inference.study import ReadError, Study
from tests.fuzz.seeds import SEEDS

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                      HealthCheck.function_scoped_fixture])
_DIR = Path(tempfile.mkdtemp(prefix="lightbox-props-"))
_SEED_CACHE: dict[tuple[str, str], bytes] = {}


def seed(modality: str, ext: str) -> bytes:
    key = (modality, ext)
    if key not in _SEED_CACHE:
        p = SEEDS[key](_DIR / f"seed_{modality}{ext}")
        _SEED_CACHE[key] = p.read_bytes()
    return _SEED_CACHE[key]


def check_read(modality: str, ext: str, data: bytes) -> None:
    path = _DIR / f"case_{modality}{ext}"
    path.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            st_ = reader_module(modality).read(path)
        except ReadError as e:
            assert path.name in str(e), f"message does not name the file: {e}"
            assert str(e).strip() != f"{path.name}:", "empty problem"
            return
    assert isinstance(st_, Study) and st_.modality == modality
    if modality == "endo":
        st_.data["source"].close()


# one mutation: (kind, position as a fraction of the file, length, byte)
MUTATION = st.tuples(st.sampled_from(["flip", "truncate", "splice", "insert", "zero"]),
                     st.floats(0.0, 1.0), st.integers(1, 64), st.integers(0, 255))


def mutate(data: bytes, muts) -> bytes:
    b = bytearray(data)
    for kind, frac, n, val in muts:
        if not b:
            break
        i = min(int(frac * len(b)), len(b) - 1)
        if kind == "flip":
            b[i] ^= 1 << (val % 8)
        elif kind == "truncate":
            del b[max(1, i):]
        elif kind == "splice":
            b[i:i + n] = bytes([val]) * n
        elif kind == "insert":
            b[i:i] = bytes([val]) * n
        else:  # a run of 0xff / 0x00, the classic absurd length field
            b[i:i + 8] = (b"\xff" if val & 1 else b"\x00") * 8
    return bytes(b)


FORMATS = sorted(SEEDS)


@pytest.mark.parametrize("modality,ext", FORMATS, ids=[f"{m}{e}" for m, e in FORMATS])
@settings(max_examples=60, **SETTINGS)
@given(muts=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_valid_file_reads_or_refuses(modality, ext, muts):
    check_read(modality, ext, mutate(seed(modality, ext), muts))


MAGIC = {".hd5": b"\x89HDF\r\n\x1a\n", ".wav": b"RIFF\x24\x08\x00\x00WAVE", ".avi": b"RIFF\x00\x00\x00\x00AVI ",
         ".png": b"\x89PNG\r\n\x1a\n", ".dcm": b"\0" * 128 + b"DICM", ".mp4": b"\x00\x00\x00\x20ftypisom",
         ".csv": b"I,II,III\n", ".flac": b"fLaC"}


@pytest.mark.parametrize("modality,ext", FORMATS, ids=[f"{m}{e}" for m, e in FORMATS])
@settings(max_examples=40, **SETTINGS)
@given(body=st.binary(min_size=1, max_size=2048), with_magic=st.booleans())
def test_arbitrary_bytes_read_or_refuse(modality, ext, body, with_magic):
    check_read(modality, ext, (MAGIC[ext] if with_magic else b"") + body)


# -- ECG: resampling and the ECG2AF model input ----------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(n=st.integers(200, 6000), fs=st.sampled_from([100.0, 250.0, 257.0, 360.0, 500.0, 977.0, 1000.0]),
       missing=st.lists(st.booleans(), min_size=12, max_size=12), data=st.data())
def test_ecg_model_input_shape_and_finiteness(n, fs, missing, data):
    from inference.ecg.reader import MODEL_SAMPLES, model_input

    assume(not all(missing))
    sig = data.draw(hnp.arrays(np.float32, (12, n), elements=st.floats(-10, 10, width=32)))
    sig[np.array(missing)] = np.nan
    x, notes = model_input(sig, fs)
    assert x.shape == (MODEL_SAMPLES, 12) and x.dtype == np.float32
    present = ~np.array(missing)
    assert np.isfinite(x[:, present]).all()
    assert np.isnan(x[:, ~present]).all()
    assert (fs == 500.0) or any("Resampled" in s for s in notes)
    # polyphase resampling keeps the amplitude within a modest overshoot of the input range
    assert np.abs(x[:, present]).max() <= 2.5 * max(np.abs(sig[present]).max(), 1e-6) + 1e-6


@settings(max_examples=25, **SETTINGS)
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), i=st.integers(0, 11), j=st.integers(0, 999))
def test_ecg_model_input_refuses_nonfinite_inside_a_lead(bad, i, j):
    from inference.ecg.reader import model_input

    sig = np.sin(np.linspace(0, 20, 1000))[None].repeat(12, 0).astype(np.float32)
    sig[i, j] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        model_input(sig, 250.0)


@settings(max_examples=25, **SETTINGS)
@given(fs=st.sampled_from([0.0, -500.0, np.nan, np.inf]))
def test_ecg_model_input_refuses_bad_rate(fs):
    from inference.ecg.reader import model_input

    with pytest.raises(ValueError, match="sampling rate"):
        model_input(np.zeros((12, 1000), np.float32), fs)


# -- PCG: features and segmentation ----------------------------------------------------------------
@settings(max_examples=30, **SETTINGS)
@given(sr=st.sampled_from([1000, 2000, 4000, 8000, 22050]), seconds=st.floats(0.5, 6.0), data=st.data())
def test_pcg_features_shape_range_finite(sr, seconds, data):
    from inference.pcg.features import FeatureSpec, log_mel, prepare, windows

    spec = FeatureSpec()
    n = int(sr * seconds)
    x = data.draw(hnp.arrays(np.float32, n, elements=st.floats(-1, 1, width=32)))
    y = prepare(x, sr, spec)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    assert abs(len(y) - n * spec.sample_rate / sr) <= 2
    # unit robust amplitude (99th percentile of |y| is 1) or all-zero for a silent input
    p99 = float(np.percentile(np.abs(y), 99))
    assert p99 == 0.0 or abs(p99 - 1.0) < 1e-3
    m = log_mel(y, spec)
    assert m.shape == (spec.n_mels, 1 + len(y) // spec.hop) and m.dtype == np.float32 and np.isfinite(m).all()
    assert m.min() >= np.log(spec.log_eps) - 1e-3
    w, t = windows(m, spec)
    assert w.shape[1:] == (1, spec.n_mels, spec.window_frames) and np.isfinite(w).all()
    assert len(t) == len(w) and (np.diff(t) > 0).all() and t[0] == 0.0


@settings(max_examples=25, **SETTINGS)
@given(sr=st.sampled_from([1000, 2000, 4000]), seconds=st.floats(1.0, 8.0), data=st.data())
def test_pcg_segmentation_outputs_are_sane(sr, seconds, data):
    from inference.pcg.segment import ENV_RATE, segment

    n = int(sr * seconds)
    x = data.draw(hnp.arrays(np.float32, n, elements=st.floats(-1, 1, width=32)))
    seg = segment(x, sr)
    env = seg.envelope
    assert env.dtype == np.float32 and np.isfinite(env).all() and env.min() >= 0 and env.max() <= 1.0 + 1e-6
    assert abs(len(env) - n / sr * ENV_RATE) <= 2
    for times in (seg.s1, seg.s2):
        assert np.all((times >= 0) & (times <= seconds + 1e-6))
    if seg.heart_rate_bpm is not None:
        assert np.isfinite(seg.heart_rate_bpm) and 0 < seg.heart_rate_bpm < 400
    assert 0.0 <= seg.quality <= 1.0
    seg.outputs()  # JSON-able summary builds


@settings(max_examples=25, **SETTINGS)
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), i=st.integers(0, 3999))
def test_pcg_refuses_nonfinite(bad, i):
    from inference.pcg.features import FeatureSpec, prepare
    from inference.pcg.segment import segment

    x = np.sin(np.linspace(0, 300, 4000)).astype(np.float32)
    x[i] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        prepare(x, 2000, FeatureSpec())
    with pytest.raises(ValueError, match="NaN or infinite"):
        segment(x, 2000)


# -- Echo: sector crop, clip sampling, normalisation ------------------------------------------------
@settings(max_examples=30, **SETTINGS)
@given(data=st.data(), f=st.integers(1, 6), h=st.integers(16, 96), w=st.integers(16, 96))
def test_echo_crop_and_normalise(data, f, h, w):
    from inference.echo.preprocess import SIZE, crop_resize, find_sector, frame_batch, normalise

    frames = data.draw(hnp.arrays(np.uint8, (f, h, w, 3)))
    box = find_sector(frames)
    assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h
    small = crop_resize(frames, box)
    assert small.shape == (f, SIZE, SIZE, 3) and small.dtype == np.uint8
    norm = normalise(small)
    assert norm.shape == (3, f, SIZE, SIZE) and norm.dtype == np.float32 and np.isfinite(norm).all()
    assert norm.min() >= (0 - 33.0) / 49.9 - 1e-3 and norm.max() <= (255 - 32.6) / 49.9 + 1e-3
    assert frame_batch(small).shape == (f, 3, SIZE, SIZE)


@settings(max_examples=50, **SETTINGS)
@given(n=st.integers(1, 2000), max_clips=st.integers(0, 40), must=st.lists(st.integers(-5, 2100), max_size=6))
def test_echo_clip_sampling_in_range(n, max_clips, must):
    from inference.echo import reference as R

    starts = R.pick_starts(n, max_clips, must=must)
    last = max(n, 64) - 63  # clips index the (zero-padded) video of at least 64 frames
    assert len(starts) >= 1 and (max_clips == 0 or len(starts) <= max_clips)
    assert starts.min() >= 0 and starts.max() <= last and (np.diff(starts) > 0).all()
    idx = R.clip_frames(int(starts[-1]))
    assert idx.shape == (R.FRAMES,) and idx.max() <= max(n, 64) - 1


@settings(max_examples=25, **SETTINGS)
@given(bad=st.sampled_from([np.nan, np.inf]))
def test_echo_refuses_nonfinite_frames(bad):
    from inference.echo.preprocess import normalise

    frames = np.zeros((2, 8, 8, 3), np.float32)
    frames[1, 3, 3, 0] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalise(frames)


# -- X-ray: window/level and the model input ---------------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), h=st.integers(2, 300), w=st.integers(2, 300))
def test_xray_preprocess_shape_and_range(data, h, w):
    from inference.xray.imaging import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, preprocess

    img = data.draw(hnp.arrays(np.uint8, (h, w)))
    x = preprocess(img)
    assert x.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and x.dtype == np.float32 and np.isfinite(x).all()
    lo = (0 - IMAGENET_MEAN) / IMAGENET_STD
    hi = (1 - IMAGENET_MEAN) / IMAGENET_STD
    for c in range(3):
        assert x[0, c].min() >= lo[c] - 1e-4 and x[0, c].max() <= hi[c] + 1e-4
    # greyscale in, the same plane in all three channels (before per-channel normalisation)
    back = x[0] * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
    assert np.allclose(back[0], back[1], atol=1e-5) and np.allclose(back[1], back[2], atol=1e-5)


@settings(max_examples=50, **SETTINGS)
@given(data=st.data(), function=st.sampled_from(["LINEAR", "LINEAR_EXACT", "SIGMOID"]),
       center=st.floats(-5000, 5000), width=st.floats(1.0, 10000), invert=st.booleans())
def test_xray_window_level_is_monotone_uint8(data, function, center, width, invert):
    from inference.xray.reader import apply_window, percentile_window

    img = data.draw(hnp.arrays(np.float32, st.tuples(st.integers(1, 40), st.integers(1, 40)),
                               elements=st.floats(-4096, 65535, width=32)))
    out = apply_window(img, center, width, function, invert)
    assert out.shape == img.shape and out.dtype == np.uint8
    order = np.argsort(img.ravel(), kind="stable")
    d = np.diff(out.ravel()[order].astype(int))
    assert (d <= 0).all() if invert else (d >= 0).all()
    c, w_ = percentile_window(img)
    assert np.isfinite(c) and np.isfinite(w_) and w_ > 0


@settings(max_examples=25, **SETTINGS)
@given(bad=st.sampled_from([np.nan, np.inf, -np.inf]), i=st.integers(0, 63))
def test_xray_refuses_nonfinite(bad, i):
    from inference.xray.reader import apply_window
    from inference.xray.imaging import preprocess

    img = np.arange(64, dtype=np.float32).reshape(8, 8)
    img.flat[i] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        apply_window(img, 32.0, 64.0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        preprocess(img)
    with pytest.raises(ValueError, match="not finite"):
        apply_window(np.zeros((4, 4), np.float32), bad, 10.0)


# -- Endoscopy: frame quality ----------------------------------------------------------------------
@settings(max_examples=40, **SETTINGS)
@given(data=st.data(), n=st.integers(1, 4), h=st.integers(8, 120), w=st.integers(8, 120))
def test_endo_frame_quality_records(data, n, h, w):
    from inference.endo.quality import STATUSES, FrameSelector, skipped_counts

    sel = FrameSelector(fps=25.0)
    for i in range(n):
        rgb = data.draw(hnp.arrays(np.uint8, (h, w, 3)))
        q = sel.measure(i, rgb)
        assert q.status in STATUSES
        assert 0.0 <= q.mean_luma <= 255.0
        for frac in (q.dark_fraction, q.bright_fraction, q.glare_fraction):
            assert 0.0 <= frac <= 1.0
        assert np.isfinite(q.blur_var) and q.blur_var >= 0
        assert 0 <= q.dhash < 2 ** 64
        q.to_dict()
    assert sum(skipped_counts(sel.records).values()) == sum(r.status != "ok" for r in sel.records)


@settings(max_examples=25, **SETTINGS)
@given(bad=st.sampled_from([np.nan, np.inf]), shape=st.sampled_from([(16, 16, 3), (16, 16), (16, 16, 4)]))
def test_endo_quality_refuses_non_frames(bad, shape):
    from inference.endo.quality import measure_single

    with pytest.raises(ValueError, match="uint8"):
        measure_single(np.full((16, 16, 3), bad, np.float32))
    if shape != (16, 16, 3):
        with pytest.raises(ValueError, match="uint8"):
            measure_single(np.zeros(shape, np.uint8))
