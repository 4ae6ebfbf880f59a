"""Resting 12-lead ECG reader: ML4H .hd5, WFDB (.hea/.dat), CSV with lead names, DICOM 12-lead waveform.

Every format ends in the same Study:

- ``data["signal_mv"]``: float32 (12, n) in millivolts at the file's own rate, rows in ECG2AF order
  (I, II, III, aVR, aVL, aVF, V1..V6). A lead the file does not hold is a row of NaN and is named in
  ``metadata["missing_leads"]`` (the viewer draws it as "missing", never as a flat line).
- ``data["fs"]``: that rate (Hz). This is what the viewer and the measurements use.
- ``data["model_input"]``: float32 (5000, 12) in mV at 500 Hz — the ECG2AF input before its
  ZeroMeanStd1 normalisation, made explicitly here (polyphase resampling, then the ML4H
  crop-or-zero-pad to 5000 samples); every step that changes the signal is a line in ``study.notes``.
  Display filters never touch it.

The ML4H layout is the one ECG2AF's own code reads (``ml4h/tensormap/ukb/ecg.py``: ``ecg_rest_mgb``):
``ukb_ecg_rest/strip_<lead>/instance_0``, 5000 samples at 500 Hz per lead.
"""
from __future__ import annotations

import csv
import io
import re
from fractions import Fraction
from pathlib import Path

import numpy as np

from inference.study import ReadError, Study, sha256_bytes, sha256_file
from inference.reading import require_file

EXTENSIONS = (".hd5", ".h5", ".hdf5", ".hea", ".dat", ".csv", ".dcm")

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
MODEL_FS = 500
MODEL_SAMPLES = 5000
ML4H_GROUP = "ukb_ecg_rest"

MIN_SECONDS = 2.0
MAX_SECONDS = 24 * 3600.0  # a Holter day; the sample budget below is what bounds memory
LONG_SECONDS = 600.0  # longer than a resting ECG: paged in the viewer, rhythm analysed in windows
MAX_SAMPLES = 8_000_000  # per lead: the (12, n) float32 signal stays under ~400 MB (e.g. 6 h at 360 Hz)
MAX_ABS_MV = 1e6  # 1 kV: far beyond any amplitude-unit mix-up, refused as damage
FLAT_MV = 0.02  # peak-to-peak below 20 µV over the whole trace: no signal on that electrode
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ECG_WAVEFORM_UIDS = (b"1.2.840.10008.5.1.4.1.1.9.1.1", b"1.2.840.10008.5.1.4.1.1.9.1.2",
                     b"1.2.840.10008.5.1.4.1.1.9.1.3")

_ALIASES = {
    "i": "I", "ii": "II", "iii": "III", "avr": "aVR", "avl": "aVL", "avf": "aVF",
    "d1": "I", "di": "I", "d2": "II", "dii": "II", "d3": "III", "diii": "III",
    "mlii": "II", "ml2": "II", "lead1": "I", "lead2": "II", "lead3": "III",
    "lead i": "I", "lead ii": "II", "lead iii": "III",
}


def lead_name(raw: str) -> str | None:
    """Map a lead label from any of the formats to the ECG2AF name, or None if it is not one of the 12."""
    s = str(raw).strip()
    s = re.sub(r"\(.*?\)|\[.*?\]", "", s).strip()  # "Lead I (Einthoven)", "V1 [mV]"
    s = re.sub(r"^(strip_|lead[_\s]+)", "", s, flags=re.I).strip()
    s = re.sub(r"[_\s-]*(mv|uv|µv)$", "", s, flags=re.I).strip()
    low = s.lower().replace(" ", "")
    if low in _ALIASES:
        return _ALIASES[low]
    m = re.fullmatch(r"v([1-6])", low)
    if m:
        return f"V{m.group(1)}"
    m = re.fullmatch(r"c([1-6])", low)  # IEC chest-lead names
    if m:
        return f"V{m.group(1)}"
    return None


# -- sniffing ---------------------------------------------------------------------------------
def _csv_header_line(head: bytes) -> str:
    """The CSV's header row as the reader finds it: the first line that is neither blank nor a ``#``
    comment (``# fs=360``, ``# sampling_rate: 500``), after a UTF-8 byte-order mark."""
    text = head.decode("utf-8-sig", errors="replace")
    for ln in text.splitlines():
        if ln.strip() and not ln.lstrip().startswith("#"):
            return ln.strip()
    return ""


