"""Weights registry: manifest, states, sha256 checks, atomic install, derived artefacts."""
from __future__ import annotations

import hashlib
import json

import pytest

from inference.registry import CHECKING, DEMO, NOT_INSTALLED, READY, REFUSED, Registry, WeightsError, load_manifest

OFFICIAL = b"official weights bytes" * 100
OFFICIAL_SHA = hashlib.sha256(OFFICIAL).hexdigest()


@pytest.fixture
def reg(tmp_path):
    m = tmp_path / "manifest.toml"
    m.write_text(f"""
[models.toy]
title = "Toy model"
modality = "ecg"
framework = "onnx"
file = "toy.onnx"
sha256 = "{OFFICIAL_SHA}"
source = "https://example.org/toy"
licence = "MIT"
[models.toy.inputs]
x = {{ shape = [1, 3], dtype = "float32" }}

[models.nohash]
title = "No-hash model"
modality = "ecg"
framework = "torch"
file = "nohash.pt"
source = "https://example.org/nohash"
licence = "MIT"
""")
    return Registry(m, tmp_path / "weights")


def test_project_manifest_parses():
    entries = load_manifest()
    for e in entries.values():
        assert e.framework in ("onnx", "torch", "keras", "numpy"), e.id  # numpy: needs no weights
        assert e.modality in ("ecg", "pcg", "echo", "xray", "endo"), e.id
        assert (e.file or e.framework == "numpy") and e.source and e.licence, e.id
        if e.sha256:
            assert len(e.sha256) == 64, e.id


def test_missing_is_not_installed_with_instructions(reg):
    st = reg.state("toy")
    assert st.status == NOT_INSTALLED and not st.usable
    assert "lightbox weights install" in st.message and "toy.onnx" in st.message
    with pytest.raises(WeightsError, match="toy.onnx"):
        reg.require("toy")


def test_official_file_installs_by_hash(reg, tmp_path):
    src = tmp_path / "download" / "whatever-name.onnx"
    src.parent.mkdir()
    src.write_bytes(OFFICIAL)
    st = reg.install(src)
    assert st.status == READY and st.clinical and st.sha256 == OFFICIAL_SHA
    assert (reg.weights_dir / "toy.onnx").read_bytes() == OFFICIAL


def test_unknown_file_refused_without_explicit_unofficial(reg, tmp_path):
    src = tmp_path / "random.onnx"
    src.write_bytes(b"random weights")
    with pytest.raises(WeightsError, match="matches no official file"):
        reg.install(src)
    with pytest.raises(WeightsError, match="--unofficial"):
        reg.install(src, model_id="toy")
    assert reg.state("toy").status == NOT_INSTALLED
    st = reg.install(src, model_id="toy", unofficial=True)
    assert st.status == DEMO and st.usable and not st.clinical


def test_tampered_file_is_refused(reg, tmp_path):
    src = tmp_path / "random.onnx"
    src.write_bytes(b"random weights")
    reg.install(src, model_id="toy", unofficial=True)
    (reg.weights_dir / "toy.onnx").write_bytes(b"random weights, edited")
    st = reg.state("toy")
    assert st.status == REFUSED and not st.usable
    with pytest.raises(WeightsError, match="will not be loaded"):
        reg.require("toy")


def test_sha_mismatch_of_a_copied_file_refused(reg):
    # a file dropped into the weights folder by hand (or half-copied) is never trusted
    (reg.weights_dir / "toy.onnx").write_bytes(OFFICIAL[:-10])
    assert reg.state("toy").status == REFUSED


def test_model_without_official_hash_is_always_demo(reg, tmp_path):
    src = tmp_path / "nohash.pt"
    src.write_bytes(b"abc")
    with pytest.raises(WeightsError):
        reg.install(src, model_id="nohash")
    assert reg.install(src, model_id="nohash", unofficial=True).status == DEMO


def test_reinstall_official_over_demo_clears_local_record(reg, tmp_path):
    src = tmp_path / "random.onnx"
    src.write_bytes(b"random weights")
    reg.install(src, model_id="toy", unofficial=True)
    off = tmp_path / "off.onnx"
    off.write_bytes(OFFICIAL)
    assert reg.install(off).status == READY
    assert "toy" not in json.loads((reg.weights_dir / "local_installs.json").read_text())


def test_derived_path_tracks_weights_hash(reg, tmp_path):
    src = tmp_path / "random.onnx"
    src.write_bytes(b"random weights")
    st = reg.install(src, model_id="toy", unofficial=True)
    assert st.sha256[:16] in reg.derived_path("toy", ".onnx").name


def test_interrupted_install_leaves_no_file(reg, tmp_path, monkeypatch):
    import shutil

    src = tmp_path / "off.onnx"
    src.write_bytes(OFFICIAL)

    def half_copy(a, b):
        with open(b, "wb") as f:
            f.write(OFFICIAL[:100])
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", half_copy)
    with pytest.raises(OSError):
        reg.install(src)
    assert reg.state("toy").status == NOT_INSTALLED
    assert list(reg.weights_dir.glob("*.part*")) == []


def test_cli_weights_list_and_install(tmp_path, capsys):
    from app.cli import main

    assert main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "weights folder" in out
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"junk")
    assert main(["weights", "install", str(junk)]) == 1
    assert "matches no official file" in capsys.readouterr().err


def test_cached_only_never_hashes_and_says_checking(reg, monkeypatch):
    import inference.registry as registry_mod

    (reg.weights_dir / "toy.onnx").write_bytes(OFFICIAL)  # put there by hand: never hashed yet
    hashed = []
    real = registry_mod.sha256_file
    monkeypatch.setattr(registry_mod, "sha256_file", lambda p: hashed.append(p) or real(p))
    st = reg.state("toy", cached_only=True)
    assert st.status == CHECKING and not st.usable and st.may_start and hashed == []
    assert reg.state("toy").status == READY and len(hashed) == 1
    assert reg.state("toy", cached_only=True).status == READY and len(hashed) == 1
    # an edit changes size/mtime: the cached answer no longer applies
    (reg.weights_dir / "toy.onnx").write_bytes(OFFICIAL + b"!")
    assert reg.state("toy", cached_only=True).status == CHECKING
    assert reg.state("toy").status == REFUSED and not reg.state("toy").may_start
