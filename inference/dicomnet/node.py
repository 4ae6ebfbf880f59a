"""The node: a DICOM Storage SCP with C-ECHO, run by ``lightbox node`` (headless) and by the app.

- listens on the configured bind address and port as the configured AE title;
- every association request passes ``policy.AssociationPolicy`` first (refused and logged otherwise);
- accepts every storage SOP class in the transfer syntaxes this installation decodes (refused presentation
  contexts are logged with what was offered), so nothing a modality sends is dropped for its kind: what
  Lightbox cannot read is kept and listed;
- hands each C-STORE to ``receive.Receiver`` (checks, atomic write, ingestion into the store);
- logs to ``<data folder>/logs/dicom-node.log`` (0600) as well as to the process's log.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from inference import paths
from inference.dicomnet.classify import receivable_transfer_syntaxes, sop_class_name, transfer_syntax_name
from inference.dicomnet.config import NodeConfig
from inference.dicomnet.policy import AssociationPolicy
from inference.dicomnet.receive import Receiver
from inference.dicomnet.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION

log = logging.getLogger("lightbox.dicom")
LOG_NAME = "dicom-node.log"
_log_handler: logging.Handler | None = None
_log_lock = threading.Lock()


class NodeError(Exception):
    pass


def attach_log_file() -> Path:
    """The node's log file (0600, in the data folder's logs/), attached once per process."""
    global _log_handler
    with _log_lock:
        path = paths.logs_dir() / LOG_NAME
        if _log_handler is None or getattr(_log_handler, "baseFilename", "") != str(path):
            if _log_handler is not None:
                log.removeHandler(_log_handler)
                _log_handler.close()
            paths.open_private(path).close()  # created 0600 before logging opens it
            h = logging.FileHandler(path, encoding="utf-8")
            h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            h.setLevel(logging.INFO)
            log.addHandler(h)
            if log.level == logging.NOTSET or log.level > logging.INFO:
                log.setLevel(logging.INFO)
            _log_handler = h
        return path


@dataclass
class NodeState:
    running: bool
    ae_title: str
    bind: str
    port: int
    message: str
    received: int = 0
    refused: int = 0
    rejected_associations: int = 0
    read: int = 0
    unreadable: int = 0
    pending: int = 0
    bytes: int = 0
    last_refusal: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        if not self.running:
            return f"DICOM node off{': ' + self.message if self.message else ''}"
        s = f"DICOM {self.ae_title}@{self.bind}:{self.port} · {self.read} received"
        if self.pending:
            s += f" · {self.pending} reading"
        if self.unreadable:
            s += f" · {self.unreadable} not readable"
        if self.refused or self.rejected_associations:
            s += f" · {self.refused + self.rejected_associations} refused"
        return s


class Node:
    """``Node(cfg).start()`` listens until ``stop()``; ``state()`` for a status line."""

    def __init__(self, cfg: NodeConfig, db: str | Path | None = None, root: str | Path | None = None,
                 on_ingested: Callable[[int | None, dict[str, Any]], None] | None = None,
                 log_file: bool = True):
        self.cfg = cfg.validated()
        self.policy = AssociationPolicy(self.cfg)
        self.receiver = Receiver(root, db, on_ingested)
        self.server = None
        self.rejected_associations = 0
        self.message = ""
        self.log_file = log_file

    # -- life ----------------------------------------------------------------------------------------------
    def start(self) -> Node:
        from pynetdicom import AE, evt
        from pynetdicom.presentation import AllStoragePresentationContexts
        from pynetdicom.sop_class import Verification

        if self.server is not None:
            return self
        if self.log_file:
            attach_log_file()
        ae = AE(ae_title=self.cfg.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION
        ae.maximum_pdu_size = 4 << 20  # large PDUs (fewer reads), still a bound on what one read may hold
        ae.acse_timeout, ae.dimse_timeout, ae.network_timeout = 30, 60, 60
        ae.maximum_associations = 16
        ts = list(receivable_transfer_syntaxes())
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, ts)
        ae.add_supported_context(Verification)
        handlers = [(evt.EVT_REQUESTED, self._requested), (evt.EVT_ACCEPTED, self._accepted),
                    (evt.EVT_C_ECHO, self._echo), (evt.EVT_C_STORE, self.receiver.handle_store),
                    (evt.EVT_ABORTED, self._aborted), (evt.EVT_CONN_CLOSE, self._closed)]
        try:
            self.server = ae.start_server((self.cfg.bind, self.cfg.port), block=False, evt_handlers=handlers,
                                          ae_title=self.cfg.ae_title)
        except OSError as e:
            self.message = f"cannot listen on {self.cfg.bind}:{self.cfg.port}: {e.strerror or e}"
            log.error("DICOM node %s", self.message)
            raise NodeError(self.message) from None
        self.ae = ae
        self.message = ""
        log.info("DICOM node %s listening on %s:%d; %d allowed caller(s), %d PACS; transfer syntaxes: %s",
                 self.cfg.ae_title, self.cfg.bind, self.port, len(self.cfg.callers), len(self.cfg.pacs),
                 ", ".join(transfer_syntax_name(t) for t in ts))
        self.receiver.start_rescan()  # instances a crash left unread, on the reader's thread
        return self

    @property
    def port(self) -> int:
        if self.server is not None:
            return int(self.server.server_address[1])
        return self.cfg.port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
            log.info("DICOM node %s stopped", self.cfg.ae_title)
        self.receiver.close()

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def state(self) -> NodeState:
        c = self.receiver.counters
        return NodeState(self.server is not None, self.cfg.ae_title, self.cfg.bind, self.port, self.message,
                         c.received, c.refused, self.rejected_associations, c.read, c.unreadable, c.pending, c.bytes,
                         c.last_refusal)

    # -- handlers (association threads) ---------------------------------------------------------------------
    def _requested(self, event) -> None:
        assoc = event.assoc
        rq = assoc.requestor.primitive
        calling = str(rq.calling_ae_title or "").strip()
        called = str(rq.called_ae_title or "").strip()
        host = str(assoc.requestor.address)
        d = self.policy.check(calling, called, host)
        if d.ok:
            log.info("association from %s (%s:%s) accepted: %s", calling, host, assoc.requestor.port, d.reason)
            return
        self.rejected_associations += 1
        log.warning("association from %s (%s:%s) to %s refused: %s", calling or "?", host, assoc.requestor.port,
                    called or "?", d.reason)
        assoc.acse.send_reject(*d.reject)
        assoc.kill()

    def _accepted(self, event) -> None:
        for cx in event.assoc.rejected_contexts:
            offered = ", ".join(transfer_syntax_name(t) for t in (cx.transfer_syntax or [])) or "nothing"
            log.warning("from %s: %s refused: offered only %s (this node decodes %s)",
                        event.assoc.requestor.ae_title, sop_class_name(cx.abstract_syntax), offered,
                        ", ".join(transfer_syntax_name(t) for t in receivable_transfer_syntaxes()))

    def _echo(self, event) -> int:
        log.info("C-ECHO from %s", event.assoc.requestor.ae_title)
        return 0x0000

    def _aborted(self, event) -> None:
        r = event.assoc.requestor
        log.warning("association from %s (%s) was aborted (the peer aborted or the connection dropped); only "
                    "instances received in full were kept", r.ae_title, r.address)

    def _closed(self, event) -> None:
        self.receiver.association_closed(event.assoc)
