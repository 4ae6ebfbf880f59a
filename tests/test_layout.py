"""The house: one package per modality, one table on each side of the Qt line."""
from pathlib import Path

from inference import modalities

ROOT = Path(__file__).resolve().parents[1]


def test_every_modality_has_its_parts_in_its_own_package():
    for m in modalities.TABLE:
        for part in ("reader", "pipeline", "demo", "bench"):
            name = getattr(m, part)
            assert name.startswith(f"inference.{m.key}."), name
            assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name
        reader = m.module("reader")
        assert reader.EXTENSIONS and callable(reader.sniff) and callable(reader.read)
        pipe = m.module("pipeline")
        assert pipe.MODELS and callable(pipe.analyse)


def test_app_table_matches_and_names_real_viewers_and_reports():
    from app import modalities as app_modalities

    assert [r.key for r in app_modalities.TABLE] == list(modalities.KEYS)
    for r in app_modalities.TABLE:
        mod, cls = r.viewer.split(":")
        assert mod == f"app.{r.key}.viewer"
        assert (ROOT / "app" / r.key / "viewer.py").is_file() and (ROOT / "app" / r.key / "report.py").is_file()
        assert f"class {cls}(" in (ROOT / "app" / r.key / "viewer.py").read_text()


def test_no_layer_folders_left_and_no_import_strings_built():
    for gone in ("inference/readers", "inference/pipelines", "inference/models", "inference/benchmarks",
                 "inference/demo", "app/viewers"):
        assert not (ROOT / gone).exists(), gone
    for py in list((ROOT / "inference").rglob("*.py")) + list((ROOT / "app").rglob("*.py")):
        src = py.read_text()
        assert 'import_module(f"' not in src, f"{py}: name modules in inference/modalities.py or app/modalities.py"


def test_viewers_stay_readable():
    for py in (ROOT / "app").rglob("*.py"):
        n = len(py.read_text().splitlines())
        assert n <= 650, f"{py.relative_to(ROOT)} has {n} lines: split it into cohesive parts"


def test_every_torch_load_is_weights_only():
    """A checkpoint must not run code: every torch.load in the product passes weights_only=True."""
    import re

    call = re.compile(r"torch\.load\((?:[^()]|\([^()]*\))*\)", re.S)
    for py in list((ROOT / "inference").rglob("*.py")) + list((ROOT / "app").rglob("*.py")):
        for m in call.finditer(py.read_text()):
            assert "weights_only=True" in m.group(0), f"{py.relative_to(ROOT)}: {m.group(0)}"
