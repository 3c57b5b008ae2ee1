import pytest

from torchbearer.metrics import metrics as metrics_module


@pytest.fixture
def restore_registry():
    """Undo registrations a test makes in the process-global default registry."""
    saved = dict(metrics_module._DEFAULTS)
    yield
    metrics_module._DEFAULTS.clear()
    metrics_module._DEFAULTS.update(saved)
