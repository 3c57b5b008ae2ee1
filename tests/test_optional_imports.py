"""Importing torchbearer never imports an optional integration."""

import subprocess
import sys

OPTIONAL = [
    "tensorboard", "tensorboardX", "visdom", "matplotlib", "pycm", "torchvision", "livelossplot", "torchmetrics",
    "sklearn", "IPython", "PIL", "mkdocs", "mlflow", "optuna", "wandb", "torchinfo",
]  # fmt: skip


def test_import_torchbearer_loads_no_optional_package():
    code = f"import sys, torchbearer; print([m for m in {OPTIONAL!r} if m in sys.modules])"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
