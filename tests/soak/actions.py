"""What a soak round does to the app, as a reader would: each action is a function of the session
(``s``) that drives the real main window through its public methods and waits on the event loop (never
by sleeping the UI thread). Modal boxes and dialogs are answered by a timer, the way a user closes them
a moment later, while playback timers and workers keep running underneath."""
from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication, QDialog


# -- event-loop helpers ------------------------------------------------------------------------------
def pump(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(max(0, int(ms)), loop.quit)
    loop.exec()


def wait_until(cond, timeout_s: float, what: str, s=None) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            if s is not None:
                s.note(f"timeout: {what}")
            return False
        pump(20)
    return True


def answer_modals_in(ms: int) -> None:
    """Close whatever modal box or dialog is open ``ms`` from now (and any that follows it quickly)."""
    def close(tries: int = 20) -> None:
        w = QApplication.activeModalWidget()
        if isinstance(w, QDialog):
            w.done(0)
        if tries:
            QTimer.singleShot(50, lambda: close(tries - 1))
    QTimer.singleShot(ms, close)


def idle(s, timeout_s: float = 120) -> None:
    wait_until(lambda: not s.win.ctx.jobs.running, timeout_s, "jobs to finish", s)


# -- opening -----------------------------------------------------------------------------------------
def open_file(s, path: Path, modality: str | None = None) -> bool:
    win = s.win
    before = win.study
    win.open_path(path, modality)
    wait_until(lambda: not any(j.title.startswith("Opening") for j in win.ctx.jobs.running.values()),
               90, f"open {Path(path).name}", s)
    pump(10)
    ok = win.study is not before and win.study is not None
    if not ok:
        s.note(f"not opened: {Path(path).name}: {win.statusBar().currentMessage()}")
    s.opened += ok
    return ok


def open_some(s) -> None:
    """Every modality's files in the first round, then a seeded few each round."""
    for m, paths in s.files.items():
        pick = paths if s.round == 1 else s.rng.sample(paths, min(len(paths), 1 + s.rng.randrange(2)))
        for p in pick:
            open_file(s, p, m)
            pump(s.rng.randrange(50, 250))


# -- playback with boxes and dialogs on top ------------------------------------------------------------
def play_echo_with_boxes(s) -> None:
    if "echo" not in s.files or not open_file(s, s.rng.choice(s.files["echo"]), "echo"):
        return
    v = s.win.current_viewer()
    v.play()
    pump(s.ms(800))
    s.win.run_analysis("echonet-ef")  # not installed: a (non-modal) error box while the loop plays
    pump(s.ms(300))
    answer_modals_in(s.ms(300))
    s.win.about()  # a modal box over the playing loop
    answer_modals_in(s.ms(300))
    s.win.show_weights()
    pump(s.ms(300))
    v.pause()
    box = getattr(s.win, "_error_box", None)
    if box is not None and box.isVisible():
        box.done(0)


def play_endo_live_and_export(s) -> None:
    if "endo" not in s.files or not open_file(s, s.rng.choice(s.files["endo"]), "endo"):
        return
    v = s.win.current_viewer()
    v.play()
    pump(s.ms(600))
    v.set_live(True)
    pump(s.ms(1200))
    answer_modals_in(s.ms(200))
    s.win.about()
    v.seek(s.rng.randrange(max(1, v.n)))
    pump(s.ms(400))
    v.set_live(False)
    v.pause()
    job = v.export_bundle(str(s.out_file("endo_bundle.zip")))
    if job is not None and s.rng.random() < 0.3:
        job.cancel()
    s.win.export_endo_anonymised(str(s.out_file("endo_anon.zip")))
    idle(s)


# -- analyses ----------------------------------------------------------------------------------------
QUICK_MODELS = {"ecg": "ecg-rhythm", "pcg": "heart-sound", "xray": "xray-pneumonia", "endo": "endo-quality"}


def analyse_and_cancel(s) -> None:
    m = s.rng.choice([m for m in sorted(QUICK_MODELS) if m in s.files])
    if not open_file(s, s.rng.choice(s.files[m]), m):
        return
    s.win.run_analysis(QUICK_MODELS[m])
    if s.rng.random() < 0.5:
        pump(s.rng.randrange(0, 300))
        s.win.ctx.jobs.cancel_all()
    idle(s)


# -- patients: compare, timeline, dialogs, exports ---------------------------------------------------
def compare_and_timeline(s) -> None:
    win = s.win
    ids = s.ecg_pair_ids()
    if not ids:
        return
    win.compare_with_prior(ids[1])
    cw = win.compare_window
    if cw is None:
        s.note("compare window did not open")
        return
    wait_until(lambda: all(x is not None for x in cw.studies), 60, "compare studies read", s)
    pump(s.ms(300))
    a, b = cw.viewers
    if hasattr(a, "view"):
        a.view.vb.setXRange(1, 4, padding=0)
    cw.export_pdf(str(s.out_file("compare.pdf")))
    if s.rng.random() < 0.5:
        cw.close()  # closed while its PDF (and the viewers' measurements) may still be running
    pid = win.ctx.store.study(ids[1])["patient_id"]
    win.show_timeline(pid)
    pump(s.ms(300))
    answer_modals_in(s.ms(250))
    win.study_list.assign_dialog(ids[0])  # the modal patient picker, answered "cancel"
    idle(s)


def export_reports(s) -> None:
    win = s.win
    if win.study is None:
        return
    win.export_pdf(str(s.out_file(f"report_{win.study.modality}.pdf")))
    win.export_pdf(str(s.out_file(f"report_{win.study.modality}_anon.pdf")), anonymise=True)
    win.export_table(str(s.out_file("results.csv")), anonymise=True)
    idle(s)


def switch_quickly(s) -> None:
    """Open studies of different modalities back to back without waiting (results arrive for viewers
    that are no longer on show)."""
    for _ in range(4):
        m = s.rng.choice(sorted(s.files))
        s.win.open_path(s.rng.choice(s.files[m]), m)
        pump(s.rng.randrange(0, 60))
    idle(s)


ROUND = (open_some, play_echo_with_boxes, play_endo_live_and_export, analyse_and_cancel,
         compare_and_timeline, export_reports, switch_quickly)
