"""Chest X-ray: reader (DICOM variants, PNG/JPEG, bad input), model + reference checkpoint layout,
pipeline (fused score, Grad-CAM heatmap), ONNX agreement, symptom entities with negation."""
from __future__ import annotations

import copy
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.xray_fixtures import demo_path, weight_files  # noqa: F401  (fixtures)

from inference.xray import reader
from inference.study import ReadError


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def installed(weight_files):
    from inference.registry import Registry

    reg = Registry()
    reg.install(weight_files[0], "vgg16-imagenet", unofficial=True)
    reg.install(weight_files[1], "xray-anomaly", unofficial=True)
    return reg


def _variant(demo_path, tmp_path, name, **changes):
    import pydicom

    ds = pydicom.dcmread(str(demo_path))
    for k, v in changes.items():
        if v is None:
            if k in ds:
                delattr(ds, k)
        else:
            setattr(ds, k, v)
    p = tmp_path / name
    ds.save_as(str(p))
    return p, ds


# -- reader ---------------------------------------------------------------------------------------------
def test_demo_dicom_is_small_cr_with_spacing(demo_path):
    assert demo_path.stat().st_size < 1_000_000
    st = reader.read(demo_path)
    md = st.metadata
    assert st.modality == "xray" and md["dicom_modality"] == "CR" and md["photometric"] == "MONOCHROME2"
    assert md["bits_stored"] == 12 and md["pixel_spacing_mm"] == [0.7, 0.7]
    assert md["spacing_source"] == "Pixel Spacing"
    assert md["window"] == [2000.0, 3600.0] and "Window Center/Width" in md["voi_source"]
    assert st.data["display"].dtype == np.uint8 and st.data["display"].shape == (512, 512)
    assert st.data["image"].dtype == np.float32
    # lungs dark, mediastinum bright in the default display
    d = st.data["display"]
    assert d[240:300, 150:200].mean() < d[240:300, 245:265].mean()


def test_sniff_and_detect(demo_path):
    from inference.detect import detect_modality

    head = demo_path.read_bytes()[:4096]
    assert reader.sniff(demo_path, head) > 0.9
    assert detect_modality(demo_path) == "xray"


def test_sniff_rejects_ultrasound_dicom():
    from pydicom.data import get_testdata_file

    p = Path(get_testdata_file("examples_rgb_color.dcm"))
    assert reader.sniff(p, p.read_bytes()[:4096]) == 0.0


def test_monochrome1_is_inverted(demo_path, tmp_path):
    mono2 = reader.read(demo_path)
    p, _ = _variant(demo_path, tmp_path, "m1.dcm", PhotometricInterpretation="MONOCHROME1")
    mono1 = reader.read(p)
    assert mono1.metadata["invert"] is True
    diff = mono1.data["display"].astype(int) + mono2.data["display"].astype(int) - 255
    assert np.abs(diff).max() <= 1
    # modality values are not inverted: the viewer shows the stored value under the cursor
    assert np.array_equal(mono1.data["image"], mono2.data["image"])


def test_rescale_slope_intercept_16bit_signed(demo_path, tmp_path):
    import pydicom

    ds = pydicom.dcmread(str(demo_path))
    raw = ds.pixel_array.astype(np.int32) - 2048
    ds.PixelRepresentation = 1
    ds.BitsStored, ds.HighBit = 16, 15
    ds.PixelData = raw.astype(np.int16).tobytes()
    ds.RescaleSlope, ds.RescaleIntercept = "0.5", "1024"
    ds.WindowCenter, ds.WindowWidth = "1024", "1800"
    p = tmp_path / "s16.dcm"
    ds.save_as(str(p))
    st = reader.read(p)
    assert st.metadata["bits_stored"] == 16 and st.metadata["rescale_slope"] == 0.5
    np.testing.assert_allclose(st.data["image"], raw * 0.5 + 1024, atol=1e-3)


