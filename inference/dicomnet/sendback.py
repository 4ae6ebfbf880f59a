"""What Lightbox sends back to PACS for a study that came from DICOM.

- **Encapsulated PDF** (``DOC``): the study's PDF report as the app writes it (identified: it goes to the
  patient's own record), referencing the source instances.
- **Comprehensive SR** (``SR``, TID 1500 Measurement Report via highdicom): per model (its latest result) one
  measurement group with the model id as algorithm name and the weights' sha256 as its version, the
  numeric outputs as measurements with codes and UCUM units, labels as coded qualitative evaluations, the
  source images referenced; the evidence (study, series, instances) in the header; a TEXT item saying
  NOT A CLINICAL RESULT for every result so stamped, and the disclaimer. Unverified (VerificationFlag).
- **Secondary Capture** overlays where a result has one: the X-ray heatmap over the radiograph; each
  endoscopy finding's key frame with the polyp segmenter's mask (recomputed on that frame) and its box.

Every object joins the source study (its Study Instance UID, patient and accession copied from the source
header) in new series with UIDs under this installation's root (``uids``). A study opened from a file
that is not DICOM has no PACS study to join: refused with that reason.
"""
from __future__ import annotations

import datetime as _dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference import paths
from inference.dicomnet import codes
from inference.dicomnet.classify import COMPREHENSIVE_SR, ENCAPSULATED_PDF, SECONDARY_CAPTURE
from inference.dicomnet.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, MANUFACTURER, UidFactory
from inference.results import DISCLAIMER, NOT_CLINICAL

log = logging.getLogger("lightbox.dicom")

SERIES_NUMBERS = {"pdf": 9901, "sr": 9902, "sc": 9903}
COPY = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
        "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName",
        "StudyDescription")
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID",
         "AccessionNumber", "ReferringPhysicianName")
MAX_KEY_FRAMES = 6


class SendError(Exception):
    """The study cannot be sent back; the message says why."""


@dataclass
class Outgoing:
    kind: str  # pdf | sr | sc
    dataset: Any
    description: str


@dataclass
class SendReport:
    study_id: int
    peer: str
    sent: list[tuple[str, str]] = field(default_factory=list)  # (kind, SOP Instance UID)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (kind, message)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.sent) and not self.failed

    def summary(self) -> str:
        kinds = {"pdf": "PDF report", "sr": "AI results (SR)", "sc": "overlay"}
        done = ", ".join(f"{sum(1 for k, _ in self.sent if k == x)} {kinds[x]}" for x in kinds
                         if any(k == x for k, _ in self.sent))
        s = f"sent to {self.peer}: {done or 'nothing'}"
        if self.failed:
            s += "; failed: " + "; ".join(f"{kinds.get(k, k)}: {m}" for k, m in self.failed)
        if self.skipped:
            s += "; " + "; ".join(self.skipped)
        return s


# -- sources -------------------------------------------------------------------------------------------------
def source_headers(store, study_id: int) -> list[Any]:
    """The DICOM headers a stored study was read from: its received instances, or its own file."""
    import pydicom

    row = store.study(study_id)
    if row is None:
        raise SendError(f"no study #{study_id}")
    files = [r["path"] for r in store.dicom_sources(study_id)] if hasattr(store, "dicom_sources") else []
    if not files and Path(row.get("source_path") or "").is_file():
        files = [row["source_path"]]
    out = []
    for f in files:
        try:
            ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        except Exception:
            continue
        if "StudyInstanceUID" in ds and "SOPInstanceUID" in ds:
            out.append(ds)
    if not out:
        raise SendError(f"{row.get('name') or 'this study'} was not opened from DICOM: there is no PACS study "
                        "to add its results to")
    return out


def evidence(ds):
    """A copy of a source header with the type-2 patient/study attributes the SR needs present."""
    from pydicom.dataset import Dataset

    e = Dataset()
    for kw in COPY + ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "Modality", "Rows", "Columns",
                      "NumberOfFrames", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated",
                      "PixelSpacing", "ImageType", "FrameOfReferenceUID"):
        if kw in ds:
            setattr(e, kw, ds.data_element(kw).value)
    for kw in TYPE2:
        if kw not in e:
            setattr(e, kw, "")
    return e


def _file_meta(ds) -> None:
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    m = FileMetaDataset()
    m.MediaStorageSOPClassUID = ds.SOPClassUID
    m.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    m.TransferSyntaxUID = ExplicitVRLittleEndian
    m.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    m.ImplementationVersionName = IMPLEMENTATION_VERSION
    ds.file_meta = m
    ds.preamble = b"\x00" * 128


