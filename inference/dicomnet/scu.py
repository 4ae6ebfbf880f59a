"""Lightbox as a DICOM client of a PACS: C-ECHO, C-FIND (study level), C-MOVE, C-GET and C-STORE.

Every call opens one association as the node's AE title, says what went wrong in words (refused association,
unknown move destination, failed sub-operations) as ``DicomNetError``, and honours a ``JobContext`` (progress,
cancel: the association is aborted). Nothing here blocks a UI: the app runs these as Jobs.

Retrieval
- ``move_study``: the PACS sends the study to Lightbox's node (which must be running and known to the PACS
  under the node's AE title, host and port) and reports sub-operations on this association.
- ``get_study``: the PACS sends the instances back on this same association (no inbound connection needed);
  they go through the same ``receive.Receiver`` as the node's.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from inference.dicomnet.classify import (COMPREHENSIVE_SR, ECG_CLASSES, ECHO_CLASSES, ENCAPSULATED_PDF,
                                         ENDO_CLASSES, SECONDARY_CAPTURE, XRAY_CLASSES,
                                         receivable_transfer_syntaxes, sop_class_name)
from inference.dicomnet.config import NodeConfig, Peer
from inference.dicomnet.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION
from inference.patients import iso_date

log = logging.getLogger("lightbox.dicom")

PENDING = (0xFF00, 0xFF01)
MOVE_STATUS = {
    0xA701: "the PACS is out of resources to count the matches",
    0xA702: "the PACS is out of resources for the sub-operations",
    0xA801: "the PACS does not know the move destination",
    0xA900: "the PACS says the request does not match its query model",
    0xB000: "some instances could not be sent",
    0xFE00: "cancelled",
}


class DicomNetError(Exception):
    """A network operation that did not succeed; the message is for the user."""


class _Ctx:  # a do-nothing JobContext
    def progress(self, f: float, text: str = "") -> None:
        pass

    def check(self) -> None:
        pass


def _ae(cfg: NodeConfig):
    from pynetdicom import AE

    ae = AE(ae_title=cfg.ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION
    ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 15, 120, 60
    ae.connection_timeout = 10
    return ae


def _reject_text(assoc) -> str:
    try:
        p = assoc.acceptor.primitive
        if p is not None and p.result is not None and p.result != 0:
            return f"it rejected the association ({p.reason_str})" if hasattr(p, "reason_str") else \
                f"it rejected the association (result {p.result}, source {p.result_source}, reason {p.diagnostic})"
    except Exception:
        pass
    return "no association (refused, wrong host or port, or not listening)"


@contextlib.contextmanager
def association(cfg: NodeConfig, peer: Peer, contexts: Iterable[tuple[str, list[str]]], roles=None,
                handlers=None) -> Iterator[Any]:
    ae = _ae(cfg)
    for sop, ts in contexts:
        ae.add_requested_context(sop, ts)
    assoc = ae.associate(peer.host, peer.port, ae_title=peer.ae_title, ext_neg=roles or None,
                         evt_handlers=handlers or None)
    if not assoc.is_established:
        raise DicomNetError(f"{peer.label()}: {_reject_text(assoc)}")
    try:
        yield assoc
    except BaseException:
        if assoc.is_established:
            assoc.abort()
        raise
    else:
        if assoc.is_established:
            assoc.release()


# -- C-ECHO --------------------------------------------------------------------------------------------------
def echo(cfg: NodeConfig, peer: Peer) -> float:
    """Round trip in seconds, or DicomNetError."""
    from pynetdicom.sop_class import Verification

    t0 = time.perf_counter()
    with association(cfg, peer, [(Verification, ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"])]) as assoc:
        st = assoc.send_c_echo()
        if not st or st.Status != 0:
            raise DicomNetError(f"{peer.label()}: C-ECHO failed ({_status(st)})")
    return time.perf_counter() - t0


def _status(st) -> str:
    if st is None or "Status" not in st:
        return "no response (timeout or aborted association)"
    code = int(st.Status)
    text = MOVE_STATUS.get(code, "")
    comment = str(st.get("ErrorComment", "") or "")
    return f"0x{code:04X}" + (f" {text}" if text else "") + (f": {comment}" if comment else "")


# -- C-FIND --------------------------------------------------------------------------------------------------
@dataclass
class StudyQuery:
    patient_name: str = ""  # "doe" matches DOE^JOHN (a trailing * is added when none is given)
    patient_id: str = ""
    date_from: str = ""  # YYYY-MM-DD (or YYYYMMDD)
    date_to: str = ""
    modality: str = ""  # DICOM Modality (CR, DX, US, ECG, ES, …), matched against Modalities in Study
    accession: str = ""
    study_uid: str = ""

    def identifier(self):
        from pydicom.dataset import Dataset

        ds = Dataset()
        ds.QueryRetrieveLevel = "STUDY"
        name = self.patient_name.strip()
        if name and not any(c in name for c in "*?"):
            name = name.replace(",", "^").replace(" ", "*") + "*"
        ds.PatientName = name
        ds.PatientID = self.patient_id.strip()
        ds.PatientBirthDate = ""
        ds.PatientSex = ""
        d0, d1 = (iso_date(self.date_from) or "").replace("-", ""), (iso_date(self.date_to) or "").replace("-", "")
        if self.date_from and not d0 or self.date_to and not d1:
            raise DicomNetError("dates are YYYY-MM-DD")
        ds.StudyDate = f"{d0}-{d1}" if (d0 or d1) and d0 != d1 else d0
        ds.StudyTime = ""
        ds.AccessionNumber = self.accession.strip()
        ds.ModalitiesInStudy = self.modality.strip().upper()
        ds.StudyInstanceUID = self.study_uid.strip()
        ds.StudyDescription = ""
        ds.NumberOfStudyRelatedSeries = ""
        ds.NumberOfStudyRelatedInstances = ""
        ds.ReferringPhysicianName = ""
        return ds


@dataclass
class StudyHit:
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    accession: str = ""
    modalities: list[str] = field(default_factory=list)
    description: str = ""
    series: int | None = None
    instances: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _hit(ds) -> StudyHit | None:
    from inference.patients import iso_time, person_name

    uid = str(ds.get("StudyInstanceUID", "") or "")
    if not uid:
        return None
    mods = ds.get("ModalitiesInStudy", "")
    mods = [str(m) for m in (mods if isinstance(mods, (list, tuple)) or hasattr(mods, "__iter__") and not
                              isinstance(mods, str) else [mods]) if str(m)]

    def n(kw):
        try:
            return int(ds.get(kw))
        except (TypeError, ValueError):
            return None

    return StudyHit(uid, person_name(ds.get("PatientName", "")), str(ds.get("PatientID", "") or ""),
                    iso_date(str(ds.get("PatientBirthDate", "") or "")), str(ds.get("PatientSex", "") or ""),
                    iso_date(str(ds.get("StudyDate", "") or "")), iso_time(str(ds.get("StudyTime", "") or "")),
                    str(ds.get("AccessionNumber", "") or ""), mods, str(ds.get("StudyDescription", "") or ""),
                    n("NumberOfStudyRelatedSeries"), n("NumberOfStudyRelatedInstances"))


def find_studies(cfg: NodeConfig, peer: Peer, query: StudyQuery, ctx=None, limit: int = 1000) -> list[StudyHit]:
    """C-FIND at study level (Study Root), newest first."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    ctx = ctx or _Ctx()
    ident = query.identifier()
    hits: list[StudyHit] = []
    ctx.progress(0.0, f"searching {peer.name}")
    with association(cfg, peer, [(FIND, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])]) as assoc:
        final = None
        for st, ds in assoc.send_c_find(ident, FIND):
            ctx.check()
            if st is None or "Status" not in st:
                raise DicomNetError(f"{peer.label()}: the C-FIND got no answer (timeout or aborted)")
            if int(st.Status) in PENDING:
                h = _hit(ds) if ds is not None else None
                if h:
                    hits.append(h)
                    ctx.progress(min(0.95, len(hits) / 100), f"{len(hits)} studies")
                if len(hits) >= limit:
                    raise DicomNetError(f"more than {limit} studies match: narrow the search")
            else:
                final = st
        if final is not None and int(final.Status) not in (0x0000, 0xFE00):
            raise DicomNetError(f"{peer.label()}: C-FIND failed ({_status(final)})")
    hits.sort(key=lambda h: (h.study_date, h.study_time), reverse=True)
    return hits


