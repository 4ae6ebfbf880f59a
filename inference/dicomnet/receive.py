"""The receiving end of the node: check each C-STORE, write it atomically, read it into the study store.

On the association's thread (``Receiver.handle_store``, also the C-GET handler of ``scu``):
  1. decode the dataset; every element must parse, the four UIDs must be valid and match the command, and
     native pixel data must be as long as its header says -- otherwise a refusal (0xC210 cannot understand,
     0xA900 does not match the SOP class) with the reason logged, and nothing on disk;
  2. write ``received/<Study UID>/<Series UID>/<MOD>-<series>-<instance>-<hash>.dcm`` write-then-rename (a file
     is complete or absent; a full disk is 0xA700 out of resources, the partial file removed);
  3. queue it and answer Success. A transfer cut short never reaches step 1 (pynetdicom hands over only
     complete datasets); the abort is logged.
On the receiver's own worker thread (one connection to the store):
  4. classify by header (``classify.lightbox_modality``), read with the modality's own reader
     (``inference.detect.open_study``), and save the study and its instance rows in one transaction, so
     patients, priors and the timeline treat it as an opened file. Endoscopy series are gathered until their
     association closes, decoded frame by frame into a frame folder beside the instances and read as one
     study. What Lightbox cannot read is recorded as 'unreadable' with the reason (kept and listed).
On start, files already in ``received/`` but not in the store (a crash between steps 2 and 4) are read again.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Callable

from inference import paths
from inference.dicomnet.classify import lightbox_modality, sop_class_name, transfer_syntax_name
from inference.dicomnet.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, is_uid

log = logging.getLogger("lightbox.dicom")

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC210
PROCESSING_FAILURE = 0x0110


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


@dataclass
class Received:
    """A written instance and what its header says (the ``dicom_instances`` row, less its outcome)."""
    path: str
    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    dicom_modality: str = ""
    bytes: int = 0
    transfer_syntax: str = ""
    calling_ae: str = ""
    peer: str = ""
    received_at: str = ""
    series_number: int = 0
    instance_number: int = 0

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("series_number")
        d.pop("instance_number")
        return d


@dataclass
class Counters:
    received: int = 0
    refused: int = 0
    read: int = 0
    unreadable: int = 0
    bytes: int = 0
    last_refusal: str = ""
    last_from: str = ""
    pending: int = 0
    studies: list[int] = field(default_factory=list)  # study ids read, in order (the last 200)


def received_root() -> Path:
    return paths.private_dir(paths.data_home() / "received")


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _short(uid: str) -> str:
    return hashlib.sha1(uid.encode()).hexdigest()[:10]


def instance_path(root: Path, study: str, series: str, sop: str, modality: str, series_no: int, inst_no: int) -> Path:
    """Where an instance lives: UIDs for folders (never a name), a readable file name without identity."""
    for what, u in (("Study Instance UID", study), ("Series Instance UID", series), ("SOP Instance UID", sop)):
        if not is_uid(u):
            raise Refused(CANNOT_UNDERSTAND, f"the {what} '{u[:70]}' is not a valid UID")
    mod = "".join(c for c in (modality or "OT").upper() if c.isalnum())[:8] or "OT"
    return root / study / series / f"{mod}-{series_no}-{inst_no}-{_short(sop)}.dcm"


def _native_pixel_bytes(ds) -> int | None:
    """Bytes native (uncompressed) pixel data must hold, or None when the header does not say."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp, bits = int(ds.get("SamplesPerPixel", 1) or 1), int(ds.BitsAllocated)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (AttributeError, TypeError, ValueError):
        return None
    total_bits = rows * cols * spp * frames * bits
    return (total_bits + 7) // 8


