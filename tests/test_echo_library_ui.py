"""Echo case library in the app (pytest-qt, offscreen): a teaching set with expert EF and no EchoNet
weights; a timed practice session never shows the expert value before the lock, reveals it after, and
ends with a summary exportable as PDF. With an AI result too, the reveal shows both and AI vs expert."""
from __future__ import annotations

import pytest

from inference.echo import demo

from test_echo import _fake_result  # noqa: E402  (same folder)
from test_echo_ui import _all_text  # noqa: E402

EXPERT = {"loopA": 61.3, "loopB": 28.7, "loopC": 44.2}


@pytest.fixture(scope="module")
def teaching_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("teaching")
    (d / "Videos").mkdir()
    fr = demo.frames()
    for i, name in enumerate(EXPERT):
        demo.write(d / "Videos" / f"{name}.avi", fr[i * 3: i * 3 + 40])
    rows = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    rows += [f"{k},{v},30,80,112,112,50,40,TEST" for k, v in EXPERT.items()]
    (d / "FileList.csv").write_text("\n".join(rows) + "\n")
    return d / "FileList.csv"


def _wait_loop(main_window, qtbot, v):
    qtbot.waitUntil(lambda: main_window.study_id == v.session_expect and v.session_clock.isValid(), timeout=30000)


def test_session_with_expert_ef_and_no_ai_weights(main_window, qtbot, teaching_set, tmp_path):
    from app.echo import library as lib
    from app.echo import practice

    store = main_window.ctx.store
    out = lib.import_set(store, teaching_set, "Teaching A")
    assert out["imported"] == 3 and not out["failures"]
    assert not main_window.ctx.registry.state("echonet-ef").usable  # no EchoNet weights here
    v = main_window.viewer_for("echo")
    analyses = []
    v.request_analysis.connect(analyses.append)
    s = v.start_session("Dr Trainee", "Teaching A", 3, seed=4)
    assert v.panel.practice.isChecked() and v.panel.session_box.isVisibleTo(v.panel)
    estimates = {}
    for i in range(3):
        _wait_loop(main_window, qtbot, v)
        name = main_window.study.name.removesuffix(".avi")
        assert main_window.study_id == s["study_ids"][i]
        assert f"Loop {i + 1} of 3" in v.panel.session_label.text()
        text = _all_text(main_window)
        for value in EXPERT.values():  # no expert value anywhere before the lock
            assert f"{value}" not in text
        assert "hidden" in v.panel.reveal.text()
        v.panel.estimate.setFocus()
        guess = EXPERT[name] + (5 if i % 2 == 0 else -3)
        qtbot.keyClicks(v.panel.estimate, str(int(round(guess))))
        qtbot.wait(50)
        eid = v.lock_estimate()
        assert eid is not None
        reveal = v.panel.reveal.text()
        assert f"Expert EF <b>{EXPERT[name]:.1f} %</b>" in reveal and "%-points" in reveal
        assert "AI EF" not in reveal  # no weights: the expert alone is the reference
        row = store.db["estimates"].get(eid)
        assert row["expert_ef"] == pytest.approx(EXPERT[name]) and row["session_id"] == s["id"]
        assert row["seconds"] is not None and row["seconds"] >= 0
        assert row["expert_delta"] == pytest.approx(round(guess) - EXPERT[name])
        estimates[name] = round(guess)
        assert "locked" in v.panel.session_label.text()
        assert v.panel.next_loop.text() == ("Finish ▸" if i == 2 else "Next loop ▸")
        v.next_loop()
    assert analyses == []  # nothing to run without weights
    assert v.session is None and not v.panel.session_box.isVisibleTo(v.panel)
    dlg = v.session_summary_dialog
    assert dlg is not None and dlg.isVisible()
    sm = dlg.summary
    assert sm["vs_expert"]["n"] == 3 and sm["ai_vs_expert"]["n"] == 0
    want = [estimates[k] - EXPERT[k] for k in EXPERT]
    assert sm["vs_expert"]["bias"] == pytest.approx(sum(want) / 3)
    assert sm["vs_expert"]["mae"] == pytest.approx(sum(abs(w) for w in want) / 3)
    assert "category agreement" in _all_text(dlg)
    pdf = dlg._pdf(str(tmp_path / "session.pdf"))
    assert pdf and (tmp_path / "session.pdf").stat().st_size > 5000
    dlg.close()
    # history and the practice-set view show trainee vs expert
    tid = v.trainee_id()
    rows = practice.history(store, tid)
    assert len(rows) == 3 and all(r["expert_ef"] is not None for r in rows)
    assert practice.comparisons(rows)["vs_expert"]["n"] == 3
    assert practice.practice_summary(store)[0]["n_vs_expert"] == 3
    from app.echo.practice_panel import HistoryDialog, PracticeSetDialog

    h = HistoryDialog(v, store, tid, "Dr Trainee")
    assert "you vs expert (3)" in _all_text(h)
    h.close()
    p = PracticeSetDialog(v, store)
    assert "Dr Trainee" in _all_text(p)
    p.close()


