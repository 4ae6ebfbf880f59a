"""Keyboard: every main action has a key, Help ▸ Keyboard shortcuts lists exactly the keys that exist, no key
means two things in one place, and keys do what the list says."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractButton

#: menu entries that are settings or information, not reading actions: no key needed
NO_KEY = {"About Lightbox", "Reset layout", "Play echo loops on opening"}


def _keys_of(src) -> list[str]:
    if isinstance(src, QAction):
        return [s.toString(QKeySequence.NativeText) for s in src.shortcuts()]
    if isinstance(src, QShortcut):
        return [src.key().toString(QKeySequence.NativeText)]
    if isinstance(src, QAbstractButton):
        return [src.shortcut().toString(QKeySequence.NativeText)]
    raise AssertionError(f"unexpected source {src!r}")


@pytest.fixture
def entries(main_window):
    from app.widgets.shortcuts import all_shortcuts

    return all_shortcuts(main_window)


def test_every_main_action_has_a_key(entries):
    menu = [e for e in entries if "viewer" not in e.section]
    assert len(menu) >= 25
    missing = [f"{e.section} ▸ {e.text}" for e in menu if not e.keys and e.text not in NO_KEY]
    assert not missing, f"main actions without a key: {missing}"
    for must in ("Open", "Run model", "Export PDF report", "Patient timeline", "Compare with prior",
                 "Find a study", "Next study in the list", "Keyboard shortcuts", "Validate on my cases"):
        assert any(e.text == must and e.keys for e in menu), must


def test_each_listed_key_exists_on_its_action(entries, main_window):
    from app.widgets.shortcuts import ShortcutsDialog

    d = ShortcutsDialog(main_window)
    listed = d.entries
    assert listed and all(e.keys for e in listed)
    for e in listed:
        assert e.keys in _keys_of(e.source), f"{e.section}: {e.text} lists {e.keys}"
        if isinstance(e.source, QAction) and "viewer" not in e.section:
            assert e.source in main_window.actions(), f"{e.text}: not active in the window"
    shown = {d.table.item(r, 0).text() for r in range(d.table.rowCount()) if d.table.item(r, 1) is not None}
    assert shown == {e.keys for e in listed}
    # every viewer's keys are listed, described
    for section in ("ECG viewer", "Echo viewer", "Chest X-ray viewer", "Endoscopy viewer", "Heart sounds viewer"):
        mine = [e for e in listed if e.section.startswith(section)]
        assert mine, section
        assert all(e.text and e.text != "(no description)" for e in mine), section
    d.close()


def test_no_key_means_two_things_in_one_place(entries):
    glob = [e.keys for e in entries if e.keys and "viewer" not in e.section]
    assert len(glob) == len(set(glob)), sorted(k for k in glob if glob.count(k) > 1)
    by_viewer: dict[str, list[str]] = {}
    for e in entries:
        if e.keys and "viewer" in e.section:
            by_viewer.setdefault(e.section, []).append(e.keys)
    for section, keys in by_viewer.items():
        assert len(keys) == len(set(keys)), (section, sorted(k for k in keys if keys.count(k) > 1))
        assert not set(keys) & set(glob), (section, set(keys) & set(glob))


def test_keys_do_what_the_list_says(main_window, qtbot):
    from app.widgets.shortcuts import all_shortcuts

    w = main_window
    acts = {e.text: e.source for e in all_shortcuts(w) if isinstance(e.source, QAction)}
    acts["Keyboard shortcuts"].trigger()
    from app.widgets.shortcuts import ShortcutsDialog

    dlg = [c for c in w.findChildren(ShortcutsDialog) if c.isVisible()]
    assert dlg, "F1 opens the list"
    dlg[0].close()
    w.studies_dock.hide()
    acts["Find a study"].trigger()
    assert w.studies_dock.isVisible()
    acts["Show results"].trigger()
    assert not w.results_dock.isVisible()
    acts["Show results"].trigger()
    assert w.results_dock.isVisible()


def test_xray_keys_toggle_the_heatmap_and_layout(main_window, qtbot, tmp_path):
    from inference.xray.demo import make_dicom
    from inference.xray.reader import read

    w = main_window
    st = read(make_dicom(tmp_path))
    w.show_study(st, w.ctx.store.add_study(st))
    v = w.current_viewer()
    keys = {a.text(): a for a in v.actions()}
    on = v.heat_btn.isChecked()
    keys["Heatmap overlay on / off"].trigger()
    assert v.heat_btn.isChecked() != on
    keys["Layout: single image → side by side → three panels"].trigger()
    assert v.mode.currentIndex() == 1
    keys["Clinical note on / off"].trigger()
    assert v.note_box.isVisible()
    assert all(a.shortcutContext() == Qt.WidgetWithChildrenShortcut for a in v.actions())