def test_voi_lut_sequence_is_applied(demo_path, tmp_path):
    import pydicom
    from pydicom.dataset import Dataset

    ds = pydicom.dcmread(str(demo_path))
    item = Dataset()
    # a LUT that maps 0..4095 to 4095..0 (declared 16 bits, filled 12): an inverting VOI LUT
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [int(v) for v in np.linspace(4095, 0, 4096).round()])  # LUT Data
    ds.VOILUTSequence = pydicom.Sequence([item])
    del ds.WindowCenter
    del ds.WindowWidth
    p = tmp_path / "voi.dcm"
    ds.save_as(str(p))
    st = reader.read(p)
    assert st.metadata["voi_source"] == "VOI LUT Sequence"
    plain = reader.read(demo_path).data["display"]
    # inverted LUT: lungs now brighter than the mediastinum
    d = st.data["display"]
    assert d[240:300, 150:200].mean() > d[240:300, 245:265].mean()
    assert np.corrcoef(d.ravel(), plain.ravel())[0, 1] < 0


def test_no_voi_uses_percentile_window_and_imager_spacing(demo_path, tmp_path):
    p, _ = _variant(demo_path, tmp_path, "nowin.dcm", WindowCenter=None, WindowWidth=None,
                    WindowCenterWidthExplanation=None, PixelSpacing=None)
    st = reader.read(p)
    assert "automatic" in st.metadata["voi_source"]
    assert st.metadata["spacing_source"].startswith("Imager Pixel Spacing")
    assert st.metadata["pixel_spacing_mm"] == [0.7, 0.7]


def test_8bit_dicom(demo_path, tmp_path):
    import pydicom

    ds = pydicom.dcmread(str(demo_path))
    arr = (ds.pixel_array // 16).astype(np.uint8)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = arr.tobytes()
    ds.WindowCenter, ds.WindowWidth = "128", "256"
    p = tmp_path / "b8.dcm"
    ds.save_as(str(p))
    st = reader.read(p)
    assert st.metadata["bits_stored"] == 8
    assert np.array_equal(st.data["image"], arr.astype(np.float32))


@pytest.mark.parametrize("name,syntax", [("JPEGLSNearLossless_16.dcm", "JPEG-LS"),
                                         ("JPEG-lossy.dcm", "JPEG Extended")])
def test_undecodable_compressed_syntax_is_named(name, syntax):
    from pydicom.data import get_testdata_file

    p = get_testdata_file(name, download=False) if "download" in get_testdata_file.__code__.co_varnames \
        else get_testdata_file(name)
    if p is None:
        pytest.skip(f"{name} not shipped with this pydicom")
    try:
        reader.read(p)
    except ReadError as e:
        msg = str(e)
        assert syntax in msg and "cannot decode" in msg and "install" in msg
    else:  # a decoder plugin is installed here: then it must decode
        pass


def test_rle_and_jpeg2000_decode_when_a_plugin_exists():
    from pydicom.data import get_testdata_file

    st = reader.read(get_testdata_file("MR_small_RLE.dcm"))  # RLE: pydicom's own decoder
    assert st.data["image"].shape == (64, 64)
    assert any("not a projection radiograph" in n for n in st.notes)
    from PIL import features

    p = get_testdata_file("JPEG2000.dcm")
    if features.check("jpg_2000"):
        st = reader.read(p)
        assert st.data["image"].ndim == 2 and st.metadata["transfer_syntax"].startswith("JPEG 2000")
    else:
        with pytest.raises(ReadError, match="JPEG 2000"):
            reader.read(p)


@pytest.mark.parametrize("name,problem", [("MR_truncated.dcm", "damaged or truncated"),
                                          ("no_meta.dcm", "not a DICOM file")])
def test_bad_dicom_is_read_error(name, problem):
    from pydicom.data import get_testdata_file

    with pytest.raises(ReadError, match=problem):
        reader.read(get_testdata_file(name))


def test_absurd_dimensions_refused_before_decoding(demo_path, tmp_path):
    p, _ = _variant(demo_path, tmp_path, "huge.dcm", Rows=60000, Columns=60000)
    with pytest.raises(ReadError, match="refused before decoding"):
        reader.read(p)


def _png_with_header_size(src: Path, dst: Path, w: int, h: int) -> None:
    b = bytearray(src.read_bytes())
    assert b[12:16] == b"IHDR"
    b[16:20] = struct.pack(">I", w)
    b[20:24] = struct.pack(">I", h)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    dst.write_bytes(bytes(b))


def test_png_jpeg_8_and_16_bit(tmp_path):
    import cv2

    g = (np.add.outer(np.arange(300), np.arange(200)) % 256).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), g)
    st = reader.read(tmp_path / "a.png")
    assert st.metadata["bits_stored"] == 8 and np.array_equal(st.data["display"], g)
    g16 = (g.astype(np.uint16) * 200)
    cv2.imwrite(str(tmp_path / "b.png"), g16)
    st = reader.read(tmp_path / "b.png")
    assert st.metadata["bits_stored"] == 16 and st.data["image"].max() == g16.max()
    assert st.data["display"].dtype == np.uint8
    rgb = np.stack([g, g, g], axis=2)
    cv2.imwrite(str(tmp_path / "c.jpg"), rgb)
    st = reader.read(tmp_path / "c.jpg")
    assert st.data["display"].shape == (300, 200)
    assert reader.sniff(tmp_path / "c.jpg", b"") > 0.5


