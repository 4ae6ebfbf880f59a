"""Heart-sound recordings: WAV, FLAC, OGG/Vorbis, MP3 at any sample rate and channel count.

The study keeps the original samples for listening (``data["audio"]``, frames x channels, float32 in
[-1, 1], at the file's own rate) and a mono mix for analysis (``data["mono"]``). Nothing is resampled
here: the classifier resamples to its own rate, and says so.

Refused with a clear ``ReadError``: unknown/damaged containers, files whose header claims more audio than
Lightbox will hold (checked before any sample is read), empty or shorter-than-1-s recordings, digital
silence, and non-finite samples.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from inference.study import ReadError, Study, sha256_file
from inference.reading import require_file

EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
MAX_SECONDS = 30 * 60  # a phonocardiogram is seconds to minutes; 30 min is far beyond any real one
MAX_SAMPLES = 200_000_000  # frames x channels held in memory (800 MB as float32)
MIN_SECONDS = 1.0
SILENCE_PEAK = 1e-5  # -100 dBFS: digital silence


def sniff(path, head: bytes) -> float:
    if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
        return 1.0
    if head[:4] == b"fLaC":
        return 1.0
    if head[:4] == b"OggS":
        return 0.9
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0):
        return 0.8
    return 0.0


def _wav_claimed_bytes(path: Path) -> tuple[int | None, int]:
    """(data-chunk size the RIFF header claims, bytes actually present after it) or (None, 0)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None, 0
            size = path.stat().st_size
            pos = 12
            while pos + 8 <= size and pos < 1 << 20:
                f.seek(pos)
                cid, n = struct.unpack("<4sI", f.read(8))
                if cid == b"data":
                    return n, size - (pos + 8)
                pos += 8 + n + (n & 1)
    except (OSError, struct.error):
        pass
    return None, 0


def _decode(path: Path) -> tuple[np.ndarray, int, dict, list[str]]:
    """(frames x channels float32, rate, format facts, notes)."""
    import soundfile as sf

    notes: list[str] = []
    try:
        info = sf.info(str(path))
    except Exception as e:  # libsndfile cannot open it: mp3 without libmpg123, or a damaged file
        if path.suffix.lower() == ".mp3":
            return _decode_fallback(path, e)
        raise ReadError(path, f"not a readable {path.suffix.lower() or 'audio'} file "
                              f"(damaged, truncated or another format): {_short(e)}") from None
    frames, ch, sr = int(info.frames), int(info.channels), int(info.samplerate)
    if sr <= 0 or ch <= 0:
        raise ReadError(path, f"the header gives {sr} Hz and {ch} channels; not a valid recording")
    if frames > 0 and (frames / sr > MAX_SECONDS or frames * ch > MAX_SAMPLES):
        raise ReadError(path, f"the header claims {frames / sr / 60:.1f} min of audio ({ch} channel(s) at {sr} Hz); "
                              f"Lightbox opens heart-sound recordings up to {MAX_SECONDS // 60} min")
    claimed, present = _wav_claimed_bytes(path)
    if claimed is not None and info.subtype.startswith("PCM"):
        bps = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4}.get(info.subtype, 2)
        claimed_s = claimed / (bps * ch * sr)
        if claimed_s > MAX_SECONDS and claimed != 0xFFFFFFFF:
            raise ReadError(path, f"the WAV header claims {claimed_s / 60:.1f} min of audio; Lightbox opens "
                                  f"heart-sound recordings up to {MAX_SECONDS // 60} min")
    try:
        x, sr2 = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise ReadError(path, f"the audio data could not be decoded (damaged file): {_short(e)}") from None
    if claimed is not None and present < claimed and info.subtype.startswith("PCM"):
        notes.append(f"file is truncated: the header claims {claimed} bytes of audio, {present} are present "
                     f"({len(x) / sr:.1f} s read)")
    fmt = {"format": info.format, "subtype": info.subtype, "subtype_info": info.subtype_info}
    return x, int(sr2), fmt, notes


def _decode_fallback(path: Path, first_error: Exception) -> tuple[np.ndarray, int, dict, list[str]]:
    try:
        import librosa

        x, sr = librosa.load(str(path), sr=None, mono=False)
    except Exception as e:
        raise ReadError(path, f"not a readable MP3 file (damaged or unsupported): {_short(e)}") from None
    x = np.atleast_2d(np.asarray(x, dtype=np.float32))
    x = x.T if x.shape[0] < x.shape[1] else x
    return x, int(sr), {"format": "MP3", "subtype": "MPEG", "subtype_info": "decoded by audioread"}, []


def _short(e: Exception) -> str:
    import re

    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    s = re.sub(r"^Error opening .*?: ", "", s)  # libsndfile repeats the path; the message already names the file
    return s[:160]


def load_audio(path: str | Path) -> tuple[np.ndarray, int, dict, list[str]]:
    """Decoded, checked audio: (frames x channels float32, sample rate, format facts, notes)."""
    path = Path(path)
    require_file(path)
    x, sr, fmt, notes = _decode(path)
    if x.size == 0 or len(x) == 0:
        raise ReadError(path, "the file contains no audio samples")
    if not np.all(np.isfinite(x)):
        raise ReadError(path, "the audio contains invalid (NaN or infinite) samples")
    dur = len(x) / sr
    if dur < MIN_SECONDS:
        raise ReadError(path, f"the recording is {dur:.2f} s long; a heart-sound analysis needs at least "
                              f"{MIN_SECONDS:.0f} s (one or more cardiac cycles)")
    peak = float(np.max(np.abs(x)))
    if peak < SILENCE_PEAK:
        raise ReadError(path, "the recording is silent (every sample is zero or below -100 dBFS); "
                              "check the stethoscope connection")
    return x, sr, fmt, notes


def read(path) -> Study:
    path = Path(path)
    x, sr, fmt, notes = load_audio(path)
    mono = x.mean(axis=1).astype(np.float32) if x.shape[1] > 1 else x[:, 0].copy()
    if x.shape[1] > 1:
        notes.append(f"{x.shape[1]} channels mixed to mono for analysis (all channels kept for listening)")
    peak = float(np.max(np.abs(x)))
    clipped = float(np.mean(np.abs(x) >= 0.999)) if fmt.get("subtype", "").startswith("PCM") else 0.0
    if clipped > 0.001:
        notes.append(f"{clipped * 100:.1f} % of samples are at full scale (clipped recording)")
    meta = {
        "sample_rate": sr, "channels": int(x.shape[1]), "frames": int(len(x)),
        "duration_s": round(len(x) / sr, 3), "peak_dbfs": round(float(20 * np.log10(peak)), 1),
        **fmt,
    }
    return Study(modality="pcg", source=str(path), sha256=sha256_file(path), name=path.stem,
                 metadata=meta, data={"audio": x, "mono": mono, "sample_rate": sr}, notes=notes)
