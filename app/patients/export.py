"""Exports with or without identity (no Qt): PDF report, CSV/JSON results table, endoscopy bundle.

Anonymised, a study is its study code (``ECHO-7K3M9Q2A``) and its patient a patient code: the name,
ID, birth date and accession number of the file and of the patient the study is filed under (with any
patient merged into it) are removed from every string that goes out, the file's path and hash are left
out, and text Lightbox draws into report images is built from the anonymised study (the study name in
a figure title is the code). Key frames of an endoscopy video are left out of an anonymised bundle: an
endoscope often burns the patient's name into the video itself.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from inference.atomic import atomic_path
from inference.patients import (
    PATH_KEYS,
    PHI_KEYS,
    Identity,
    Scrubber,
    identity_from_metadata,
    key_result,
    patient_code,
    study_code,
    study_day,
)
from inference.results import NOT_CLINICAL, Result, jsonable
from inference.study import MODALITY_TITLES, Study

ANON_NOTE = "Anonymised export: name, ID, birth date and accession number removed; the study is named by its code."


@dataclasses.dataclass
class Anonymiser:
    """Everything an anonymised export of one study needs."""
    code: str
    patient_code: str
    scrub: Scrubber  # strings and dicts of results, notes, findings
    scrub_meta: Scrubber  # the study's metadata: also drops file paths

    def study(self, study: Study) -> Study:
        """A copy of the study as an anonymised export shows it (arrays shared, nothing copied)."""
        return dataclasses.replace(study, name=self.code, source=self.code, sha256="",
                                   metadata=self.scrub_meta(dict(study.metadata)),
                                   notes=[self.scrub.text(n) for n in study.notes])

    def result(self, r: Result) -> Result:
        return dataclasses.replace(r, outputs=self.scrub(r.outputs), notes=[self.scrub.text(n) for n in r.notes])


def anonymiser(store, study_id: int, study: Study | None = None) -> Anonymiser:
    row = store.study(study_id) or {}
    idents: list[Identity] = list(store.identities_of(study_id)) if hasattr(store, "identities_of") else []
    if study is not None:
        idents.append(identity_from_metadata(study.metadata))
    extra = []
    src = (study.source if study is not None else row.get("source_path")) or ""
    if src:  # the file's own name (often the patient's, or an accession): its stem as one term
        stem = Path(src).stem
        if len(stem) >= 6 and not stem.isdigit():
            extra.append(stem)
    salt = store.export_salt() if hasattr(store, "export_salt") else ""
    sha = (study.sha256 if study is not None else row.get("sha256")) or ""
    modality = (study.modality if study is not None else row.get("modality")) or ""
    code = study_code(sha, modality, salt)
    pcode = patient_code(row.get("patient_id"), salt)
    return Anonymiser(code, pcode, Scrubber(idents, extra),
                      Scrubber(idents, extra, drop_keys=PHI_KEYS | PATH_KEYS))


class ScrubbedStore:
    """A read-only view of the store for one anonymised study: results, findings and the study row come
    back scrubbed; everything else is the store's own."""

    def __init__(self, store, anon: Anonymiser):
        self._store = store
        self._anon = anon

    def results(self, study_id: int, model_id: str | None = None) -> list[Result]:
        return [self._anon.result(r) for r in self._store.results(study_id, model_id)]

    def latest_result(self, study_id: int, model_id: str | None = None) -> Result | None:
        rs = self.results(study_id, model_id)
        return rs[-1] if rs else None

    def findings(self, study_id: int) -> list[dict[str, Any]]:
        return [self._anon.scrub(dict(f)) for f in self._store.findings(study_id)]

    def study(self, study_id: int) -> dict[str, Any] | None:
        row = self._store.study(study_id)
        if row is None:
            return None
        row = self._anon.scrub_meta(dict(row))
        row.update(name=self._anon.code, sha256="", source_path="")
        return row

    def __getattr__(self, name):
        if name in ("patients", "patient", "patient_studies", "studies", "identities_of", "study_identity"):
            raise AttributeError(f"{name}: not available in an anonymised export")
        return getattr(self._store, name)


# -- PDF -----------------------------------------------------------------------------------------------------
def patient_line(store, study_id: int) -> str:
    """"Patient: DOE, JOHN · ID … · born … · accession …" for an identified report ("" when unassigned)."""
    if not hasattr(store, "study_identity"):
        return ""
    ident = store.study_identity(study_id)
    bits = []
    if ident.name:
        bits.append(ident.name)
    if ident.external_id:
        bits.append(f"ID {ident.external_id}")
    if ident.birth_date:
        bits.append(f"born {ident.birth_date}")
    if ident.sex:
        bits.append(f"sex {ident.sex}")
    if ident.accession:
        bits.append(f"accession {ident.accession}")
    if ident.study_date:
        bits.append(f"study date {ident.study_date}")
    return ("Patient: " + " · ".join(bits)) if bits else ""


