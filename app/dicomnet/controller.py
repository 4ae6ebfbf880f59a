"""The app's handle on the DICOM node: settings, start/stop, state for the status bar, received studies.

The node (``inference.dicomnet.node.Node``) runs on pynetdicom's own threads and reads what it receives on
its receiver's worker thread; this object turns that into Qt signals for the UI thread (``study_received``
for the study list, ``state_changed`` for the status bar). Starting binds a socket (quick, on the UI thread);
stopping waits for the server and the reader to finish, so it runs as a Job.
"""
from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QTimer, Signal

from inference.dicomnet import config as C

log = logging.getLogger(__name__)


class NodeController(QObject):
    state_changed = Signal(str, str)  # status text, tooltip
    study_received = Signal(int)  # a study read from what the node received (UI thread)
    object_kept = Signal(str)  # something received that Lightbox cannot read: why

    def __init__(self, ctx, parent: QObject | None = None):
        super().__init__(parent)
        self.ctx = ctx
        self.node = None
        self.error = ""
        try:
            self.cfg = C.load()
        except C.ConfigError as e:
            self.cfg, self.error = C.NodeConfig(), str(e)
        self.timer = QTimer(self)
        self.timer.setInterval(2000)
        self.timer.timeout.connect(self.emit_state)

    # -- settings ---------------------------------------------------------------------------------------
    def save(self, cfg: C.NodeConfig) -> None:
        """Validate and save; a running node restarts with the new settings."""
        cfg = cfg.validated()
        C.save(cfg)
        self.cfg, self.error = cfg, ""
        if self.running:
            self.stop(then_start=True)
        else:
            self.emit_state()

    # -- life -------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.node is not None and self.node.server is not None

    def start(self) -> bool:
        from inference.dicomnet.node import Node, NodeError

        if self.running:
            return True
        node = Node(self.cfg, db=self.ctx.store.path, on_ingested=self._ingested)
        try:
            node.start()
        except NodeError as e:
            self.error = str(e)
            self.emit_state()
            return False
        self.node, self.error = node, ""
        self.timer.start()
        self.emit_state()
        return True

    def stop(self, then_start: bool = False) -> None:
        node, self.node = self.node, None
        self.timer.stop()
        if node is None:
            if then_start:
                self.start()
            return

        def done(_=None):
            self.emit_state()
            if then_start:
                self.start()

        self.ctx.jobs.start("Stopping the DICOM node", lambda ctx: node.stop(), on_result=done,
                            on_error=lambda msg: (log.warning("stopping the node: %s", msg), done()))
        self.emit_state()

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """At exit: stop now, on this thread (the pool is being drained)."""
        self.timer.stop()
        if self.node is not None:
            try:
                self.node.stop()
            except Exception:
                log.exception("stopping the DICOM node")
            self.node = None

    # -- from the node's threads ---------------------------------------------------------------------------
    def _ingested(self, sid, info) -> None:  # the receiver's worker thread: signals are queued to the UI
        if sid is not None:
            self.study_received.emit(int(sid))
        else:
            self.object_kept.emit(str(info.get("problem") or "not readable"))

    # -- status -----------------------------------------------------------------------------------------
    def emit_state(self) -> None:
        c = self.cfg
        if self.running:
            st = self.node.state()
            text = st.summary()
            tip = (f"DICOM node {c.ae_title} listening on {c.bind}:{st.port}\n"
                   f"{st.read} studies received, {st.unreadable} objects kept but not readable, "
                   f"{st.refused} instances and {st.rejected_associations} associations refused"
                   + (f"\nlast refusal: {st.last_refusal}" if st.last_refusal else "")
                   + f"\nallowed callers: {', '.join(x.ae_title for x in c.callers) or 'none'}; "
                     f"PACS: {', '.join(p.name for p in c.pacs) or 'none'}")
        else:
            text = "DICOM node off" + (" (error)" if self.error else "")
            tip = self.error or "Network ▸ Start DICOM node, or Network ▸ DICOM node settings…"
        self.state_changed.emit(text, tip)