def sniff(path, head: bytes) -> float:
    path = Path(path)
    ext = path.suffix.lower()
    if ext in (".hd5", ".h5", ".hdf5"):
        if not head.startswith(HDF5_MAGIC):
            return 0.0
        try:
            import h5py

            with h5py.File(path, "r") as f:
                if ML4H_GROUP in f:
                    return 1.0
                if "model_config" in f.attrs or "model_weights" in f:
                    return 0.3  # a Keras file: read() explains it is weights, not an ECG
        except Exception:
            return 0.1
        return 0.2
    if ext == ".hea":
        return 0.95 if re.match(rb"\s*[^\s#]+\s+\d+", head) else 0.1
    if ext == ".dat":
        return 0.9 if path.with_suffix(".hea").exists() else 0.05
    if ext == ".csv":
        first = _csv_header_line(head)
        names = [lead_name(c.strip().strip("\"'")) for c in re.split(r"[,;\t]", first)]
        hits = sum(1 for n in names if n)
        return min(1.0, 0.3 + 0.07 * hits) if hits >= 1 else 0.0
    if ext == ".dcm":
        return 0.95 if any(u in head for u in ECG_WAVEFORM_UIDS) else 0.0
    return 0.0


# -- common finishing -------------------------------------------------------------------------
def _resample(x: np.ndarray, fs: float, target: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliasing FIR from scipy)."""
    from scipy.signal import resample_poly

    frac = Fraction(target / fs).limit_denominator(1000)
    return resample_poly(x, frac.numerator, frac.denominator, axis=-1, padtype="line")


def model_input(signal_mv: np.ndarray, fs: float) -> tuple[np.ndarray, list[str]]:
    """(5000, 12) float32 mV at 500 Hz, as ML4H feeds ECG2AF before normalisation, plus notes.

    NaN rows (missing leads) stay NaN: the pipeline refuses to run ECG2AF on an incomplete ECG.
    """
    notes: list[str] = []
    x = np.asarray(signal_mv)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"ECG signal must be (leads, samples), got shape {x.shape}")
    if not (np.isfinite(fs) and fs > 0):
        raise ValueError(f"sampling rate {fs!r} Hz is not a positive number")
    n_orig = x.shape[1]
    # ECG2AF sees the first 10 s: a long recording is cut (with 2 s to spare for the resampling filter)
    # before anything is converted or resampled, so memory does not grow with the recording
    keep = int(np.ceil((MODEL_SAMPLES / MODEL_FS + 2.0) * fs))
    x = np.asarray(x[:, :keep], dtype=np.float64)
    nan_rows = np.isnan(x).all(axis=1)
    if not np.isfinite(x[~nan_rows]).all():
        raise ValueError("ECG signal has NaN or infinite samples inside a lead (only a wholly missing lead may be NaN)")
    if abs(fs - MODEL_FS) > 1e-6:
        present = ~np.isnan(x).all(axis=1)
        y = np.full((x.shape[0], int(round(x.shape[1] * MODEL_FS / fs))), np.nan)
        if present.any():
            r = _resample(x[present], fs, MODEL_FS)
            y = np.full((x.shape[0], r.shape[1]), np.nan)
            y[present] = r
        x = y
        notes.append(f"Resampled {fs:g} Hz -> {MODEL_FS} Hz for ECG2AF (polyphase, anti-aliased); "
                     "the display shows the original samples.")
    n = x.shape[1]
    if n > MODEL_SAMPLES:
        notes.append(f"Recording is {n_orig / fs:.1f} s: ECG2AF sees the first {MODEL_SAMPLES / MODEL_FS:.0f} s "
                     "(ML4H crops to 5000 samples).")
        x = x[:, :MODEL_SAMPLES]
    elif n < MODEL_SAMPLES:
        notes.append(f"Recording is {n / MODEL_FS:.1f} s: zero-padded to 10 s for ECG2AF, as ML4H does; "
                     "the model was trained on full 10 s strips.")
        pad = np.zeros((x.shape[0], MODEL_SAMPLES - n))
        pad[np.isnan(x[:, :1]).ravel()] = np.nan
        x = np.concatenate([x, pad], axis=1)
    return np.ascontiguousarray(x.T, dtype=np.float32), notes


def _check_length(path: Path, n: int, fs: float) -> None:
    """Refuse a recording beyond the memory budget before it is allocated (also used on headers)."""
    seconds = n / fs
    if n > MAX_SAMPLES or seconds > MAX_SECONDS:
        limit = min(MAX_SAMPLES / fs, MAX_SECONDS)
        raise ReadError(path, f"the recording is {seconds / 3600:.1f} h long ({n} samples per lead at {fs:g} Hz); "
                              f"Lightbox opens ECGs up to {MAX_SAMPLES:,} samples per lead "
                              f"(about {limit / 3600:.1f} h at this rate) to keep memory bounded")


def _finish(path: Path, fmt: str, leads: dict[str, np.ndarray], fs: float, notes: list[str],
            extra_meta: dict | None = None, ignored: list[str] | None = None, sha256: str | None = None) -> Study:
    if not leads:
        raise ReadError(path, "no ECG lead found (expected leads named I, II, III, aVR, aVL, aVF, V1–V6)")
    if not (20 <= fs <= 20000):
        raise ReadError(path, f"sampling rate {fs:g} Hz is not plausible for an ECG")
    lengths = {k: len(v) for k, v in leads.items()}
    if len(set(lengths.values())) != 1:
        desc = ", ".join(f"{k}: {n}" for k, n in lengths.items())
        raise ReadError(path, f"leads have different lengths ({desc}); a 12-lead ECG has one length for all leads")
    n = next(iter(lengths.values()))
    seconds = n / fs
    if seconds < MIN_SECONDS:
        raise ReadError(path, f"the recording is {seconds:.2f} s long ({n} samples at {fs:g} Hz); "
                              f"a resting ECG needs at least {MIN_SECONDS:g} s")
    _check_length(path, n, fs)
    sig = np.full((len(LEADS), n), np.nan, dtype=np.float32)
    missing, flat = [], []
    for i, name in enumerate(LEADS):
        if name not in leads:
            missing.append(name)
            continue
        v = np.asarray(leads[name], dtype=np.float64)
        bad = ~np.isfinite(v)
        if bad.all():
            missing.append(name)
            continue
        if bad.any():
            raise ReadError(path, f"lead {name} has {int(bad.sum())} missing (NaN) samples of {n}; "
                                  "a trace with gaps cannot be measured or analysed")
        peak = float(np.abs(v).max())
        if peak > MAX_ABS_MV:  # also keeps float32 from overflowing to inf
            raise ReadError(path, f"lead {name} reaches {peak:.3g} mV: not a plausible ECG amplitude "
                                  "(damaged file or wrong units)")
        if np.ptp(v) < FLAT_MV:
            flat.append(name)
        sig[i] = v
    if len(missing) == len(LEADS):
        raise ReadError(path, "every lead is empty (all samples missing)")
    if len(flat) + len(missing) == len(LEADS):
        raise ReadError(path, "every lead is flat (no signal above 20 µV): electrodes not connected "
                              "or the file holds no ECG")
    if missing:
        notes.append(f"Missing lead{'s' if len(missing) > 1 else ''}: {', '.join(missing)} "
                     "(shown as missing; ECG2AF needs all 12 leads).")
    if flat:
        notes.append(f"Flat lead{'s' if len(flat) > 1 else ''} (no signal): {', '.join(flat)} — "
                     "electrode off or not recorded.")
    if ignored:
        notes.append(f"Not part of the 12-lead ECG, not shown: {', '.join(ignored)}.")
    present = [i for i, name in enumerate(LEADS) if name not in missing and name not in flat]
    p2p = float(np.median(np.ptp(sig[present], axis=1))) if present else 0.0  # leads with a signal only
    if p2p > 15 or p2p < 0.05:
        notes.append(f"Unusual amplitudes (median lead peak-to-peak {p2p:.3g} mV): check the amplitude units.")
    x_model, model_notes = model_input(sig, fs)
    notes.extend(model_notes)
    meta = {
        "format": fmt,
        "fs": float(fs),
        "n_samples": int(n),
        "duration_s": round(seconds, 3),
        "leads": list(LEADS),
        "missing_leads": missing,
        "flat_leads": flat,
        "units": "mV",
        "model_fs": MODEL_FS,
        "model_samples": MODEL_SAMPLES,
        "resampled": abs(fs - MODEL_FS) > 1e-6,
    }
    meta.update(extra_meta or {})
    return Study("ecg", str(path), sha256 or sha256_file(path), path.name, metadata=meta,
                 data={"signal_mv": sig, "fs": float(fs), "model_input": x_model}, notes=notes)


# -- ML4H hd5 ---------------------------------------------------------------------------------
def _attr(ds, *names):
    for n in names:
        if n in ds.attrs:
            v = ds.attrs[n]
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, np.ndarray) and v.size == 1:
                v = v.item()
            return v
    return None


_UNIT_SCALE = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3, "v": 1e3,
               "millivolt": 1.0, "millivolts": 1.0}


def _read_hd5(path: Path) -> Study:
    """HDF5 is parsed by libhdf5, which can hang or allocate gigabytes on a damaged file where Python cannot
    step in: the read runs in the guarded reader process (time and memory limits)."""
    from inference.guard import guarded

    return guarded(_read_hd5_unguarded, path)


def _read_hd5_unguarded(path: Path) -> Study:
    try:
        return _read_hd5_checked(path)
    except ReadError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError) as e:
        # h5py parses the file lazily: a damaged object header or attribute surfaces wherever it is touched
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ReadError(path, f"the HDF5 file is damaged ({type(e).__name__}{': ' + first if first else ''})") from None


def _hd5_identity(f, g) -> dict:
    """Patient identity from the file's or the ECG group's attributes (patient_id, name, dob, …), if any."""
    from ..patients import identity_from_attrs

    attrs: dict = {}
    for obj in (g, f):
        try:
            for k in obj.attrs.keys():
                attrs.setdefault(k, obj.attrs[k])
        except Exception:  # an unreadable attribute is no identity, not a damaged ECG
            continue
    return identity_from_attrs(attrs).as_dict()


def _read_hd5_checked(path: Path) -> Study:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ReadError(path, f"not a readable HDF5 file ({e})") from None
    notes: list[str] = []
    with f:
        if ML4H_GROUP not in f:
            if "model_config" in f.attrs or "model_weights" in f:
                raise ReadError(path, "this is a Keras model file, not an ECG. Install weights with "
                                      "'lightbox weights install FILE'")
            top = ", ".join(list(f.keys())[:8]) or "nothing"
            raise ReadError(path, f"HDF5 file without an ML4H resting ECG: expected group '{ML4H_GROUP}' with "
                                  f"strip_<lead>/instance_0 datasets (found: {top})")
        g = f[ML4H_GROUP]
        ident = _hd5_identity(f, g)
        if not isinstance(g, h5py.Group):
            raise ReadError(path, f"'{ML4H_GROUP}' is a {type(g).__name__}, not a group of strip_<lead> datasets")
        leads: dict[str, np.ndarray] = {}
        fs_attr = None
        unit_scale = None
        ignored = []
        instances = set()
        for key in g.keys():
            if not key.startswith("strip_"):
                continue
            name = lead_name(key)
            if name is None:
                ignored.append(key)
                continue
            item = g[key]
            if isinstance(item, h5py.Group):
                inst = sorted(item.keys())
                instances.update(inst)
                if "instance_0" in item:
                    ds = item["instance_0"]
                elif inst:
                    ds = item[inst[0]]
                else:
                    continue
            else:
                ds = item
            if not isinstance(ds, h5py.Dataset) or ds.dtype.kind not in "iuf":
                raise ReadError(path, f"{ML4H_GROUP}/{key} is not a numeric waveform")
            if ds.ndim != 1 and not (ds.ndim == 2 and 1 in ds.shape):
                raise ReadError(path, f"{ML4H_GROUP}/{key} has shape {ds.shape}; expected one trace per lead")
            if ds.size > MAX_SAMPLES:
                raise ReadError(path, f"{ML4H_GROUP}/{key} has {ds.size} samples: too long for a resting ECG")
            leads[name] = np.asarray(ds[()], dtype=np.float64).reshape(-1)
            fs_attr = fs_attr or _attr(ds, "sampling_frequency", "sample_rate", "fs", "sampling_rate")
            u = _attr(ds, "units", "unit")
            if u is not None and unit_scale is None:
                unit_scale = _UNIT_SCALE.get(str(u).strip().lower())
        if not leads:
            raise ReadError(path, f"group '{ML4H_GROUP}' holds no strip_<lead> ECG datasets "
                                  "(I, II, III, aVR, aVL, aVF, V1–V6)")
        text = None
        if "ecg_rest_text" in g:
            t = g["ecg_rest_text"]
            t = t["instance_0"] if isinstance(t, h5py.Group) and "instance_0" in t else t
            if isinstance(t, h5py.Dataset):
                v = t[()]
                text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
    n = len(next(iter(leads.values())))
    if fs_attr:
        fs = float(fs_attr)
    elif n == MODEL_SAMPLES:
        fs = float(MODEL_FS)
    else:
        fs = n / 10.0
        notes.append(f"No sampling rate in the file: {n} samples taken as a 10 s strip ({fs:g} Hz), "
                     "the ML4H resting-ECG convention.")
    if unit_scale is None:
        # no units attribute: ML4H strips are integers in µV-sized steps (peak-to-peak in the hundreds
        # or thousands); a file already in mV has a peak-to-peak of a few units
        p2p = float(np.median([np.ptp(v[np.isfinite(v)]) if np.isfinite(v).any() else 0.0
                               for v in leads.values()]))
        if 0 < p2p < 50:
            unit_scale = 1.0
            notes.append("Amplitude units not stored in the file: values look like mV and are shown as such.")
        else:
            unit_scale = 1e-3
            notes.append("Amplitude units not stored in the file: taken as µV (the ML4H resting-ECG convention).")
    leads = {k: v * unit_scale for k, v in leads.items()}
    if len(instances) > 1:
        notes.append(f"The file holds {len(instances)} ECG instances; showing instance_0 (as ECG2AF reads).")
    extra = {"interpretation_text": text} if text else {}
    if ident:
        extra["patient"] = ident
    return _finish(path, "ML4H hd5", leads, fs, notes, extra, ignored)


# -- WFDB ---------------------------------------------------------------------------------------
def _read_wfdb(path: Path) -> Study:
    import wfdb

    hea = path.with_suffix(".hea")
    if not hea.exists():
        raise ReadError(path, f"WFDB signal file without its header: {hea.name} not found beside it")
    try:  # check the header's claims before anything is allocated
        head = wfdb.rdheader(str(hea.with_suffix("")))
    except Exception as e:
        raise ReadError(path, f"WFDB header could not be read: {type(e).__name__}: {e}") from None
    if head.fs and head.sig_len:
        _check_length(path, int(head.sig_len), float(head.fs))
    try:
        rec = wfdb.rdrecord(str(hea.with_suffix("")))
    except Exception as e:
        raise ReadError(path, f"WFDB record could not be read: {type(e).__name__}: {e}") from None
    if rec.p_signal is None:
        raise ReadError(path, "WFDB record has no signals")
    leads, ignored = {}, []
    units = rec.units or ["mV"] * rec.n_sig
    for j, nm in enumerate(rec.sig_name):
        name = lead_name(nm)
        if name is None or name in leads:
            ignored.append(nm)
            continue
        scale = _UNIT_SCALE.get(str(units[j]).strip().lower(), 1.0)
        leads[name] = rec.p_signal[:, j].astype(np.float64) * scale
    notes: list[str] = []
    if not leads and len(ignored) == 1 and _GENERIC_ECG.fullmatch(str(ignored[0]).strip()):
        # a single-lead recorder (AliveCor, PhysioNet/CinC 2017) names its one channel just "ECG"
        j = list(rec.sig_name).index(ignored[0])
        scale = _UNIT_SCALE.get(str(units[j]).strip().lower(), 1.0)
        leads["I"] = rec.p_signal[:, j].astype(np.float64) * scale
        notes.append(f"The record's only signal is named '{ignored[0]}', not a lead: shown as lead I (single-lead "
                     "recorders such as AliveCor record lead I).")
        ignored = []
    meta = {"record": rec.record_name, "comments": list(rec.comments or [])[:20]}
    from ..patients import identity_from_wfdb

    ident = identity_from_wfdb(rec.comments or [], getattr(rec, "base_date", None), getattr(rec, "base_time", None))
    if ident.as_dict():
        meta["patient"] = ident.as_dict()
    # one record, one study, whichever of its files was opened: the source is the header and the
    # hash covers the header and every signal file it names
    members = [hea] + sorted({hea.parent / f for f in (rec.file_name or [])})
    digest = sha256_bytes("\n".join(f"{m.name} {sha256_file(m)}" for m in members if m.exists()).encode())
    meta["files"] = [m.name for m in members]
    return _finish(hea, "WFDB", leads, float(rec.fs), notes, meta, ignored, sha256=digest)


_GENERIC_ECG = re.compile(r"(?i)(ecg|ekg)[ _-]?\d?")

# -- CSV ----------------------------------------------------------------------------------------
_TIME_COLS = {"time", "t", "time_s", "time(s)", "seconds", "sec", "s", "time_ms", "ms", "sample", "index"}


def _read_csv(path: Path) -> Study:
    raw = path.read_bytes()
    if len(raw) > 200 << 20:
        raise ReadError(path, "CSV file larger than 200 MB: not a resting ECG")
    text = raw.decode("utf-8-sig", errors="replace")
    lines = text.splitlines()
    fs_hint = None
    body = []
    for ln in lines:
        if ln.lstrip().startswith("#"):
            m = re.search(r"(?:fs|sampling[_ ]?(?:rate|frequency)|sample[_ ]rate)\s*[=:]\s*([\d.]+)", ln, re.I)
            if m:
                try:
                    fs_hint = float(m.group(1))
                except ValueError:
                    raise ReadError(path, f"the sampling-rate line gives '{m.group(1)}', not a number") from None
            continue
        if ln.strip():
            body.append(ln)
    if len(body) < 2:
        raise ReadError(path, "CSV has no data rows")
    try:
        dialect = csv.Sniffer().sniff(body[0], delimiters=",;\t")
        delim = dialect.delimiter
    except csv.Error:
        delim = ","
    header = [h.strip() for h in next(csv.reader([body[0]], delimiter=delim))]
    names = [lead_name(h) for h in header]
    if not any(names):
        raise ReadError(path, f"CSV header names no ECG leads (got: {', '.join(header[:12])}); "
                              "expected columns named I, II, III, aVR, aVL, aVF, V1–V6")
    try:
        try:  # the fast C parser for a clean table (long recordings: hundreds of thousands of rows)
            data = np.loadtxt(body[1:], delimiter=delim, dtype=np.float64, ndmin=2)
        except ValueError:  # empty or odd cells: genfromtxt marks them NaN so the error can name the column
            data = np.genfromtxt(io.StringIO("\n".join(body[1:])), delimiter=delim, dtype=np.float64,
                                 invalid_raise=True, ndmin=2)
    except ValueError as e:
        raise ReadError(path, f"CSV rows are not all numeric or have different column counts ({e})") from None
    if data.ndim != 2 or data.size == 0:
        raise ReadError(path, "CSV has no numeric data rows")
    if data.shape[1] != len(header):
        raise ReadError(path, f"CSV has {len(header)} header columns but {data.shape[1]} data columns")
    bad = np.isnan(data)
    partial = bad.any(axis=0) & ~bad.all(axis=0)
    if partial.any():
        col = int(np.argmax(partial))
        row = int(np.argmax(bad[:, col]))
        raise ReadError(path, f"CSV values are not all numeric: column '{header[col]}', data row {row + 1} "
                              f"({int(bad[:, col].sum())} empty or non-numeric cells in that column)")
    notes: list[str] = []
    fs = fs_hint
    time_col = next((i for i, h in enumerate(header) if h.lower().replace(" ", "") in _TIME_COLS), None)
    if fs is None and time_col is not None:
        h = header[time_col].lower()
        dt = np.median(np.diff(data[:, time_col]))
        if h in ("sample", "index"):
            dt = None
        elif dt and dt > 0:
            fs = (1000.0 if "ms" in h else 1.0) / dt
            fs = round(fs, 3)
    if fs is None:
        fs = float(MODEL_FS)
        notes.append("No sampling rate in the CSV (no '# fs=' line or time column): taken as 500 Hz.")
    leads, ignored = {}, []
    for i, (h, nm) in enumerate(zip(header, names)):
        if i == time_col:
            continue
        if nm is None or nm in leads:
            ignored.append(h)
            continue
        scale = 1e-3 if re.search(r"(uv|µv)", h, re.I) else 1.0
        leads[nm] = data[:, i] * scale
    return _finish(path, "CSV", leads, fs, notes, {"columns": header}, ignored)


# -- DICOM 12-lead waveform ---------------------------------------------------------------------
def _read_dicom(path: Path) -> Study:
    try:
        return _read_dicom_checked(path)
    except (ReadError, MemoryError):
        raise
    except Exception as e:  # pydicom parses lazily: a damaged or missing element surfaces where it is read
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ReadError(path, f"the DICOM waveform is damaged or incomplete "
                              f"({type(e).__name__}{': ' + first if first else ''})") from None


def _read_dicom_checked(path: Path) -> Study:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
    except Exception as e:
        raise ReadError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from None
    if "WaveformSequence" not in ds:
        raise ReadError(path, "DICOM file holds no waveform (an image, not an ECG)")
    group = None
    for i, w in enumerate(ds.WaveformSequence):
        label = str(w.get("MultiplexGroupLabel", "")).upper()
        if "MEDIAN" in label:
            continue
        group = i
        break
    if group is None:
        raise ReadError(path, "DICOM waveform holds only median beats, no rhythm recording")
    w = ds.WaveformSequence[group]
    fs = float(w.SamplingFrequency)
    try:
        arr = ds.waveform_array(group)  # sensitivity, correction and baseline applied
    except Exception as e:
        raise ReadError(path, f"DICOM waveform data could not be decoded ({type(e).__name__}: {e})") from None
    leads, ignored = {}, []
    for j, ch in enumerate(w.ChannelDefinitionSequence):
        src = ch.ChannelSourceSequence[0] if "ChannelSourceSequence" in ch else None
        label = str(src.CodeMeaning) if src is not None and "CodeMeaning" in src else str(ch.get("ChannelLabel", j))
        name = lead_name(label)
        if name is None or name in leads:
            ignored.append(label)
            continue
        unit = "uV"
        if "ChannelSensitivityUnitsSequence" in ch:
            unit = str(ch.ChannelSensitivityUnitsSequence[0].CodeValue)
        scale = _UNIT_SCALE.get(unit.strip().lower(), 1e-3)
        leads[name] = arr[:, j].astype(np.float64) * scale
    meta = {"sop_class": str(ds.get("SOPClassUID", "")), "multiplex_group": str(w.get("MultiplexGroupLabel", ""))}
    from ..patients import identity_from_dicom

    ident = identity_from_dicom(ds).as_dict()
    if len(ident) > 1:  # more than its source
        meta["patient"] = ident
    return _finish(path, "DICOM waveform", leads, fs, [], meta, ignored)


# -- entry point --------------------------------------------------------------------------------
def read(path) -> Study:
    path = Path(path)
    require_file(path)
    ext = path.suffix.lower()
    if ext in (".hd5", ".h5", ".hdf5"):
        return _read_hd5(path)
    if ext in (".hea", ".dat"):
        return _read_wfdb(path)
    if ext == ".csv":
        return _read_csv(path)
    if ext == ".dcm":
        return _read_dicom(path)
    raise ReadError(path, f"'{ext}' is not an ECG format Lightbox reads ({' '.join(EXTENSIONS)})")


def write_ml4h_hd5(path: str | Path, signal_mv: np.ndarray, fs: float = MODEL_FS, text: str = "",
                   attrs: dict | None = None) -> Path:
    """Write a 12-lead ECG (rows in LEADS order, mV) in the ML4H layout ECG2AF reads.

    Strips are stored in µV (ML4H convention) with ``units`` and ``sampling_frequency`` attributes,
    plus ``ecg_rest_text/instance_0`` (ML4H's ECG tensor maps read it before the strips). ``attrs``: file
    attributes (e.g. ``patient_id``, ``patient_name``: the reader's patient identity).
    """
    import h5py

    path = Path(path)
    sig = np.asarray(signal_mv, dtype=np.float64)
    with h5py.File(path, "w") as f:
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
        g = f.create_group(ML4H_GROUP)
        for i, name in enumerate(LEADS):
            if np.isnan(sig[i]).all():
                continue
            ds = g.create_dataset(f"strip_{name}/instance_0", data=np.round(sig[i] * 1000.0).astype(np.float32),
                                  compression="gzip", track_times=False)
            ds.attrs["units"] = "uV"
            ds.attrs["sampling_frequency"] = float(fs)
        g.create_dataset("ecg_rest_text/instance_0", data=text, dtype=h5py.string_dtype(), track_times=False)
    return path