def check_dataset(ds, sop_class: str, sop_instance: str, transfer_syntax) -> None:
    """Refuse what cannot be a good instance (see the module doc, step 1)."""
    try:
        for elem in ds.iterall():  # pydicom decodes lazily: a broken element surfaces only when touched
            _ = elem.value
    except Exception as e:
        raise Refused(CANNOT_UNDERSTAND, f"the dataset does not parse ({type(e).__name__}: {e})") from None
    for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        v = str(ds.get(kw, "") or "")
        if not is_uid(v):
            raise Refused(CANNOT_UNDERSTAND, f"{kw} is {'missing' if not v else repr(v[:70]) + ', not a valid UID'}")
    if str(ds.SOPClassUID) != str(sop_class):
        raise Refused(DOES_NOT_MATCH, f"the dataset is a {sop_class_name(ds.SOPClassUID)}, sent as "
                                      f"{sop_class_name(sop_class)}")
    if sop_instance and str(ds.SOPInstanceUID) != str(sop_instance):
        raise Refused(DOES_NOT_MATCH, "the dataset's SOP Instance UID differs from the C-STORE request's")
    if "PixelData" in ds:
        data = ds.PixelData or b""
        if not data:
            raise Refused(CANNOT_UNDERSTAND, "the pixel data is empty")
        if not getattr(transfer_syntax, "is_compressed", False):
            need = _native_pixel_bytes(ds)
            if need is not None and len(data) < need:
                raise Refused(CANNOT_UNDERSTAND, f"the pixel data is truncated: {len(data)} of {need} bytes")


