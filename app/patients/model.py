"""A patient's studies as the timeline, the compare view and the exports see them (no Qt)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.patients import KeyResult, deltas, key_result, study_day


@dataclass
class Entry:
    """One study on a patient's timeline."""
    study_id: int
    modality: str
    name: str
    day: str  # YYYY-MM-DD
    day_known: bool  # False: the file gave no date; placed at the day it was first opened here
    time: str = ""
    key: KeyResult | None = None
    deltas: list[str] = field(default_factory=list)  # vs the previous study of the same modality
    prior_id: int | None = None
    n_results: int = 0
    clinical: bool = True  # False: some result of this study is NOT A CLINICAL RESULT
    sha256: str = ""

    @property
    def label(self) -> str:
        return self.key.text if self.key else ("not analysed" if not self.n_results else "no key result")


def study_key(store, study_id: int, modality: str) -> KeyResult | None:
    results = store.results(study_id)
    findings = store.findings(study_id) if modality == "endo" else ()
    return key_result(modality, results, findings)


def entries(store, patient_id: int) -> list[Entry]:
    """Every study of the patient, oldest first, with its key result and the change since the previous
    study of the same modality."""
    out: list[Entry] = []
    last: dict[str, Entry] = {}
    for row in store.patient_studies(patient_id):
        results = store.results(row["id"])
        findings = store.findings(row["id"]) if row["modality"] == "endo" else ()
        k = key_result(row["modality"], results, findings)
        e = Entry(study_id=row["id"], modality=row["modality"], name=row["name"] or "", day=study_day(row),
                  day_known=bool(row.get("study_date")), time=row.get("study_time") or "", key=k,
                  n_results=len(results), clinical=all(r.clinical for r in results), sha256=row.get("sha256") or "")
        prev = last.get(e.modality)
        if prev is not None:
            e.prior_id = prev.study_id
            e.deltas = deltas(prev.key, k)
        last[e.modality] = e
        out.append(e)
    return out


def trends(items: list[Entry]) -> dict[str, list[tuple[str, float, int, str]]]:
    """Numbers that repeat over time: metric -> [(day, value, study_id, modality)], only metrics with
    two or more values."""
    series: dict[str, list[tuple[str, float, int, str]]] = {}
    for e in items:
        if e.key is None:
            continue
        for k, v in e.key.metrics.items():
            series.setdefault(k, []).append((e.day, float(v), e.study_id, e.modality))
    return {k: v for k, v in series.items() if len(v) >= 2}


def prior_of(store, study_id: int) -> int | None:
    """The newest earlier study of the same patient and modality (the one to compare with), or None."""
    row = store.study(study_id)
    if not row or row.get("patient_id") is None:
        return None
    items = entries(store, row["patient_id"])
    for e in items:
        if e.study_id == study_id:
            return e.prior_id
    return None


def same_modality_studies(store, study_id: int) -> list[dict[str, Any]]:
    """The patient's other studies of this study's modality, newest first (compare candidates)."""
    row = store.study(study_id)
    if not row or row.get("patient_id") is None:
        return []
    rows = [r for r in store.patient_studies(row["patient_id"])
            if r["modality"] == row["modality"] and r["id"] != study_id]
    return list(reversed(rows))
