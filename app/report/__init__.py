"""PDF reports (reportlab, no Qt): one shared page frame + one section module per modality.

Each modality's report module (``app/<modality>/report.py``, named in ``app/modalities.py``) may provide::

    PAGESIZE = landscape(A4)                                  # optional
    def sections(study, results, store, study_id, extra) -> list[Flowable]

Without one, the generic section (every stored result as a table) is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from app.report.base import build_pdf, generic_sections


def build_report(study, store, study_id: int, path: str | Path, extra: dict[str, Any] | None = None,
                 anonymised=None) -> str:
    """The study's PDF. Identified: the patient line under the title. ``anonymised`` (an
    ``app.patients.export.Anonymiser``; the caller passes the anonymised study and a scrubbed store view,
    see ``app.patients.export.export_pdf``): the study code instead of identity, path and hash."""
    from app.patients.export import ANON_NOTE, patient_line

    results = store.results(study_id)
    if extra and extra.get("label"):  # blinded practice: a teaching loop's file name may tell the answer
        import dataclasses

        study = dataclasses.replace(study, name=extra["label"], source=f"{extra['label']} (file withheld until "
                                                                        "the estimate is locked)")
    from app.modalities import report_module

    mod = report_module(study.modality)
    if mod is not None and hasattr(mod, "sections"):
        flow = mod.sections(study, results, store, study_id, extra or {})
    else:
        flow = generic_sections(results)
    pagesize = getattr(mod, "PAGESIZE", None) if mod else None
    from app.validation.records import phrase

    def validation(r):
        return phrase(store, r.model_id, r.weights_sha256)

    if anonymised is not None:
        line = f"Study {anonymised.code}" + (f" · patient {anonymised.patient_code}" if anonymised.patient_code else "")
        build_pdf(path, study, results, flow, pagesize=pagesize, anonymised=f"{line} — {ANON_NOTE}",
                  validation=validation)
    else:
        build_pdf(path, study, results, flow, pagesize=pagesize, patient=patient_line(store, study_id),
                  validation=validation)
    return str(path)