def test_reveal_shows_expert_and_ai_when_both_exist(main_window, qtbot, teaching_set):
    from app.echo import library as lib

    store = main_window.ctx.store
    lib.import_set(store, teaching_set, "Teaching B")
    path = [c for c in lib.set_cases(store, "Teaching B") if c["name"] == "loopA.avi"][0]["source_path"]
    main_window.open_path(path)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    v = main_window.current_viewer()
    v.set_trainee("Dr Both")
    v.set_practice_mode(True)
    main_window._analysis_done(main_window.study_id, _fake_result(ef=42.4))
    text = _all_text(main_window)
    assert "42.4" not in text and "61.3" not in text  # neither reference before the lock
    v.panel.estimate.setValue(55)
    eid = v.lock_estimate()
    r = v.panel.reveal.text()
    assert "Expert EF <b>61.3 %</b>" in r and "AI EF <b>42.4 %</b>" in r and "AI vs expert: -18.9" in r
    row = store.db["estimates"].get(eid)
    assert row["ai_ef"] == pytest.approx(42.4) and row["expert_ef"] == pytest.approx(61.3)
    assert row["session_id"] is None  # not in a session


def test_pdf_withholds_the_expert_until_the_lock(main_window, qtbot, teaching_set, tmp_path):
    import subprocess

    from app.echo import library as lib
    from app.report import build_report

    store = main_window.ctx.store
    lib.import_set(store, teaching_set, "Teaching C")
    path = [c for c in lib.set_cases(store, "Teaching C") if c["name"] == "loopB.avi"][0]["source_path"]
    main_window.open_path(path)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    v = main_window.current_viewer()
    v.set_trainee("Dr Pdf")
    v.set_practice_mode(True)

    def pdf_text(name):
        build_report(main_window.study, store, main_window.study_id, tmp_path / name, extra=v.report_extra())
        return subprocess.run(["pdftotext", str(tmp_path / name), "-"], capture_output=True, text=True).stdout

    before = pdf_text("before.pdf")
    assert "28.7" not in before
    assert "loopB" not in before and f"Teaching case #{main_window.study_id}" in before  # nor the file's name
    v.panel.estimate.setValue(35)
    v.lock_estimate()
    after = pdf_text("after.pdf").replace("\n", " ")
    assert "expert 28.7 %" in after and "+6.3" in after and "loopB.avi" in after


# -- blinding: a loop's file name may tell the answer ---------------------------------------------------------
TELLING = {"EF35_dilated": 35.0, "EF62_normal": 62.0}


@pytest.fixture(scope="module")
def telling_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("telling")
    fr = demo.frames()
    for i, name in enumerate(TELLING):
        demo.write(d / f"{name}.avi", fr[i * 4: i * 4 + 40])
    (d / "labels.csv").write_text("file,ef,category,comment\n"
                                  + "".join(f"{k}.avi,{v},{'moderate' if v < 40 else 'normal'},dilated LV\n"
                                            for k, v in TELLING.items()))
    return d / "labels.csv"


def _visible_names(main_window) -> str:
    """The window title, the echo viewer's header, every study list entry's text and tooltip, the job bar."""
    b = main_window.study_list
    items = [b._items[i] for i in range(b.count())]
    return "\n".join([main_window.windowTitle(), main_window.viewer_for("echo").header.text(),
                      main_window.job_label.text(), main_window.statusBar().currentMessage()]
                     + [it.text(0) for it in items] + [it.toolTip(0) for it in items])