# -- C-MOVE / C-GET ------------------------------------------------------------------------------------------
@dataclass
class RetrieveOutcome:
    study_uid: str
    completed: int = 0
    failed: int = 0
    warning: int = 0
    status: str = ""

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.status in ("", "0x0000")

    def summary(self) -> str:
        s = f"{self.completed} instance(s) retrieved"
        if self.failed or self.warning:
            s += f", {self.failed} failed, {self.warning} with warnings"
        return s


def _retrieve_ident(study_uid: str):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def _follow(responses, outcome: RetrieveOutcome, peer: Peer, ctx, what: str, dest: str = "") -> RetrieveOutcome:
    final = None
    for st, _ds in responses:
        ctx.check()
        if st is None or "Status" not in st:
            raise DicomNetError(f"{peer.label()}: the {what} got no answer (timeout or aborted)")
        code = int(st.Status)
        done = int(st.get("NumberOfCompletedSuboperations", 0) or 0)
        left = int(st.get("NumberOfRemainingSuboperations", 0) or 0)
        if code in PENDING:
            outcome.completed = done
            ctx.progress(done / max(1, done + left), f"{done} of {done + left} instances")
        else:
            final = st
    if final is None:
        raise DicomNetError(f"{peer.label()}: the {what} ended without a final status")
    code = int(final.Status)
    outcome.completed = int(final.get("NumberOfCompletedSuboperations", outcome.completed) or outcome.completed)
    outcome.failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
    outcome.warning = int(final.get("NumberOfWarningSuboperations", 0) or 0)
    outcome.status = f"0x{code:04X}"
    if code == 0xA801:
        raise DicomNetError(f"{peer.label()}: it does not know '{dest}' as a move destination: add "
                            "Lightbox (AE title, host, port) to the PACS's modalities, or retrieve with C-GET")
    if code not in (0x0000, 0xB000):
        hint = ""
        if dest and (code & 0xF000) == 0xC000 and outcome.completed == 0:
            hint = (f"; it could not send the study to '{dest}': check that it knows '{dest}' (AE title, host, port) "
                    "as a destination and that the node is running, or retrieve with C-GET")
        raise DicomNetError(f"{peer.label()}: {what} failed ({_status(final)}){hint}")
    return outcome