def export_pdf(study: Study, store, study_id: int, path: str | Path, extra: dict | None = None,
               anonymise: bool = False) -> str:
    """The study's PDF report; anonymised: built from the anonymised study and scrubbed store rows."""
    from app.report import build_report

    if not anonymise:
        return build_report(study, store, study_id, path, extra=extra)
    anon = anonymiser(store, study_id, study)
    return build_report(anon.study(study), ScrubbedStore(store, anon), study_id, path,
                        extra=anon.scrub(dict(extra or {})), anonymised=anon)


# -- CSV / JSON results table -------------------------------------------------------------------------------
TABLE_COLUMNS = ["study", "patient", "patient_id", "patient_name", "birth_date", "accession", "modality",
                 "study_date", "key_result", "metrics", "model", "result_id", "weights_sha256", "runtime",
                 "device", "computed_at", "clinical", "stamp", "outputs"]
ANON_DROP = {"patient_id", "patient_name", "birth_date", "accession"}


def table_rows(store, study_ids: Iterable[int], anonymise: bool = False) -> list[dict[str, Any]]:
    """One row per stored result (one per study without results): identity or codes, the study's key
    result, and the result's visible outputs (keys not starting with ``_``) and provenance."""
    out = []
    for sid in study_ids:
        row = store.study(sid)
        if row is None:
            continue
        results = store.results(sid)
        findings = store.findings(sid) if row["modality"] == "endo" else []
        k = key_result(row["modality"], results, findings)
        ident = store.study_identity(sid) if hasattr(store, "study_identity") else Identity()
        if anonymise:
            anon = anonymiser(store, sid)
            base = {"study": anon.code, "patient": anon.patient_code}
            results = [anon.result(r) for r in results]
            key_text = anon.scrub.text(k.text) if k else ""
        else:
            base = {"study": row.get("name") or "", "patient": "", "patient_id": ident.external_id,
                    "patient_name": ident.name, "birth_date": ident.birth_date,
                    "accession": row.get("accession") or ident.accession}
            key_text = k.text if k else ""
        base.update(modality=row["modality"], study_date=study_day(row), key_result=key_text,
                    metrics=dict(k.metrics) if k else {})
        if not results:
            out.append(dict(base, model="", outputs={}))
        for r in results:
            out.append(dict(base, model=r.model_id, result_id=r.id, weights_sha256=r.weights_sha256,
                            runtime=r.runtime, device=r.device, computed_at=r.created, clinical=r.clinical,
                            stamp="" if r.clinical else NOT_CLINICAL,
                            outputs={kk: v for kk, v in r.outputs.items() if not str(kk).startswith("_")}))
    return jsonable(out)


def export_table(store, study_ids: Iterable[int], path: str | Path, anonymise: bool = False) -> str:
    """Write the results table as CSV (``.csv``: nested values as JSON text) or JSON (anything else)."""
    rows = table_rows(store, study_ids, anonymise)
    path = Path(path)
    cols = [c for c in TABLE_COLUMNS if not (anonymise and c in ANON_DROP)]
    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".csv":
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
            w.writeheader()
            for r in rows:
                w.writerow({c: json.dumps(r.get(c)) if isinstance(r.get(c), (dict, list)) else r.get(c, "")
                            for c in cols})
            Path(tmp).write_text(buf.getvalue(), encoding="utf-8")
        else:
            doc = {"anonymised": anonymise, "note": ANON_NOTE if anonymise else "",
                   "rows": [{c: r.get(c) for c in cols} for r in rows]}
            Path(tmp).write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return str(path)


# -- endoscopy bundle -----------------------------------------------------------------------------------------
def export_endo_bundle(study: Study, store, study_id: int, dest: str | Path, anonymise: bool = False,
                       with_frames: bool | None = None) -> Path:
    from inference.endo.export import export_from_store

    if not anonymise:
        return export_from_store(store, study, study_id, dest, with_frames=True if with_frames is None else with_frames)
    anon = anonymiser(store, study_id, study)
    return export_from_store(ScrubbedStore(store, anon), anon.study(study), study_id, dest,
                             with_frames=bool(with_frames))


def modality_title(m: str) -> str:
    return MODALITY_TITLES.get(m, m)