def test_session_hides_telling_file_names_until_the_lock(main_window, qtbot, telling_set):
    from app.echo import library as lib

    store = main_window.ctx.store
    lib.import_set(store, telling_set, "Telling")
    main_window.refresh_studies()
    v = main_window.viewer_for("echo")
    s = v.start_session("Dr Blind", "Telling", 2, seed=1)
    assert (s["n_new"], s["n_repeated"]) == (2, 0)
    locked: set[str] = set()
    for i in range(2):
        shown = []
        qtbot.waitUntil(lambda: (shown.append(_visible_names(main_window)) or True)
                        and main_window.study_id == v.session_expect and v.session_clock.isValid(), timeout=30000)
        name = main_window.study.name.removesuffix(".avi")
        text = "\n".join(shown) + _visible_names(main_window) + _all_text(main_window)
        for k in set(TELLING) - locked:  # no name of a loop not yet locked, anywhere, at any moment
            assert k not in text and f"{TELLING[k]:.1f}" not in text
        if "EF35_dilated" not in locked:
            assert "dilated" not in text and "moderate" not in text
        assert f"Case {i + 1} of 2" in main_window.windowTitle()
        assert f"Case {i + 1} of 2" in v.header.text()
        assert any(f"Case {i + 1} of 2" in main_window.study_list.item(j).text()
                   for j in range(main_window.study_list.count()))
        v.panel.estimate.setValue(40)
        v.lock_estimate()
        after = _visible_names(main_window)
        assert f"{name}.avi" in main_window.windowTitle() and name in v.header.text()
        assert name in after  # the list shows the real name now
        assert "Expert EF" in v.panel.reveal.text()
        locked.add(name)
        v.next_loop()
    v.session_summary_dialog.close()


def test_practice_mode_outside_a_session_hides_library_names(main_window, qtbot, telling_set):
    from app.echo import library as lib

    store = main_window.ctx.store
    lib.import_set(store, telling_set, "Telling")
    path = [c for c in lib.set_cases(store, "Telling") if c["name"] == "EF35_dilated.avi"][0]["source_path"]
    main_window.open_path(path)
    qtbot.waitUntil(lambda: main_window.study is not None, timeout=30000)
    v = main_window.current_viewer()
    assert "EF35_dilated" in main_window.windowTitle()  # practice off: names as they are
    # the job bar legitimately named the file while it opened with practice off: let that job end first
    # (on a loaded machine its "finished" can arrive after the study is already shown)
    qtbot.waitUntil(lambda: not main_window.ctx.jobs.running, timeout=30000)
    v.set_trainee("Dr Solo")
    v.set_practice_mode(True)
    sid = main_window.study_id
    assert "EF35" not in _visible_names(main_window) and "EF62" not in _visible_names(main_window)
    assert f"Teaching case #{sid}" in main_window.windowTitle() and f"Teaching case #{sid}" in v.header.text()
    v.panel.estimate.setValue(30)
    v.lock_estimate()
    names = _visible_names(main_window)
    assert "EF35_dilated" in main_window.windowTitle() and "EF35_dilated" in names
    assert "EF62" not in names  # the other loop is still blinded for this trainee
    v.set_practice_mode(False)
    assert "EF62_normal" in _visible_names(main_window)


def test_draw_prefers_loops_the_trainee_has_not_done(main_window, qtbot, teaching_set):
    from app.echo import library as lib
    from app.echo.session import StartSessionDialog

    store = main_window.ctx.store
    lib.import_set(store, teaching_set, "Draw")
    ids = {c["name"]: c["study_id"] for c in lib.set_cases(store, "Draw")}
    tid = store.trainee("Dr Draw")
    # loopA done long ago, loopB recently, loopC never
    a = store.lock_estimate(tid, ids["loopA.avi"], 50)
    b = store.lock_estimate(tid, ids["loopB.avi"], 30)
    store.conn.execute("UPDATE estimates SET locked_at='2020-01-01T00:00:00' WHERE id=?", (a,))
    store.conn.execute("UPDATE estimates SET locked_at='2030-01-01T00:00:00' WHERE id=?", (b,))
    store.conn.commit()
    for seed in range(6):
        d = lib.draw(store, tid, "Draw", 1, seed=seed)
        assert d["study_ids"] == [ids["loopC.avi"]] and (d["n_new"], d["n_repeated"]) == (1, 0)
        d = lib.draw(store, tid, "Draw", 2, seed=seed)
        assert set(d["study_ids"]) == {ids["loopC.avi"], ids["loopA.avi"]}  # the least recently done repeat
        assert (d["n_new"], d["n_repeated"]) == (1, 1)
    assert set(lib.draw(store, None, "Draw", 3)["study_ids"]) == set(ids.values())
    assert lib.draw_text(lib.draw(store, tid, "Draw", 2)).startswith("1 new, 1 repeated")
    dlg = StartSessionDialog(main_window, main_window.ctx, "Dr Draw")
    i = dlg.set_box.findData("Draw")
    dlg.set_box.setCurrentIndex(i)
    dlg.n.setValue(3)
    assert "1 new, 2 repeated" in dlg.draw_label.text()
    dlg.trainee.setCurrentText("Someone New")
    assert "3 new" in dlg.draw_label.text() and "repeated" not in dlg.draw_label.text()
    dlg.close()
    s = lib.start_session(store, tid, "Draw", 2, seed=3)
    assert ids["loopC.avi"] in s["study_ids"] and ids["loopB.avi"] not in s["study_ids"]
