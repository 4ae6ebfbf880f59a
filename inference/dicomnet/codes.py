"""Coded concepts for what Lightbox reports in a Structured Report.

Standard codes where one exists (SNOMED CT ``SCT``, LOINC ``LN``, DICOM ``DCM``, units in ``UCUM``), else
Lightbox's local scheme ``99LBX`` ("99" prefix: a private coding scheme, PS3.16 §8.2), described in the SR's
Coding Scheme Identification Sequence. A local code value is the output's key when it fits 16 characters,
else ``LBX-`` and a hash of it; its meaning is the key itself, so a reader sees what the model wrote.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

LOCAL_SCHEME = "99LBX"
LOCAL_SCHEME_NAME = "Lightbox model outputs"


def _cc(value: str, scheme: str, meaning: str):
    import highdicom as hd

    return hd.sr.CodedConcept(value, scheme, meaning[:64])


def local(key: str):
    k = str(key)
    value = k if re.fullmatch(r"[A-Za-z0-9_.%()-]{1,16}", k) else "LBX-" + hashlib.sha1(k.encode()).hexdigest()[:10]
    return _cc(value, LOCAL_SCHEME, k or "unnamed")


def unit(key: str, value: Any = None):
    k = str(key).lower()
    if k.endswith("%") or k.endswith("_pct") or k.endswith("percent"):
        return _cc("%", "UCUM", "percent")
    if k.endswith("_bpm") or k.endswith("/min"):
        return _cc("/min", "UCUM", "per minute")
    if k.endswith("_ms"):
        return _cc("ms", "UCUM", "millisecond")
    if k.endswith("_s") or k.endswith("_seconds"):
        return _cc("s", "UCUM", "second")
    if k.endswith("_mm"):
        return _cc("mm", "UCUM", "millimeter")
    if k.endswith("_cm"):
        return _cc("cm", "UCUM", "centimeter")
    if k.endswith("_fps"):
        return _cc("/s", "UCUM", "per second")
    if k.endswith("_hz"):
        return _cc("Hz", "UCUM", "hertz")
    return _cc("1", "UCUM", "no units")


# key -> (name concept, unit) for outputs with a standard meaning
def measurement_name(key: str):
    k = str(key)
    if k in ("LVEF_whole_video_%", "LVEF_%", "ef_percent"):
        return _cc("18043-0", "LN", "Left Ventricular Ejection Fraction by US"), _cc("%", "UCUM", "percent")
    if k == "heart_rate_bpm":
        return _cc("8867-4", "LN", "Heart rate"), _cc("/min", "UCUM", "per minute")
    if k == "p_pneumonia":
        return _cc("p_pneumonia", LOCAL_SCHEME, "Probability of pneumonia (model output)"), _cc("1", "UCUM", "no units")
    if k == "probability":
        return _cc("122157", "DCM", "Probability"), _cc("1", "UCUM", "no units")
    return local(k), unit(k)


PROCEDURE = {
    "xray": ("399208008", "SCT", "Plain chest X-ray"),
    "echo": ("40701008", "SCT", "Echocardiography"),
    "ecg": ("268400002", "SCT", "12 lead electrocardiogram"),
    "endo": ("310030000", "SCT", "Endoscopy"),
    "pcg": ("LBX-PCG", LOCAL_SCHEME, "Heart sound recording"),
}
RHYTHM_VALUE = {"AF": ("49436004", "SCT", "Atrial fibrillation"), "N": ("64730000", "SCT", "Normal sinus rhythm")}


def procedure(modality: str):
    return _cc(*PROCEDURE.get(modality, ("LBX-STUDY", LOCAL_SCHEME, "Lightbox study")))


def finding_name():
    return _cc("121071", "DCM", "Finding")


def qualitative_value(key: str, v: Any):
    if isinstance(v, bool):
        return _cc("373066001", "SCT", "Yes") if v else _cc("373067005", "SCT", "No")
    s = str(v)
    if key in ("rhythm",) and s in RHYTHM_VALUE:
        return _cc(*RHYTHM_VALUE[s])
    if key in ("label", "finding") and s.lower() == "pneumonia":
        return _cc("233604007", "SCT", "Pneumonia")
    return _cc("LBX-" + hashlib.sha1(s.encode()).hexdigest()[:10], LOCAL_SCHEME, s[:64] or "(empty)")


def finite(v: Any) -> float | None:
    """A result value as a finite number, or None (booleans, text, NaN and infinities are not numbers)."""
    from inference.patients import finite_number

    return finite_number(v)