def _now() -> tuple[str, str]:
    n = _dt.datetime.now()
    return n.strftime("%Y%m%d"), n.strftime("%H%M%S")


def _software() -> str:
    from inference import __version__

    return f"Lightbox {__version__}"


# -- Encapsulated PDF ----------------------------------------------------------------------------------------
def encapsulated_pdf(src, pdf: bytes, uid: UidFactory, title: str, sources=()) -> Any:
    from pydicom.dataset import Dataset

    if not pdf.startswith(b"%PDF"):
        raise SendError("the report is not a PDF")
    ds = Dataset()
    for kw in COPY:
        if kw in src:
            setattr(ds, kw, src.data_element(kw).value)
    for kw in TYPE2:
        if kw not in ds:
            setattr(ds, kw, "")
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = uid()
    ds.SeriesInstanceUID = uid()
    ds.SeriesNumber = SERIES_NUMBERS["pdf"]
    ds.InstanceNumber = 1
    ds.Modality = "DOC"
    ds.SeriesDescription = "Lightbox report (PDF)"
    ds.Manufacturer = MANUFACTURER
    ds.SoftwareVersions = _software()
    ds.ConversionType = "WSD"
    d, t = _now()
    ds.ContentDate, ds.ContentTime, ds.AcquisitionDateTime = d, t, d + t
    ds.SeriesDate, ds.SeriesTime = d, t
    ds.DocumentTitle = title[:64]
    cn = Dataset()
    cn.CodeValue, cn.CodingSchemeDesignator, cn.CodeMeaning = "LBX-REPORT", codes.LOCAL_SCHEME, "Lightbox study report"
    ds.ConceptNameCodeSequence = [cn]
    ds.BurnedInAnnotation = "YES"  # the PDF names the patient
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\x00" if len(pdf) % 2 else b"")
    refs = []
    for s in list(sources) or [src]:
        r = Dataset()
        r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = s.SOPClassUID, s.SOPInstanceUID
        refs.append(r)
    ds.SourceInstanceSequence = refs
    _file_meta(ds)
    return ds


# -- Comprehensive SR ----------------------------------------------------------------------------------------
def latest_per_model(results) -> list:
    by: dict[str, Any] = {}
    for r in results:  # oldest first: the last one per model wins
        by[r.model_id] = r
    return list(by.values())


def _group(result, sources, uid: UidFactory, findings=()):
    import highdicom as hd

    algo = hd.sr.AlgorithmIdentification(
        name=result.model_id[:64], version=(result.weights_sha256 or "no weights")[:64],
        parameters=[f"weights sha256 {result.weights_sha256 or 'none (needs no weights)'}",
                    f"runtime {result.runtime} on {result.device}"[:64], f"computed {result.created}"[:64],
                    f"Lightbox result #{result.id}" if result.id is not None else "Lightbox result"],
        manufacturer=MANUFACTURER)
    measurements, evaluations = [], []
    for key, v in result.outputs.items():
        if str(key).startswith("_"):
            continue
        items = v.items() if isinstance(v, dict) else [(None, v)]
        for sub, val in items:
            name = f"{key}.{sub}" if sub is not None else str(key)
            f = codes.finite(val)
            if f is not None:
                cname, cunit = codes.measurement_name(name)
                measurements.append(hd.sr.Measurement(name=cname, value=f, unit=cunit))
            elif isinstance(val, bool) or isinstance(val, str) and 0 < len(val) <= 64:  # labels, not prose
                evaluations.append(hd.sr.QualitativeEvaluation(name=codes.local(name),
                                                               value=codes.qualitative_value(name, val)))
    for fd in findings:
        if (fd.get("status") or "proposed") == "rejected":
            continue
        t = fd.get("time_s")
        c = fd.get("confidence")
        text = (f"{fd.get('label') or 'finding'} {fd.get('status') or 'proposed'}"
                + (f" at {float(t):.1f} s" if isinstance(t, (int, float)) else "")
                + (f" conf {float(c):.2f}" if isinstance(c, (int, float)) else ""))
        evaluations.append(hd.sr.QualitativeEvaluation(name=codes.finding_name(),
                                                       value=codes.qualitative_value("finding", text)))
    images = []
    for s in sources:
        if "Rows" in s and "Columns" in s:
            try:
                images.append(hd.sr.SourceImageForMeasurementGroup.from_source_image(s))
            except Exception:
                pass
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid(), identifier=f"{result.model_id} result"[:64]),
        algorithm_id=algo,
        measurements=measurements or None, qualitative_evaluations=evaluations or None,
        source_images=images or None)