def encode_file(raw: bytes, file_meta, calling_ae: str) -> bytes:
    """Preamble + file meta (this implementation, the sender's AE title) + the dataset exactly as sent."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_file_meta_info

    file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    if calling_ae:
        file_meta.SourceApplicationEntityTitle = calling_ae[:16]
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    buf.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buf, file_meta, enforce_standard=True)
    return buf.getvalue() + raw


def write_atomic(dest: Path, data: bytes, made: set | None = None) -> None:
    """Write-then-rename, fsynced, 0600; the temporary file is removed on any failure (ENOSPC included).
    ``made``: folders known to exist already (saves a mkdir per instance of a series)."""
    if made is None or dest.parent not in made:
        paths.private_dir(dest.parent)
        if made is not None:
            made.add(dest.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Receiver:
    """Checks, writes and ingests received instances (see the module doc). ``on_ingested(study_id | None,
    info)`` is called on the worker thread after each study is read (None: recorded unreadable)."""

    def __init__(self, root: str | Path | None = None, db: str | Path | None = None,
                 on_ingested: Callable[[int | None, dict[str, Any]], None] | None = None):
        self.root = Path(root) if root else received_root()
        self.db = db
        self.on_ingested = on_ingested
        self.counters = Counters()
        self._q: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._endo: dict[tuple[str, str], list[Received]] = {}  # endoscopy instances waiting for their series
        self._assoc_series: dict[int, set[tuple[str, str]]] = {}
        self._worker: threading.Thread | None = None
        self._store = None
        self._made: set[Path] = set()
        self._since = time.time()  # files written after this are the live path's, never the rescan's

    # -- association side ------------------------------------------------------------------------------
    def handle_store(self, event) -> int:
        """pynetdicom EVT_C_STORE handler: the status to answer."""
        assoc = event.assoc
        sender = assoc.acceptor if getattr(assoc, "is_requestor", False) else assoc.requestor  # C-GET: the PACS
        calling = str(sender.ae_title or "").strip()
        peer = f"{sender.address}:{sender.port}"
        try:
            rec = self.accept(event, calling, peer)
        except Refused as e:
            with self._lock:
                self.counters.refused += 1
                self.counters.last_refusal = e.reason
            log.warning("C-STORE from %s (%s) refused (0x%04X): %s", calling, peer, e.status, e.reason)
            return e.status
        except Exception as e:  # never let a handler bug kill the association silently
            log.exception("C-STORE from %s (%s) failed", calling, peer)
            with self._lock:
                self.counters.refused += 1
                self.counters.last_refusal = f"{type(e).__name__}: {e}"
            return PROCESSING_FAILURE
        with self._lock:
            self.counters.received += 1
            self.counters.bytes += rec.bytes
            self.counters.last_from = calling
            self._assoc_series.setdefault(id(assoc), set()).add((rec.study_uid, rec.series_uid))
        self.submit(rec, assoc_key=id(assoc))
        return SUCCESS

    def accept(self, event, calling: str = "", peer: str = "") -> Received:
        from inference.results import now_iso

        req = event.request
        ts = event.context.transfer_syntax
        try:
            ds = event.dataset
        except Exception as e:
            raise Refused(CANNOT_UNDERSTAND, f"the dataset cannot be decoded ({type(e).__name__}: {e})") from None
        check_dataset(ds, str(req.AffectedSOPClassUID or event.context.abstract_syntax),
                      str(req.AffectedSOPInstanceUID or ""), ts)
        modality = str(ds.get("Modality", "") or "")
        dest = instance_path(self.root, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                             str(ds.SOPInstanceUID), modality, _int(ds.get("SeriesNumber")),
                             _int(ds.get("InstanceNumber")))
        data = encode_file(event.encoded_dataset(include_meta=False), event.file_meta, calling)
        try:
            self.write(dest, data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise Refused(OUT_OF_RESOURCES, f"the disk holding {self.root} is full; the instance was not "
                                                "stored (nothing half-written is left)") from None
            raise Refused(OUT_OF_RESOURCES, f"cannot write {dest.name}: {e.strerror or e}") from None
        return Received(str(dest), str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.StudyInstanceUID),
                        str(ds.SeriesInstanceUID), modality, len(data), str(ts), calling, peer, now_iso(),
                        _int(ds.get("SeriesNumber")), _int(ds.get("InstanceNumber")))

    def write(self, dest: Path, data: bytes) -> None:  # one seam for tests (a full disk)
        try:
            write_atomic(dest, data, self._made)
        except FileNotFoundError:  # the folder went away under us (deleted by hand): make it again
            self._made.discard(dest.parent)
            write_atomic(dest, data, self._made)

    def association_closed(self, assoc) -> None:
        """EVT_CONN_CLOSE: the endoscopy series that association delivered are complete; read them (after
        its instances, which are ahead in the queue)."""
        with self._lock:
            keys = self._assoc_series.pop(id(assoc), set())
        if keys:
            self._ensure_worker()
            self._q.put(("series", sorted(keys)))

    def flush(self) -> None:
        """Read every endoscopy series still waiting, once what is queued now is read (C-GET's end, stop)."""
        self._ensure_worker()
        self._q.put(("series", None))

    # -- worker side -----------------------------------------------------------------------------------
    def submit(self, rec: Received, assoc_key: int | None = None) -> None:
        with self._lock:
            self.counters.pending += 1
        self._ensure_worker()
        self._q.put(("instance", rec))

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="lightbox-dicom-ingest", daemon=True)
                self._worker.start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until everything queued so far is read (tests, ``lightbox retrieve``)."""
        self._ensure_worker()
        done = threading.Event()
        self._q.put(("mark", done))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        if self._worker is not None and self._worker.is_alive():
            self.flush()
            self._q.put(("stop", None))
            self._worker.join(timeout)
        self._worker = None
        if self._store is not None:
            self._store.close()
            self._store = None

    def store(self):
        if self._store is None:
            from app.store import Store  # Qt-free: the same store the workstation reads

            self._store = Store(self.db)
        return self._store

    def _run(self) -> None:
        while True:
            kind, item = self._q.get()
            try:
                if kind == "stop":
                    return
                if kind == "mark":
                    item.set()
                elif kind == "rescan":
                    self.rescan(inline=True)
                elif kind == "instance":
                    self._ingest(item)
                elif kind == "series":
                    with self._lock:
                        keys = list(self._endo) if item is None else [k for k in item if k in self._endo]
                    for k in keys:
                        try:
                            self._ingest_series(k)
                        except Exception:
                            log.exception("reading endoscopy series %s failed", k[1])
            except Exception:  # the worker outlives any one bad object
                log.exception("ingesting %s failed", kind)
            finally:
                if kind == "instance":
                    with self._lock:
                        self.counters.pending -= 1

    def _done(self, sid: int | None, rec: Received, problem: str = "", modality: str | None = None) -> None:
        with self._lock:
            if sid is None:
                self.counters.unreadable += 1
            else:
                self.counters.read += 1
                self.counters.studies = (self.counters.studies + [sid])[-200:]
        if sid is None:
            log.warning("kept, not readable: %s from %s (%s): %s", Path(rec.path).name, rec.calling_ae or "disk",
                        sop_class_name(rec.sop_class_uid), problem)
        else:
            log.info("received %s study #%d from %s (%s)", modality, sid, rec.calling_ae or "disk", Path(rec.path).name)
        if self.on_ingested:
            try:
                self.on_ingested(sid, {"modality": modality, "problem": problem, **rec.row()})
            except Exception:
                log.exception("on_ingested callback failed")

    def _ingest(self, rec: Received) -> None:
        from inference.detect import open_study
        from inference.study import ReadError

        modality, why = lightbox_modality(rec.sop_class_uid, rec.dicom_modality)
        if modality is None:
            self.store().record_unreadable([rec.row()], why)
            self._done(None, rec, why)
            return
        if modality == "endo":
            with self._lock:
                self._endo.setdefault((rec.study_uid, rec.series_uid), []).append(rec)
            return
        try:
            study = open_study(rec.path, modality)
        except ReadError as e:
            self.store().record_unreadable([rec.row()], e.problem)
            self._done(None, rec, e.problem, modality)
            return
        sid = self.store().save_received(study, [rec.row()])
        self._done(sid, rec, "", modality)

    def _ingest_series(self, key: tuple[str, str]) -> None:
        from inference.detect import open_study
        from inference.patients import identity_from_dicom
        from inference.study import ReadError

        with self._lock:
            recs = self._endo.pop(key, [])
        if not recs:
            return
        recs.sort(key=lambda r: (r.instance_number, r.sop_instance_uid))
        rows = [r.row() for r in recs]
        store = self.store()
        before = {r["sop_instance_uid"]: r for r in store.dicom_sources_of_series(key[1])}
        # instances of this series received earlier (another association) belong to the same study
        for old in before.values():
            if old["sop_instance_uid"] not in {r["sop_instance_uid"] for r in rows} and Path(old["path"]).exists():
                rows.append({k: old[k] for k in rows[0]})
        try:
            folder, header = frames_folder(rows)
            study = open_study(folder, "endo")
        except ReadError as e:
            store.record_unreadable(rows, e.problem)
            self._done(None, recs[0], e.problem, "endo")
            return
        except Exception as e:
            problem = f"the endoscopy frames cannot be decoded ({type(e).__name__}: {e})"
            store.record_unreadable(rows, problem)
            self._done(None, recs[0], problem, "endo")
            return
        study.metadata["patient"] = identity_from_dicom(header).as_dict()
        desc = str(header.get("SeriesDescription", "") or "").strip()
        study.metadata["dicom_series"] = {"series_number": _int(header.get("SeriesNumber")),
                                          "instances": len(rows)}
        study.notes = [n for n in study.notes if "no frame rate stored" not in n]
        fps = _series_fps(header)
        if fps:
            study.notes.append(f"DICOM frame time {1000 / fps:.1f} ms ({fps:g} fps); the frame folder plays at "
                               f"{study.metadata.get('fps')} fps")
        if desc:
            study.notes.append(f"series: {desc}")
        replaces = next((r["study_id"] for r in before.values() if r.get("study_id")), None)
        sid = store.save_received(study, rows, replaces=replaces)
        self._done(sid, recs[0], "", "endo")

    # -- start-up ----------------------------------------------------------------------------------------
    def start_rescan(self) -> None:
        """Rescan on the worker thread (a large received folder must not hold up the node's start)."""
        self._ensure_worker()
        self._q.put(("rescan", None))

    def rescan(self, stale_part_s: float = 3600.0, inline: bool = False) -> int:
        """Read instances on disk the store does not list (written, then the process died); remove
        temporary files of writes that never completed. ``inline`` (on the worker): read them now, so a
        ``wait_idle`` queued after the rescan waits for them. Returns how many were found."""
        import pydicom

        if not self.root.exists():
            return 0
        known = self.store().instance_paths()
        n = 0
        now = time.time()
        for p in sorted(self.root.rglob("*")):
            if not p.is_file():
                continue
            if p.name.startswith(".") and p.name.endswith(".part"):
                if now - p.stat().st_mtime > stale_part_s:
                    p.unlink(missing_ok=True)
                continue
            if p.suffix != ".dcm" or str(p) in known or p.stat().st_mtime >= self._since:
                continue
            try:
                ds = pydicom.dcmread(str(p), stop_before_pixels=True)
                rec = Received(str(p), str(ds.SOPInstanceUID), str(ds.SOPClassUID), str(ds.StudyInstanceUID),
                               str(ds.SeriesInstanceUID), str(ds.get("Modality", "") or ""), p.stat().st_size,
                               str(ds.file_meta.get("TransferSyntaxUID", "")), "", "found on disk", "",
                               _int(ds.get("SeriesNumber")), _int(ds.get("InstanceNumber")))
            except Exception as e:
                log.warning("%s in the received folder is not readable DICOM (%s); left as it is", p.name, e)
                continue
            if inline:
                self._ingest(rec)
            else:
                self.submit(rec)
            n += 1
        if n and inline:
            with self._lock:
                keys = list(self._endo)
            for k in keys:
                self._ingest_series(k)
        elif n:
            self.flush()
        if n:
            log.info("%d received instance(s) found on disk without a store row: reading them again", n)
        return n


def _series_fps(ds) -> float | None:
    for kw, conv in (("RecommendedDisplayFrameRate", float), ("CineRate", float),
                     ("FrameTime", lambda v: 1000.0 / float(v))):
        try:
            v = conv(ds.get(kw))
            if v and 0 < v < 1000:
                return round(v, 3)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
    return None


def series_order(headers: list) -> list[tuple[Any, int]]:
    """A series' instances in frame order -- Instance Number, then acquisition time, then SOP Instance UID --
    each with its number of frames: frame k of the frame folder is found by walking this list (the frame
    folder and the overlays sent back use the same order)."""
    def key(h):
        return (_int(h.get("InstanceNumber")), str(h.get("AcquisitionDateTime", "") or h.get("ContentTime", "") or ""),
                str(h.get("SOPInstanceUID", "")))

    return [(h, max(1, _int(h.get("NumberOfFrames")) or 1)) for h in sorted(headers, key=key)]


def frame_source(headers: list, frame_index: int) -> tuple[Any, int]:
    """(the instance header, 1-based frame number in it) that frame ``frame_index`` of a series came from."""
    k = max(0, int(frame_index))
    order = series_order(headers)
    for h, n in order:
        if k < n:
            return h, k + 1
        k -= n
    return order[-1][0], order[-1][1]


def frames_folder(rows: list[dict[str, Any]]):
    """Decode an endoscopy series (single-frame instances, or multi-frame ones) frame by frame, in
    ``series_order``, into PNGs in a folder beside the instances, swapped in whole. Returns (folder, first
    header)."""
    import cv2
    import numpy as np
    import pydicom
    from pydicom.pixels import iter_pixels

    heads = {r["path"]: pydicom.dcmread(str(r["path"]), stop_before_pixels=True) for r in rows}
    by_head = {id(h): p for p, h in heads.items()}
    ordered = [by_head[id(h)] for h, _n in series_order(list(heads.values()))]
    rows = sorted(rows, key=lambda r: ordered.index(r["path"]))
    first = Path(rows[0]["path"])
    header = heads[rows[0]["path"]]
    mod = "".join(c for c in str(header.get("Modality", "ES")).upper() if c.isalnum())[:8] or "ES"
    dest = first.parent / f"{mod}-{_int(header.get('SeriesNumber'))}-{_short(rows[0]['series_uid'])}.frames"
    tmp = Path(tempfile.mkdtemp(prefix=".frames.", dir=first.parent))
    try:
        n = 0
        for r in rows:
            for frame in iter_pixels(r["path"]):  # one frame in memory at a time (pydicom 3: YBR -> RGB)
                a = np.asarray(frame)
                if a.ndim == 2:
                    a = np.stack([a] * 3, axis=-1)
                if a.dtype != np.uint8:
                    a = np.clip(a / max(1, a.max()) * 255, 0, 255).astype(np.uint8)
                n += 1
                png = tmp / f"frame_{n:06d}.png"
                if not cv2.imwrite(str(png), cv2.cvtColor(a[..., :3], cv2.COLOR_RGB2BGR)):
                    raise OSError(errno.EIO, f"cannot write frame {n}")
                os.chmod(png, paths.PRIVATE_FILE)  # derived patient images: the user's alone, like the instances
        if n == 0:
            raise ValueError("the series holds no frames")
        old = dest.with_name(dest.name + ".old")
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            dest.rename(old)
        tmp.rename(dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest, header


def describe(rec: dict[str, Any]) -> str:
    return (f"{Path(rec.get('path', '')).name} · {sop_class_name(rec.get('sop_class_uid', ''))} · "
            f"{transfer_syntax_name(rec.get('transfer_syntax', ''))} · from {rec.get('calling_ae') or '?'}")