def move_study(cfg: NodeConfig, peer: Peer, study_uid: str, ctx=None, destination: str | None = None) -> RetrieveOutcome:
    """C-MOVE a study to ``destination`` (default: this node's AE title)."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    ctx = ctx or _Ctx()
    dest = destination or cfg.ae_title
    ctx.progress(0.0, f"asking {peer.name} to send the study to {dest}")
    with association(cfg, peer, [(MOVE, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])]) as assoc:
        out = _follow(assoc.send_c_move(_retrieve_ident(study_uid), dest, MOVE), RetrieveOutcome(study_uid),
                      peer, ctx, "C-MOVE", dest)
    log.info("C-MOVE of study %s from %s: %s", study_uid, peer.name, out.summary())
    return out


def get_contexts() -> list[str]:
    """Storage SOP classes proposed (SCP role) on a C-GET association: Lightbox's own first, then the common
    ones, 127 at most with the Q/R context."""
    from pynetdicom.presentation import StoragePresentationContexts

    ours = [*XRAY_CLASSES, *ECHO_CLASSES, *ECG_CLASSES, *ENDO_CLASSES, SECONDARY_CAPTURE, ENCAPSULATED_PDF,
            COMPREHENSIVE_SR, "1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.11",
            "1.2.840.10008.5.1.4.1.1.88.34"]
    out = list(dict.fromkeys(ours))
    for cx in StoragePresentationContexts:
        if len(out) >= 127:
            break
        if cx.abstract_syntax not in out:
            out.append(cx.abstract_syntax)
    return out


def get_study(cfg: NodeConfig, peer: Peer, study_uid: str, receiver, ctx=None) -> RetrieveOutcome:
    """C-GET a study; its instances go through ``receiver`` (a ``receive.Receiver``)."""
    from pynetdicom import build_role, evt
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    ctx = ctx or _Ctx()
    ts = list(receivable_transfer_syntaxes())
    classes = get_contexts()
    contexts = [(GET, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])] + [(c, ts) for c in classes]
    roles = [build_role(c, scp_role=True) for c in classes]
    handlers = [(evt.EVT_C_STORE, receiver.handle_store)]
    ctx.progress(0.0, f"getting the study from {peer.name}")
    with association(cfg, peer, contexts, roles, handlers) as assoc:
        out = _follow(assoc.send_c_get(_retrieve_ident(study_uid), GET), RetrieveOutcome(study_uid), peer, ctx,
                      "C-GET")
    receiver.flush()
    log.info("C-GET of study %s from %s: %s", study_uid, peer.name, out.summary())
    return out


# -- C-STORE -------------------------------------------------------------------------------------------------
@dataclass
class StoreOutcome:
    sop_instance_uid: str
    what: str
    status: int | None
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and (self.status == 0 or 0xB000 <= self.status <= 0xBFFF)


def store(cfg: NodeConfig, peer: Peer, items: Iterable[Any], ctx=None) -> list[StoreOutcome]:
    """C-STORE datasets (pydicom Datasets, or paths of DICOM files sent as they are) to a peer.
    Returns one outcome per item; raises DicomNetError only when no association can be made."""
    import pydicom

    ctx = ctx or _Ctx()
    items = list(items)
    plan: list[tuple[Any, str, str, str]] = []  # (item, sop class, transfer syntax, sop instance)
    for it in items:
        if isinstance(it, (str, Path)):
            meta = pydicom.dcmread(str(it), stop_before_pixels=True)
            plan.append((str(it), str(meta.SOPClassUID), str(meta.file_meta.TransferSyntaxUID), str(meta.SOPInstanceUID)))
        else:
            ts = str(getattr(getattr(it, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2.1")
            plan.append((it, str(it.SOPClassUID), ts, str(it.SOPInstanceUID)))
    # one presentation context per (SOP class, encoding): a compressed instance keeps its own encoding,
    # and an uncompressed context serves the rest (at most 128 contexts in one association)
    native = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
    wanted: list[tuple[str, list[str]]] = []
    for _it, sop, ts, _uid in plan:
        for c in ((sop, native),) if ts in native else ((sop, [ts]), (sop, native)):
            if c not in wanted:
                wanted.append(c)
    if len(wanted) > 128:
        raise DicomNetError(f"{len(wanted)} kinds of object in one send: at most 128")
    out: list[StoreOutcome] = []
    with association(cfg, peer, wanted) as assoc:
        for i, (it, sop, _ts, uid) in enumerate(plan):
            ctx.progress(i / max(1, len(plan)), f"sending {i + 1} of {len(plan)}")
            what = sop_class_name(sop)
            try:
                st = assoc.send_c_store(it)
            except (ValueError, RuntimeError) as e:  # no accepted context for it
                out.append(StoreOutcome(uid, what, None, f"not accepted by {peer.name}: {e}"))
                continue
            code = int(st.Status) if st is not None and "Status" in st else None
            out.append(StoreOutcome(uid, what, code, "" if code == 0 else _status(st)))
            if code is None:
                break  # the association is gone
    ctx.progress(1.0, "sent")
    for o in out:
        (log.info if o.ok else log.warning)("C-STORE %s %s to %s: %s", o.what, o.sop_instance_uid, peer.name,
                                            "stored" if o.ok else o.message)
    return out