def results_sr(sources, modality: str, results, uid: UidFactory, findings=(), summary: str = "") -> Any:
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes as dcodes

    results = latest_per_model(results)
    if not results:
        raise SendError("the study has no AI result to send")
    ev = [evidence(s) for s in sources]
    observer = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=dcodes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=uid(), name="Lightbox", manufacturer_name=MANUFACTURER, model_name=_software()[:64])))
    groups = [_group(r, ev, uid, findings if r.model_id.startswith("endo-polyp") else ()) for r in results]
    report = hd.sr.MeasurementReport(observation_context=observer, procedure_reported=codes.procedure(modality),
                                     imaging_measurements=groups, title=dcodes.DCM.ImagingMeasurementReport)
    stamped = [r for r in results if not r.clinical]
    sr = hd.sr.ComprehensiveSR(evidence=ev, content=report[0], series_instance_uid=uid(),
                               series_number=SERIES_NUMBERS["sr"], sop_instance_uid=uid(), instance_number=1,
                               manufacturer=MANUFACTURER, is_complete=True, is_final=False, is_verified=False,
                               series_description=("Lightbox AI results" + (f" - {NOT_CLINICAL}" if stamped else ""))[:64])
    texts = [f"{NOT_CLINICAL}: {r.model_id} ran with weights that are not the official file "
             f"(sha256 {r.weights_sha256 or 'none'})" for r in stamped]
    if summary:
        texts.append(f"Summary: {summary}")
    texts.append(f"{DISCLAIMER} Computed by Lightbox; not verified by a clinician.")
    for t in texts:
        sr.ContentSequence.append(hd.sr.TextContentItem(name=dcodes.DCM.Comment, value=t,
                                                        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    cs = Dataset()
    cs.CodingSchemeDesignator, cs.CodingSchemeName = codes.LOCAL_SCHEME, codes.LOCAL_SCHEME_NAME
    cs.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [cs]
    sr.SoftwareVersions = _software()
    assert sr.SOPClassUID == COMPREHENSIVE_SR
    _file_meta(sr)
    return sr


# -- Secondary Capture overlays ------------------------------------------------------------------------------
def overlay_sc(src, rgb: np.ndarray, uid: UidFactory, series_uid: str, number: int, description: str,
               comment: str, frame_no: int | None = None) -> Any:
    import highdicom as hd
    from pydicom.dataset import Dataset

    ref = evidence(src)
    sc = hd.sc.SCImage.from_ref_dataset(ref, np.ascontiguousarray(rgb, np.uint8), "RGB", 8, "PATIENT",
                                        series_uid, SERIES_NUMBERS["sc"], uid(), number, MANUFACTURER,
                                        patient_orientation=("L", "F"), series_description=description[:64])
    # the overlay keeps the source's orientation; unknown stays empty (type 2), never a guess
    sc.PatientOrientation = src.PatientOrientation if "PatientOrientation" in src else ""
    sc.ImageComments = comment[:10240]
    sc.BurnedInAnnotation = "NO"
    sc.DerivationDescription = comment[:1024]
    si = Dataset()
    si.ReferencedSOPClassUID, si.ReferencedSOPInstanceUID = src.SOPClassUID, src.SOPInstanceUID
    if frame_no is not None and int(src.get("NumberOfFrames", 1) or 1) > 1:
        si.ReferencedFrameNumber = int(frame_no)
    sc.SourceImageSequence = [si]
    sc.SoftwareVersions = _software()
    assert sc.SOPClassUID == SECONDARY_CAPTURE
    _file_meta(sc)
    return sc


def heat_overlay(grey: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """The radiograph in grey with the heatmap in a jet colour scale where it is warm (alpha up to 0.5)."""
    import cv2

    g = grey if grey.ndim == 2 else grey[..., 0]
    g = np.repeat(g[..., None].astype(np.float32), 3, axis=2)
    h = np.clip(np.asarray(heat, np.float32), 0, None)
    h = h / h.max() if h.max() > 0 else h
    colour = cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1].astype(np.float32)
    a = (0.5 * h)[..., None]
    return np.clip(g * (1 - a) + colour * a, 0, 255).astype(np.uint8)


def _xray_overlays(study, results) -> list[tuple[np.ndarray, str]]:
    from inference.xray.pipeline import heatmap_from_result

    out = []
    display = study.data.get("display")
    if display is None:
        return out
    for r in latest_per_model(results):
        if "_gradcam_grid" not in r.outputs:
            continue
        heat = heatmap_from_result(r, display.shape[:2])
        if heat is None or float(np.max(heat)) <= 0:
            continue
        stamp = f" {NOT_CLINICAL}." if not r.clinical else ""
        out.append((heat_overlay(display, heat), f"Lightbox heatmap: {r.model_id} (weights sha256 "
                                                 f"{r.weights_sha256[:16]}), class activation map over the image.{stamp} {DISCLAIMER}"))
    return out


def _segmenter(findings):
    """The bundled polyp segmenter when a finding came from it (its mask is drawn on the key frame), else None."""
    from inference.endo.models import LIGHTBOX_POLYP_ID

    if not any(str(f.get("source") or "").startswith(LIGHTBOX_POLYP_ID) for f in findings):
        return None
    try:
        from inference.endo.models import polyp_model
        from inference.registry import Registry

        return polyp_model(Registry(), LIGHTBOX_POLYP_ID, threads=1)
    except Exception as e:  # weights refused or missing: the box alone
        log.info("polyp masks not drawn on key frames: %s", e)
        return None


def polyp_overlay(rgb: np.ndarray, box, status: str, mask: np.ndarray | None = None) -> np.ndarray:
    """The frame with the finding drawn: its mask (tinted, outlined) when known, and its box."""
    import cv2

    out = np.ascontiguousarray(rgb[..., :3]).copy()
    h, w = out.shape[:2]
    colour = (46, 125, 50) if status == "confirmed" else (210, 153, 34)
    if mask is not None and mask.any():
        m = cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        tint = np.array(colour, np.float32)
        out[m] = (0.6 * out[m] + 0.4 * tint).astype(np.uint8)
        contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, max(1, w // 320))
    if isinstance(box, list) and len(box) == 4:
        x0, y0, x1, y1 = (int(round(box[0] * w)), int(round(box[1] * h)), int(round(box[2] * w)),
                          int(round(box[3] * h)))
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, max(2, w // 200))
    return out


def _endo_keyframes(study, findings, results) -> list[tuple[int, np.ndarray, str]]:
    import json

    src = study.data.get("source")
    keep = [f for f in findings if (f.get("status") or "proposed") != "rejected" and f.get("frame_index") is not None]
    if src is None or not keep:
        return []
    order = {"confirmed": 0, "proposed": 1}
    keep = sorted(keep, key=lambda f: (order.get(f.get("status"), 2), f.get("time_s") or 0))[:MAX_KEY_FRAMES]
    stamped = any(not r.clinical for r in results if r.model_id.startswith("endo-polyp"))
    seg = _segmenter(keep)
    out = []
    rd = src.reopen()
    try:
        n = int(study.metadata.get("frame_count") or 0) or 1
        for f in keep:
            try:
                rgb = np.ascontiguousarray(rd.frame(min(max(int(f["frame_index"]), 0), n - 1))[..., :3])
            except Exception:
                continue
            box = f.get("box")
            if isinstance(box, str):
                try:
                    box = json.loads(box)
                except ValueError:
                    box = None
            mask = None
            if seg is not None and str(f.get("source") or "").startswith("endo-polyp-lightbox"):
                try:
                    r = seg.analyse([rgb])[0]
                    if r.prob is not None:
                        mask = r.prob >= int(round(255 * seg.threshold))
                except Exception as e:
                    log.info("polyp mask for frame %s not drawn: %s", f.get("frame_index"), e)
            c = f.get("confidence")
            out.append((int(f["frame_index"]), polyp_overlay(rgb, box, f.get("status") or "proposed", mask),
                        f"Lightbox key frame: {f.get('label') or 'finding'} ({f.get('status') or 'proposed'}) "
                        f"at frame {f.get('frame_index')}" + (f", confidence {float(c):.2f}" if isinstance(c, (int, float)) else "")
                        + f", from {f.get('source') or 'a reader'}; "
                        + ("the model's mask (tinted, outlined) and box drawn." if mask is not None and mask.any() else "box drawn.")
                        + (f" {NOT_CLINICAL}." if stamped else "") + f" {DISCLAIMER}"))
    finally:
        rd.close()
    return out


# -- one study -----------------------------------------------------------------------------------------------
def build(store, study_id: int, uid: UidFactory, kinds=("pdf", "sr", "sc"), ctx=None) -> list[Outgoing]:
    """The objects to send for a stored study (see the module doc). Raises SendError when there is nothing."""
    from inference.detect import open_study
    from inference.patients import key_result
    from inference.study import ReadError

    row = store.study(study_id)
    if row is None:
        raise SendError(f"no study #{study_id}")
    sources = source_headers(store, study_id)
    results = store.results(study_id)
    findings = store.findings(study_id) if row["modality"] == "endo" else []
    out: list[Outgoing] = []
    study = None
    if "pdf" in kinds or "sc" in kinds:
        if ctx:
            ctx.progress(0.05, "reading the study")
        try:
            study = open_study(row["source_path"], row["modality"])
        except ReadError as e:
            raise SendError(f"the study cannot be read again for its report: {e}") from None
    if "pdf" in kinds:
        if ctx:
            ctx.progress(0.15, "writing the PDF report")
        from app.patients.export import export_pdf  # Qt-free: the report the app writes

        with tempfile.TemporaryDirectory(dir=paths.data_home()) as d:
            p = Path(d) / "report.pdf"
            export_pdf(study, store, study_id, p)
            pdf = p.read_bytes()
        title = f"Lightbox report: {study.title}"
        out.append(Outgoing("pdf", encapsulated_pdf(sources[0], pdf, uid, title, sources), title))
    if "sr" in kinds and results:
        k = key_result(row["modality"], results, findings)
        out.append(Outgoing("sr", results_sr(sources, row["modality"], results, uid, findings, k.text if k else ""),
                            "AI results (Comprehensive SR)"))
    if "sc" in kinds and study is not None:
        from inference.dicomnet.receive import frame_source

        if row["modality"] == "xray":
            imgs = [(sources[0], None, rgb, comment) for rgb, comment in _xray_overlays(study, results)]
        elif row["modality"] == "endo":  # each key frame references the instance (and frame) it came from
            imgs = [(*frame_source(sources, k), rgb, comment) for k, rgb, comment in _endo_keyframes(study, findings, results)]
        else:
            imgs = []
        series = uid()
        for i, (src, frame_no, rgb, comment) in enumerate(imgs, 1):
            desc = "Lightbox AI heatmap" if row["modality"] == "xray" else "Lightbox key frames"
            out.append(Outgoing("sc", overlay_sc(src, rgb, uid, series, i, desc, comment, frame_no), desc))
    if not out:
        raise SendError("nothing to send: no report requested and no AI result stored for this study")
    return out


def send(store, study_id: int, cfg, peer, kinds=("pdf", "sr", "sc"), ctx=None, keep_copy: bool = True) -> SendReport:
    """Build and C-STORE a study's report, results and overlays to ``peer``."""
    from inference.dicomnet import scu

    uid = UidFactory(cfg.uid_root)
    objs = build(store, study_id, uid, kinds, ctx)
    rep = SendReport(study_id, peer.name)
    if "sr" in kinds and not any(o.kind == "sr" for o in objs):
        rep.skipped.append("no AI result stored, no SR")
    if keep_copy:  # what left the workstation, kept beside the exports (0600)
        folder = paths.private_dir(paths.exports_dir() / "dicom-sent" / str(objs[0].dataset.StudyInstanceUID))
        for o in objs:
            from inference.atomic import atomic_path

            with atomic_path(folder / f"{o.kind}-{o.dataset.SOPInstanceUID}.dcm") as tmp:
                o.dataset.save_as(str(tmp), enforce_file_format=True)
    outcomes = scu.store(cfg, peer, [o.dataset for o in objs], ctx)
    for o, res in zip(objs, outcomes):
        (rep.sent.append((o.kind, res.sop_instance_uid)) if res.ok else rep.failed.append((o.kind, res.message)))
    for o in objs[len(outcomes):]:
        rep.failed.append((o.kind, "not sent: the association ended"))
    log.info("study #%d: %s", study_id, rep.summary())
    return rep


def send_inputs(inputs, modality: str, pacs: str, db=None, out=print) -> int:
    """``lightbox batch … --send PACS``: send every input the batch stored (DICOM ones; others are named and
    skipped). Returns the exit status: 0 when everything that could be sent was."""
    from app.store import Store
    from inference.batch import file_key
    from inference.dicomnet.config import ConfigError, load
    from inference.dicomnet.scu import DicomNetError

    try:
        cfg = load()
        peer = cfg.peer(pacs)
    except ConfigError as e:
        out(f"error: {e}")
        return 2
    store = Store(db)
    bad = sent = 0
    try:
        for p in inputs:
            sid = store.study_id(file_key(Path(p)), modality)
            if sid is None:
                out(f"{p}: not sent (no stored result: see the batch table's error column)")
                bad += 1
                continue
            try:
                rep = send(store, sid, cfg, peer)
            except SendError as e:
                out(f"{p}: not sent ({e})")
                continue
            except DicomNetError as e:
                out(f"{p}: not sent ({e})")
                bad += 1
                continue
            out(f"{p}: {rep.summary()}")
            sent += rep.ok
            bad += not rep.ok
    finally:
        store.close()
    out(f"sent {sent} studies to {peer.name}" + (f"; {bad} failed" if bad else ""))
    return 1 if bad else 0
