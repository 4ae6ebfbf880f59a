"""Patients: who a study belongs to, and how to take that out again (pure: no Qt, no store, no I/O).

- ``identity_from_dicom(ds)`` / ``identity_from_wfdb(comments, base_date)`` / ``identity_from_attrs(attrs)``:
  what a file says about its patient, as an :class:`Identity` (empty fields where it says nothing).
  Readers put ``Identity.as_dict()`` under ``study.metadata["patient"]``; the store links the study to a
  patient by :meth:`Identity.key` (PatientID first, else name + birth date), else leaves it unassigned.
- ``study_code`` / ``patient_code``: stable codes that stand in for identity in anonymised exports.
- :class:`Scrubber`: removes name, ID, birth date and accession number from text and, recursively,
  from dicts and lists (keys that carry identity are dropped, every string is scrubbed).
- ``key_result``: the one line per study the timeline and the list show (EF, rhythm / AF risk,
  P(pneumonia) or anomaly score, heart-sound class, polyp findings) plus the numbers a trend plots.
- :class:`StudyFilter` and ``group_by_patient``: the study list's search, filters and grouping, over the
  rows ``Store.studies()`` returns.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

UNASSIGNED = "unassigned"
REMOVED = "[removed]"

# what an anonymised export must not contain (Identity fields)
PHI_FIELDS = ("name", "external_id", "birth_date", "accession")

# names files use for "no name": never a patient of their own
_PLACEHOLDERS = {"", "anonymous", "anon", "anonymized", "anonymised", "unknown", "none", "n/a", "na", "null",
                 "-", "0", "^", "patient", "noname", "no name", "removed", "[removed]"}

_MODALITY_PREFIX = {"ecg": "ECG", "pcg": "PCG", "echo": "ECHO", "xray": "XR", "endo": "ENDO"}


# -- identity ----------------------------------------------------------------------------------------------
def _clean(v: Any) -> str:
    s = "" if v is None else str(v)
    s = s.replace("\x00", "").strip()
    return "" if s.lower() in _PLACEHOLDERS else s


def iso_date(v: Any) -> str:
    """A DICOM DA (YYYYMMDD), ISO date/datetime, date object or dd/mm/yyyy / dd.mm.yyyy text as YYYY-MM-DD;
    "" when it is none of these or not a real date."""
    if v is None or v == "":
        return ""
    if isinstance(v, _dt.datetime):
        return v.date().isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    s = str(v).strip()
    for pat, order in ((r"^(\d{4})(\d{2})(\d{2})$", "ymd"), (r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", "ymd"),
                       (r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})$", "dmy"), (r"^(\d{1,2})-(\d{1,2})-(\d{4})$", "dmy")):
        m = re.match(pat, s)
        if m:
            a, b, c = (int(x) for x in m.groups())
            y, mo, d = (a, b, c) if order == "ymd" else (c, b, a)
            try:
                return _dt.date(y, mo, d).isoformat()
            except ValueError:
                return ""
    return ""


def iso_time(v: Any) -> str:
    """DICOM TM (HHMMSS.frac) or HH:MM[:SS] as HH:MM:SS; "" otherwise."""
    s = "" if v is None else str(v).strip()
    m = re.match(r"^(\d{2}):?(\d{2})(?::?(\d{2}))?", s)
    if not m:
        return ""
    h, mi, se = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
    if h > 23 or mi > 59 or se > 59:
        return ""
    return f"{h:02d}:{mi:02d}:{se:02d}"


def person_name(v: Any) -> str:
    """A DICOM PN (``FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX``, maybe with ``=`` ideographic groups) as
    "FAMILY, GIVEN MIDDLE"; other text as it is."""
    s = _clean(v)
    if not s:
        return ""
    s = s.split("=")[0]  # alphabetic group only
    if "^" not in s:
        return _clean(s)
    parts = [p.strip() for p in s.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    rest = " ".join(p for p in (given, middle) if p)
    out = f"{family}, {rest}" if family and rest else family or rest
    if prefix:
        out = f"{prefix} {out}"
    if suffix:
        out = f"{out} {suffix}"
    return _clean(out)


def normalise_name(name: str) -> str:
    """Case, punctuation and order insensitive form of a name, for matching ("Doe, John" == "JOHN DOE")."""
    words = re.findall(r"[^\W\d_]+", name.lower())
    return " ".join(sorted(words))


@dataclass
class Identity:
    external_id: str = ""  # the ID in the source file (DICOM PatientID, an MRN)
    issuer: str = ""  # DICOM IssuerOfPatientID: IDs from two issuers are two patients
    name: str = ""  # "FAMILY, GIVEN" for display
    birth_date: str = ""  # YYYY-MM-DD
    sex: str = ""  # M / F / O as the file says
    study_date: str = ""  # YYYY-MM-DD of the acquisition (not a PHI field here: needed for the timeline)
    study_time: str = ""  # HH:MM:SS
    accession: str = ""
    source: str = ""  # where it came from: "DICOM", "WFDB header", "HDF5 attributes"

    @property
    def assigned(self) -> bool:
        """True when the file names a patient (an ID, or a name)."""
        return bool(self.external_id or self.name)

    def key(self) -> str | None:
        """The identity a stored patient is matched on: issuer + ID when there is an ID, else the
        normalised name + birth date; None when the file names no patient."""
        if self.external_id:
            return f"id:{self.issuer.strip().lower()}|{self.external_id.strip()}"
        if self.name and normalise_name(self.name):
            return f"name:{normalise_name(self.name)}|{self.birth_date}"
        return None

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Identity:
        d = d or {}
        return cls(**{k: str(d.get(k) or "") for k in cls.__dataclass_fields__})


def identity_from_dicom(ds: Any) -> Identity:
    """From a pydicom Dataset (or any mapping with ``.get``): PatientID, IssuerOfPatientID, PatientName,
    PatientBirthDate, PatientSex, StudyDate/Time (else Series/Acquisition/Content date), AccessionNumber."""
    def g(key: str) -> Any:
        try:
            return ds.get(key, "")
        except Exception:  # a damaged element: no value rather than no study
            return ""

    date = ""
    for k in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
        date = iso_date(_clean(g(k)))
        if date:
            break
    time = ""
    for k in ("StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime"):
        time = iso_time(_clean(g(k)))
        if time:
            break
    return Identity(external_id=_clean(g("PatientID")), issuer=_clean(g("IssuerOfPatientID")),
                    name=person_name(g("PatientName")), birth_date=iso_date(_clean(g("PatientBirthDate"))),
                    sex=_clean(g("PatientSex")).upper()[:1], study_date=date, study_time=time,
                    accession=_clean(g("AccessionNumber")), source="DICOM")


# key names files use (lower case, no separators) -> Identity field
_ATTR_KEYS = {
    "patientid": "external_id", "patient": "external_id", "mrn": "external_id", "subjectid": "external_id",
    "subject": "external_id", "pid": "external_id", "issuerofpatientid": "issuer",
    "patientname": "name", "name": "name", "subjectname": "name",
    "patientbirthdate": "birth_date", "birthdate": "birth_date", "dob": "birth_date", "dateofbirth": "birth_date",
    "patientsex": "sex", "sex": "sex", "gender": "sex",
    "studydate": "study_date", "acquisitiondate": "study_date", "recordingdate": "study_date",
    "ecgdate": "study_date", "date": "study_date", "studytime": "study_time", "acquisitiontime": "study_time",
    "accession": "accession", "accessionnumber": "accession",
}


def _norm_key(k: str) -> str:
    return re.sub(r"[^a-z]", "", str(k).lower())


def identity_from_attrs(attrs: Mapping[str, Any], source: str = "HDF5 attributes") -> Identity:
    """From key/value metadata (HDF5 attributes, a sidecar dict): ``patient_id``/``PatientID``/``mrn``,
    ``patient_name``/``name``, ``birth_date``/``dob``, ``sex``, ``study_date``/``acquisition_date``,
    ``accession``. Keys are matched case- and separator-insensitively; unknown keys are ignored."""
    vals: dict[str, str] = {}
    for k, v in attrs.items():
        f = _ATTR_KEYS.get(_norm_key(k))
        if f is None or f in vals:
            continue
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if hasattr(v, "item") and getattr(v, "size", 2) == 1:  # numpy scalar / 1-element array
            v = v.item()
            if isinstance(v, bytes):
                v = v.decode("utf-8", "replace")
        s = _clean(v)
        if not s:
            continue
        if f in ("birth_date", "study_date"):
            s = iso_date(s)
        elif f == "study_time":
            s = iso_time(s)
        elif f == "name":
            s = person_name(s)
        elif f == "sex":
            s = s.upper()[:1]
        if s:
            vals[f] = s
    if not vals:
        return Identity()
    return Identity(source=source, **vals)


def identity_from_wfdb(comments: Iterable[str] = (), base_date: Any = None, base_time: Any = None) -> Identity:
    """From a WFDB header: ``key: value`` comment lines (``patient_id: 123``, ``name: ...``, ``dob: ...``,
    PTB's ``<age>: 63 <sex>: M`` is read for sex only) and the record's base date/time."""
    attrs: dict[str, str] = {}
    for line in comments or ():
        line = str(line)
        for k, v in re.findall(r"<([^>]+)>\s*:\s*([^<]*)", line):  # "<age>: 63 <sex>: M"
            attrs.setdefault(k.strip(), v.strip())
        m = re.match(r"^\s*([A-Za-z][A-Za-z _-]{0,30}?)\s*[:=]\s*(.+?)\s*$", line)
        if m and "<" not in line:
            attrs.setdefault(m.group(1).strip(), m.group(2))
    ident = identity_from_attrs(attrs, source="WFDB header")
    if base_date and not ident.study_date:
        ident.study_date = iso_date(base_date)
    if base_time and not ident.study_time:
        ident.study_time = iso_time(base_time.isoformat() if hasattr(base_time, "isoformat") else base_time)
    if ident.study_date and not ident.source:
        ident.source = "WFDB header"
    return ident


def identity_from_metadata(meta: Mapping[str, Any] | None) -> Identity:
    """What a stored study's metadata says: the reader's ``patient`` dict, or the older X-ray keys
    (``patient_id``, ``study_date``) that databases from before patients were stored carry."""
    meta = meta or {}
    p = meta.get("patient")
    if isinstance(p, Mapping):
        return Identity.from_dict(p)
    ident = Identity(external_id=_clean(meta.get("patient_id")), study_date=iso_date(meta.get("study_date")))
    if ident.external_id or ident.study_date:
        ident.source = "DICOM"
    return ident


# -- codes -------------------------------------------------------------------------------------------------
def _code(text: str, n: int = 8) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:n]


def study_code(sha256: str, modality: str, salt: str = "") -> str:
    """A stable code for a study in anonymised exports ("ECHO-7K3M9Q2A"): the same study gets the same
    code on every export from one database (``salt`` is the database's own secret, so the code does not
    reveal the file's hash)."""
    return f"{_MODALITY_PREFIX.get(modality, modality.upper())}-{_code(f'{salt}|study|{modality}|{sha256}')}"


def patient_code(patient_ref: Any, salt: str = "") -> str:
    """A stable code for a patient in anonymised exports ("P-4TQ2ZB8M"); "" for an unassigned study."""
    if patient_ref in (None, ""):
        return ""
    return f"P-{_code(f'{salt}|patient|{patient_ref}')}"


# -- scrubbing ---------------------------------------------------------------------------------------------
# metadata keys that carry identity: dropped from anonymised dicts whatever their value
PHI_KEYS = {"patient", "patientid", "patientname", "patientbirthdate", "birthdate", "dob", "dateofbirth",
            "accession", "accessionnumber", "otherpatientids", "issuerofpatientid", "externalid",
            "patientexternalid", "patientsname", "mrn", "institutionname", "referringphysicianname",
            "operatorsname", "performingphysicianname"}
# keys that hold where a file lives (a folder may be named after the patient): anonymised exports drop them
PATH_KEYS = {"source", "sourcepath", "path", "file", "files", "folder", "directory"}

_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]


def date_variants(iso: str) -> list[str]:
    """The ways a date is written: 19610417, 1961-04-17, 17/04/1961, 04/17/1961, 17.04.1961, 17 Apr 1961…"""
    try:
        d = _dt.date.fromisoformat(iso)
    except (TypeError, ValueError):
        return [iso] if iso else []
    y, m, dd = d.year, d.month, d.day
    mon, mon3 = _MONTHS[m - 1], _MONTHS[m - 1][:3]
    out = {f"{y:04d}{m:02d}{dd:02d}", f"{y:04d}-{m:02d}-{dd:02d}", f"{y:04d}/{m:02d}/{dd:02d}",
           f"{y:04d}.{m:02d}.{dd:02d}", f"{dd:02d}/{m:02d}/{y:04d}", f"{m:02d}/{dd:02d}/{y:04d}",
           f"{dd:02d}.{m:02d}.{y:04d}", f"{dd:02d}-{m:02d}-{y:04d}", f"{m:02d}-{dd:02d}-{y:04d}",
           f"{dd}/{m}/{y}", f"{m}/{dd}/{y}", f"{dd}.{m}.{y}",
           f"{dd} {mon} {y}", f"{dd} {mon3} {y}", f"{mon} {dd}, {y}", f"{mon3} {dd}, {y}", f"{dd}-{mon3}-{y}"}
    return sorted(out, key=len, reverse=True)


def name_variants(name: str, raw: str = "") -> list[str]:
    """Full forms of a name and each of its words (2+ letters): "DOE, JOHN", "JOHN DOE", "DOE^JOHN", "DOE"…"""
    out: set[str] = set()
    for s in (name, raw):
        s = (s or "").strip()
        if s:
            out.add(s)
            out.add(s.replace("^", " ").strip())
    words = re.findall(r"[^\W\d_][^\W\d_'-]*", f"{name} {raw}")
    words = [w for w in words if len(w) >= 2]
    if words:
        out.add(" ".join(words))
        out.add(" ".join(reversed(words)))
        out.add("^".join(words))
        out.update(words)
    return sorted((o for o in out if o), key=len, reverse=True)


class Scrubber:
    """Removes the identity of one or more patients from text and from nested dicts/lists.

    ``Scrubber([identity, ...], extra=[...], replacement=...)``: every name (full forms and each word),
    ID, birth date (in the usual spellings) and accession number is replaced by ``replacement``; keys in
    ``drop_keys`` (default :data:`PHI_KEYS`; add :data:`PATH_KEYS` for metadata) are dropped from dicts. Matching ignores case; a short term (under 6 characters)
    only matches a whole word, so a 3-letter surname does not eat the middle of other words.
    """

    def __init__(self, identities: Iterable[Identity | Mapping[str, Any]] = (), extra: Iterable[str] = (),
                 replacement: str = REMOVED, drop_keys: Iterable[str] = PHI_KEYS):
        self.replacement = replacement
        self.drop_keys = {_norm_key(k) for k in drop_keys}
        terms: set[str] = set()
        for ident in identities:
            if not isinstance(ident, Identity):
                ident = Identity.from_dict(ident)
            terms.update(name_variants(ident.name))
            for v in (ident.external_id, ident.accession):
                if v:
                    terms.add(v)
            terms.update(date_variants(ident.birth_date))
        terms.update(t for t in extra if t)
        self.terms = sorted({t.strip() for t in terms if t and t.strip() and t.strip().lower() not in _PLACEHOLDERS},
                            key=len, reverse=True)
        parts = []
        for t in self.terms:
            esc = re.escape(t)
            parts.append(rf"(?<![0-9A-Za-z]){esc}(?![0-9A-Za-z])" if len(t) < 6 else esc)
        self._rx = re.compile("|".join(parts), re.IGNORECASE) if parts else None

    def text(self, s: str) -> str:
        if not s or self._rx is None:
            return s
        return self._rx.sub(self.replacement, s)

    def found(self, s: str) -> list[str]:
        """The identity terms present in ``s`` (for checks and tests)."""
        if not s or self._rx is None:
            return []
        return sorted({m.group(0) for m in self._rx.finditer(s)})

    def __call__(self, obj: Any) -> Any:
        """A scrubbed copy: strings scrubbed, PHI keys dropped, containers walked."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {k: self(v) for k, v in obj.items() if _norm_key(k) not in self.drop_keys}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self(v) for v in obj) if isinstance(obj, list) else tuple(self(v) for v in obj)
        return obj


# -- key results -------------------------------------------------------------------------------------------
@dataclass
class KeyResult:
    """A study's headline for the list and the timeline, and the numbers a trend can plot."""
    text: str
    metrics: dict[str, float] = field(default_factory=dict)  # "EF %": 55.0 …
    labels: dict[str, str] = field(default_factory=dict)  # "rhythm": "AF" … (what a compare diffs)
    clinical: bool = True
    result_ids: list[int] = field(default_factory=list)
    #: what the result says, for its colour: "abnormal", "borderline", "normal", or "" (no verdict: noisy,
    #: outside the model's domain, a number without a cut-off)
    verdict: str = ""


VERDICTS = ("", "normal", "borderline", "abnormal")  # worst last: a study shows its worst part


def _worse(a: str, b: str) -> str:
    return a if VERDICTS.index(a) >= VERDICTS.index(b) else b


def _rhythm_verdict(label: str) -> str:
    t = label.strip().lower()
    if t in ("af", "a", "afib") or "fibrillation" in t or "flutter" in t:
        return "abnormal"
    if t in ("n", "normal", "sinus") or "normal" in t or "sinus rhythm" in t:
        return "normal"
    if t in ("o", "other") or "other" in t:
        return "borderline"
    return ""


def _outputs(r: Any) -> dict:
    return getattr(r, "outputs", None) or (r.get("outputs") if isinstance(r, Mapping) else None) or {}


def finite_number(v: Any) -> float | None:
    """A stored value as a finite number, or None (booleans, text, NaN and infinities are not numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _model(r: Any) -> str:
    return str(getattr(r, "model_id", None) or (r.get("model_id") if isinstance(r, Mapping) else "") or "").lower()


def _latest_with(results: list, pred) -> tuple[Any, Any] | None:
    """The newest result with an output ``pred(key, value, model_id)`` accepts, and that key."""
    for r in reversed(results):
        o = _outputs(r)
        for k, v in o.items():
            if not str(k).startswith("_") and pred(str(k), v, _model(r)):
                return r, k
    return None


_RHYTHM_KEYS = ("rhythm", "rhythm_class", "rhythm_label", "predicted_rhythm")


def key_result(modality: str, results: Iterable[Any], findings: Iterable[Mapping[str, Any]] = ()) -> KeyResult | None:
    """The headline of a study from its stored results (oldest first; each a Result or a dict with
    ``outputs``) and, for endoscopy, its findings. None when nothing is stored yet."""
    results = list(results)
    used: list[Any] = []
    parts: list[str] = []
    metrics: dict[str, float] = {}
    labels: dict[str, str] = {}
    verdict = ""

    def use(r):
        if r not in used:
            used.append(r)

    if modality == "echo":
        hit = _latest_with(results, lambda k, v, m: k == "LVEF_whole_video_%" and finite_number(v) is not None)
        if hit:
            r, k = hit
            ef = finite_number(_outputs(r)[k])
            cat = _outputs(r).get("LVEF_category")
            parts.append(f"EF {ef:.0f} %" + (f" ({cat})" if cat else ""))
            metrics["EF %"] = ef
            verdict = "normal" if ef >= 50 else "borderline" if ef >= 40 else "abnormal"  # HFrEF < 40, HFmrEF 40-49
            if cat:
                labels["EF category"] = str(cat)
            use(r)
    elif modality == "ecg":
        hit = _latest_with(results, lambda k, v, m: isinstance(v, str) and bool(v) and (
            k in _RHYTHM_KEYS or ("rhythm" in m and k in ("class", "label", "prediction"))))
        if hit:
            r, k = hit
            labels["rhythm"] = str(_outputs(r)[k])
            parts.append(f"rhythm {labels['rhythm']}")
            verdict = _worse(verdict, _rhythm_verdict(labels["rhythm"]))
            use(r)
        hit = _latest_with(results, lambda k, v, m: k == "af_risk_5y" and finite_number(v) is not None)
        if hit:
            r, k = hit
            v = finite_number(_outputs(r)[k])
            parts.append(f"AF risk 5 y {100 * v:.0f} %")
            metrics["AF risk 5 y %"] = round(100 * v, 2)
            use(r)
        hit = _latest_with(results, lambda k, v, m: k == "heart_rate_bpm" and finite_number(v) is not None)
        if hit:
            r, k = hit
            v = finite_number(_outputs(r)[k])
            parts.append(f"HR {v:.0f}/min")
            metrics["heart rate /min"] = v
            use(r)
    elif modality == "xray":
        hit = _latest_with(results, lambda k, v, m: (finite_number(v) is not None) and 0.0 <= finite_number(v) <= 1.0 and (
            "pneumonia" in k.lower() or ("pneumonia" in m and k in ("probability", "p", "score"))))
        if hit:
            r, k = hit
            v = finite_number(_outputs(r)[k])
            parts.append(f"P(pneumonia) {v:.2f}")
            metrics["P(pneumonia)"] = v
            use(r)
            lab = _outputs(r).get("label") or _outputs(r).get("prediction")
            if isinstance(lab, str) and lab:
                labels["pneumonia"] = lab
            thr = finite_number(_outputs(r).get("threshold"))
            if thr is not None:
                verdict = _worse(verdict, "abnormal" if v >= thr else "normal")
            elif isinstance(lab, str) and lab:
                verdict = _worse(verdict, "normal" if lab.lower() == "normal" else
                                 "abnormal" if "pneumonia" in lab.lower() else "")
        hit = _latest_with(results, lambda k, v, m: k == "anomaly_score" and finite_number(v) is not None)
        if hit:
            r, k = hit
            o = _outputs(r)
            v = finite_number(o[k])
            band = o.get("risk_band")
            parts.append(f"anomaly {v:.2f}" + (f" ({band})" if band else ""))
            metrics["anomaly score"] = v
            if band:
                labels["risk band"] = str(band)
                verdict = _worse(verdict, {"high": "abnormal", "intermediate": "borderline", "low": "normal"}
                                 .get(str(band).lower(), ""))
            use(r)
    elif modality == "pcg":
        hit = _latest_with(results, lambda k, v, m: k == "class" and isinstance(v, str) and bool(v))
        if hit:
            r, k = hit
            o = _outputs(r)
            p = finite_number(o.get("probability"))
            parts.append(str(o[k]) + (f" ({p:.2f})" if p is not None else ""))
            labels["heart sound"] = str(o[k])
            verdict = {"abnormal": "abnormal", "normal": "normal"}.get(str(o[k]).lower(), "")
            use(r)
    elif modality == "endo":
        fs = [f for f in findings if (f.get("status") or "proposed") != "rejected"]
        hit = _latest_with(results, lambda k, v, m: k == "findings_count" and finite_number(v) is not None)
        if fs or hit:
            n = len(fs) if fs else int(finite_number(_outputs(hit[0])["findings_count"]))
            confirmed = sum(1 for f in fs if f.get("status") == "confirmed")
            parts.append(f"{n} polyp finding{'s' if n != 1 else ''}" + (f", {confirmed} confirmed" if confirmed else ""))
            metrics["polyp findings"] = float(n)
            verdict = "abnormal" if n else "normal"
            if hit:
                use(hit[0])
    if not parts:
        return None
    clinical = all(bool(getattr(r, "clinical", r.get("clinical", True) if isinstance(r, Mapping) else True))
                   for r in used)
    ids = [int(i) for i in (getattr(r, "id", None) if not isinstance(r, Mapping) else r.get("id") for r in used)
           if i is not None]
    return KeyResult(" · ".join(parts), metrics, labels, clinical, ids, verdict)


def deltas(prior: KeyResult | None, current: KeyResult | None) -> list[str]:
    """What changed from the prior study to this one: "ΔEF +5 %", "rhythm: sinus → AF"."""
    if prior is None or current is None:
        return []
    out = []
    for k, v in current.metrics.items():
        if k in prior.metrics:
            d = v - prior.metrics[k]
            short = "EF" if k == "EF %" else k
            unit = " %" if k.endswith("%") else ""
            fmt = f"{d:+.0f}" if abs(v) >= 10 or unit else f"{d:+.2f}"
            out.append(f"Δ{short.replace(' %', '')} {fmt}{unit}")
    for k, v in current.labels.items():
        if k in prior.labels and prior.labels[k] != v:
            out.append(f"{k}: {prior.labels[k]} → {v}")
    return out


# -- study list: dates, filters, grouping ------------------------------------------------------------------
def study_day(row: Mapping[str, Any]) -> str:
    """The date a study is placed at: its acquisition date when the file gives one, else when it was
    first opened here (YYYY-MM-DD)."""
    return (row.get("study_date") or "")[:10] or (row.get("created_at") or row.get("opened_at") or "")[:10]


@dataclass
class StudyFilter:
    text: str = ""  # patient name or ID, study name, accession (any word, case-insensitive)
    modality: str = ""  # "" = every modality
    date_from: str = ""  # YYYY-MM-DD, inclusive
    date_to: str = ""
    non_clinical: bool = False  # only studies with a NOT A CLINICAL RESULT
    not_analysed: bool = False  # only studies without any result

    def active(self) -> bool:
        return bool(self.text.strip() or self.modality or self.date_from or self.date_to or self.non_clinical
                    or self.not_analysed)

    def matches(self, row: Mapping[str, Any]) -> bool:
        if self.modality and row.get("modality") != self.modality:
            return False
        day = study_day(row)
        if self.date_from and (not day or day < self.date_from):
            return False
        if self.date_to and (not day or day > self.date_to):
            return False
        if self.non_clinical and not (row.get("n_non_clinical") or 0):
            return False
        if self.not_analysed and (row.get("n_results") or 0):
            return False
        words = self.text.lower().split()
        if words:
            hay = " ".join(str(row.get(k) or "") for k in
                           ("patient_name", "patient_external_id", "name", "accession")).lower()
            if not all(w in hay for w in words):
                return False
        return True


def group_by_patient(rows: Iterable[Mapping[str, Any]]) -> list[tuple[dict[str, Any] | None, list[Mapping[str, Any]]]]:
    """Rows grouped under their patient (``patient_id`` column): the patient whose newest study is newest
    first, each patient's studies newest first; unassigned studies last, under ``None``."""
    groups: dict[Any, list] = {}
    heads: dict[Any, dict[str, Any]] = {}
    for r in rows:
        pid = r.get("patient_id")
        groups.setdefault(pid, []).append(r)
        if pid is not None and pid not in heads:
            heads[pid] = {"id": pid, "name": r.get("patient_name") or "", "external_id": r.get("patient_external_id") or "",
                          "birth_date": r.get("patient_birth_date") or ""}

    def newest(rs):
        return max((study_day(x), x.get("opened_at") or "") for x in rs)

    out: list[tuple[dict[str, Any] | None, list]] = []
    for pid in sorted((p for p in groups if p is not None), key=lambda p: newest(groups[p]), reverse=True):
        rs = sorted(groups[pid], key=lambda x: (study_day(x), x.get("opened_at") or ""), reverse=True)
        out.append((heads[pid], rs))
    if None in groups:
        out.append((None, groups[None]))
    return out


def patient_label(p: Mapping[str, Any] | None) -> str:
    """"DOE, JOHN · ID 12345 · born 1961-04-17" (what is known), or "unassigned"."""
    if not p:
        return UNASSIGNED
    bits = [p.get("name") or "(no name)"]
    if p.get("external_id"):
        bits.append(f"ID {p['external_id']}")
    if p.get("birth_date"):
        bits.append(f"born {p['birth_date']}")
    return " · ".join(bits)