def test_bad_rasters(tmp_path):
    import cv2

    (tmp_path / "x.png").write_bytes(b"not a png at all")
    with pytest.raises(ReadError, match="not a PNG or JPEG"):
        reader.read(tmp_path / "x.png")
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((10, 10), np.uint8))
    _png_with_header_size(tmp_path / "ok.png", tmp_path / "huge.png", 100_000, 100_000)
    with pytest.raises(ReadError, match="refused before decoding"):
        reader.read(tmp_path / "huge.png")
    full = (tmp_path / "ok.png").read_bytes()
    cv2.imwrite(str(tmp_path / "big.png"), (np.random.default_rng(0).random((200, 200)) * 255).astype(np.uint8))
    data = (tmp_path / "big.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 3])
    with pytest.raises(ReadError):
        reader.read(tmp_path / "trunc.png")
    assert full


# -- model and checkpoints ---------------------------------------------------------------------------------
def test_architecture_matches_reference_parameter_counts():
    from inference.xray.medsight import XrayAnomalyModel, count_parameters

    m = XrayAnomalyModel()
    assert count_parameters(m.vae) == 1_318_656
    assert count_parameters(m.vit) == 1_209_729
    assert count_parameters(m.vae) + count_parameters(m.vit) == 2_528_385  # reference: trainable params
    assert not any(p.requires_grad for p in m.features.parameters())
    keys = set(m.vit.state_dict())
    for k in ("cls_token", "pos_embed", "patch_embed.weight", "blocks.5.attn.qkv.weight", "blocks.0.ffn.3.bias",
              "norm.weight", "head.0.weight", "head.3.bias"):
        assert k in keys
    assert "blocks.0.attn.qkv.bias" not in keys
    assert m.vit.pos_embed.shape == (1, 9, 128)
    vk = set(m.vae.state_dict())
    assert {"encoder.fc_mu.weight", "encoder.fc_var.weight", "encoder.net.8.weight", "decoder.net.12.weight"} <= vk


def test_reference_checkpoint_roundtrip(weight_files):
    import torch

    from inference.xray.medsight import build_model, read_anomaly_checkpoint

    ck = torch.load(str(weight_files[1]), weights_only=True)
    assert set(ck) >= {"vae_state", "vit_state", "config", "recon_mean", "recon_std", "kl_mean", "kl_std",
                       "threshold"}
    assert ck["config"]["vae_hidden"] == [512, 384, 256] and ck["threshold"] == pytest.approx(0.348)
    _, _, cfg, cal = read_anomaly_checkpoint(weight_files[1])
    m = build_model(*weight_files)
    assert m.calibration == cal and float(m.recon_std) == pytest.approx(cal.recon_std)
    x = torch.zeros(1, 3, 224, 224)
    with torch.no_grad():
        fused, recon, kl, vit = m(x)
    w = (0.4 / (1 + math.exp(-(float(recon) - cal.recon_mean) / cal.recon_std))
         + 0.2 / (1 + math.exp(-(float(kl) - cal.kl_mean) / cal.kl_std)) + 0.4 * float(vit))
    assert float(fused) == pytest.approx(w, rel=1e-5)


def test_checkpoint_problems_are_clear(tmp_path, weight_files):
    import torch

    from inference.xray.medsight import CheckpointError, build_model, load_vgg16_features

    ck = torch.load(str(weight_files[1]), weights_only=True)
    bad = dict(ck)
    for k in ("recon_mean", "recon_std"):
        bad.pop(k)
    torch.save(bad, tmp_path / "nocal.pth")
    with pytest.raises(CheckpointError, match="calibration"):
        build_model(weight_files[0], tmp_path / "nocal.pth")
    wrong = copy.deepcopy(ck)
    wrong["vae_state"]["encoder.fc_mu.weight"] = torch.zeros(3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="reference architecture"):
        build_model(weight_files[0], tmp_path / "wrong.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "vgg_nocls.pth")
    with pytest.raises(CheckpointError, match="classifier"):
        load_vgg16_features(tmp_path / "vgg_nocls.pth")

    import datetime

    # any pickled object outside torch's allow-list is refused by weights_only=True
    torch.save({"vae_state": datetime.date(2020, 1, 1)}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only"):
        build_model(weight_files[0], tmp_path / "evil.pth")


# -- pipeline ------------------------------------------------------------------------------------------------
def test_not_installed_says_how(demo_path):
    from inference.pipeline import analyse
    from inference.registry import Registry, WeightsError

    st = reader.read(demo_path)
    with pytest.raises(WeightsError, match="install"):
        analyse(st, "xray-anomaly", Registry())


def test_backbone_missing_is_named(demo_path, weight_files):
    from inference.pipeline import analyse
    from inference.registry import Registry, WeightsError

    reg = Registry()
    reg.install(weight_files[1], "xray-anomaly", unofficial=True)
    with pytest.raises(WeightsError, match="VGG16"):
        analyse(reader.read(demo_path), "xray-anomaly", reg)


def test_analyse_demo_outputs_and_heatmap(demo_path, installed):
    from inference.pipeline import analyse
    from inference.xray.pipeline import heatmap_from_result, risk_band

    st = reader.read(demo_path)
    r = analyse(st, "xray-anomaly", installed)
    o = r.outputs
    assert r.clinical is False and r.runtime == "torch"  # unofficial weights: NOT A CLINICAL RESULT
    assert 0.0 <= o["anomaly_score"] <= 1.0 and o["threshold"] == pytest.approx(0.348)
    fused = 0.4 * o["recon_component"] + 0.2 * o["kl_component"] + 0.4 * o["vit_score"]
    assert o["anomaly_score"] == pytest.approx(fused, rel=1e-4, abs=1e-6)
    assert o["flagged"] == (o["anomaly_score"] > 0.348)  # the reference: score > threshold
    assert o["risk_band"] == risk_band(o["anomaly_score"])
    heat = r.arrays["heatmap"]
    assert heat.shape == st.data["display"].shape and heat.dtype == np.float32
    assert heat.min() >= 0.0 and heat.max() <= 1.0
    grid = np.asarray(o["_gradcam_grid"])
    assert grid.shape == (14, 14)
    # a stored result (no arrays) rebuilds the same heatmap from its grid
    from inference.results import Result

    stored = Result(**{**r.to_row(), "arrays": {}})
    again = heatmap_from_result(stored, heat.shape)
    assert np.abs(again - heat).max() < 0.01


def test_risk_bands():
    from inference.xray.pipeline import risk_band

    assert risk_band(0.1) == "low" and risk_band(0.348) == "intermediate" and risk_band(0.69) == "intermediate"
    assert risk_band(0.7) == "high"


def test_gradcam_follows_the_score():
    """Grad-CAM is spatially grounded: on an input that is black except for one bright patch (lower
    left), torchvision's VGG16 (zero conv biases) has conv5 activations only near the patch, so the
    map must be zero far from it and peak close to it."""
    import torch

    from inference.xray.medsight import XrayAnomalyModel, grad_cam

    torch.manual_seed(0)
    m = XrayAnomalyModel().eval()
    x = torch.zeros(1, 3, 224, 224)
    x[:, :, 150:200, 30:80] = 2.0  # a bright patch, lower left
    cam, outs = grad_cam(m, x)
    assert cam.shape == (14, 14) and (cam >= 0).all()
    assert math.isfinite(outs["fused"])
    assert cam.max() > 0
    assert cam[:6].max() == 0 and cam[:, 12:].max() == 0  # far from the patch: nothing
    r, c = np.unravel_index(int(cam.argmax()), cam.shape)
    assert r >= 8 and c <= 6  # the patch covers grid rows 9-12, cols 2-5


def test_onnx_export_agrees_with_torch(installed):
    import onnxruntime as ort
    import torch

    from inference.xray.pipeline import export_onnx, load_model

    path = export_onnx(installed, "xray-anomaly")
    assert path.exists() and "xray-anomaly-" in path.name
    model, _, _ = load_model(installed)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 224, 224, generator=g)
    with torch.no_grad():
        ref = [t.numpy() for t in model.to("cpu")(x)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"image": x.numpy()})
    for a, b in zip(ref, outs):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- entities --------------------------------------------------------------------------------------------------
def _status(text):
    from inference.xray.entities import extract

    return {e.text.lower(): (e.category, e.status) for e in extract(text)}


@pytest.mark.parametrize("text,expect", [
    ("No fever.", {"fever": ("symptom", "negated")}),
    ("Patient denies cough.", {"cough": ("symptom", "negated")}),
    ("No fever, chills or cough.", {"fever": ("symptom", "negated"), "chills": ("symptom", "negated"),
                                   "cough": ("symptom", "negated")}),
    ("Denies cough but has fever and chest pain.", {"cough": ("symptom", "negated"),
                                                   "fever": ("symptom", "present"),
                                                   "chest pain": ("symptom", "present")}),
    ("Pneumonia was ruled out.", {"pneumonia": ("disease", "negated")}),
    ("No change in dyspnea.", {"dyspnea": ("symptom", "present")}),
    ("Possible tuberculosis.", {"tuberculosis": ("disease", "uncertain")}),
    ("History of asthma; mother has TB.", {"asthma": ("disease", "historical"), "tb": ("disease", "family")}),
    ("Fever for 3 days. No cough.", {"fever": ("symptom", "present"), "cough": ("symptom", "negated")}),
    ("Started on amoxicillin for the right lower lobe infiltrate.",
     {"amoxicillin": ("medication", "present"), "right lower lobe": ("anatomy", "present"),
      "infiltrate": ("disease", "present")}),
])
def test_entities_and_negation(text, expect):
    got = _status(text)
    for k, v in expect.items():
        assert got.get(k) == v, (text, got)


def test_entity_offsets_and_highlight():
    from inference.xray.entities import extract, highlight_html, summary

    text = "Shortness of breath, no fever.\nOn salbutamol."
    ents = extract(text)
    for e in ents:
        assert text[e.start:e.end] == e.text
    s = summary(ents)
    assert s["symptom"]["present"] == ["dyspnea"] and s["symptom"]["negated"] == ["fever"]
    h = highlight_html(text, ents, for_pdf=True)
    assert "<strike>fever</strike>" in h and "salbutamol" in h and "<br/>" in h


# -- robustness: damaged files only ever give ReadError ----------------------------------------------------
def _read_or_readerror(p):
    try:
        st = reader.read(p)
    except ReadError:
        return None
    assert st.data["display"].dtype == np.uint8
    return st


def test_truncated_and_corrupted_demo_never_crashes(demo_path, tmp_path):
    data = demo_path.read_bytes()
    rng = np.random.default_rng(0)
    cuts = [0, 10, 128, 132, 200, 400, 700, 1000, len(data) // 2, len(data) - 1]
    for i, n in enumerate(cuts):
        p = tmp_path / f"cut{i}.dcm"
        p.write_bytes(data[:n])
        _read_or_readerror(p)
    for i in range(12):  # random byte damage in the header region
        b = bytearray(data)
        for pos in rng.integers(132, 1200, size=8):
            b[pos] = int(rng.integers(0, 256))
        p = tmp_path / f"flip{i}.dcm"
        p.write_bytes(bytes(b))
        _read_or_readerror(p)


def test_random_bytes_with_image_signatures(tmp_path):
    rng = np.random.default_rng(1)
    heads = {".dcm": b"\0" * 128 + b"DICM", ".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff\xe0"}
    for ext, head in heads.items():
        for i in range(6):
            p = tmp_path / f"r{i}{ext}"
            p.write_bytes(head + rng.integers(0, 256, size=int(rng.integers(1, 4000)), dtype=np.uint8).tobytes())
            _read_or_readerror(p)


def test_demo_weights_command_writes_to_the_data_folder_not_the_working_folder(tmp_path, monkeypatch):
    from inference import paths
    from inference.xray.synthetic_weights import HEADS_FILE, VGG_FILE, main

    monkeypatch.chdir(tmp_path)
    assert main([]) == 0
    assert (paths.data_home() / "demo-weights" / VGG_FILE).exists()
    assert (paths.data_home() / "demo-weights" / HEADS_FILE).exists()
    assert list(tmp_path.iterdir()) == []  # nothing lands in a checkout the user may commit
