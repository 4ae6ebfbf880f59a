"""TensorFlow and PyTorch in one process (the ECG2AF Keras path beside the torch models)."""
import subprocess
import sys

from tests.conftest import ROOT


def test_tensorflow_then_torchvision_does_not_crash():
    code = ("from inference.frameworks import import_tensorflow; import_tensorflow(); "
            "import torchvision.models; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-500:]}"
    assert out.stdout.strip().endswith("ok")
