"""Random number generator states as plain data, so a resumed run draws the same numbers.

Covers Python's ``random``, NumPy's global generator, torch's CPU generator and every CUDA
device's generator. The result holds only lists, ints, floats and tensors (loads with
``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def get_state() -> dict[str, Any]:
    """Capture every generator's state."""
    version, internal, gauss = random.getstate()
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_state(state: dict[str, Any]) -> None:
    """Restore the generators captured by :func:`get_state` (missing parts are left as they are)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        kind, keys, position, has_gauss, cached_gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached_gauss))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
