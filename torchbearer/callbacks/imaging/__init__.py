"""Imaging callbacks: images from the state, grids of them, and class appearance models."""

from torchbearer.callbacks.imaging.imaging import CachingImagingCallback, FromState, ImagingCallback, MakeGrid
from torchbearer.callbacks.imaging.inside_cnns import RANDOM, ClassAppearanceModel

__all__ = [
    "ImagingCallback",
    "FromState",
    "CachingImagingCallback",
    "MakeGrid",
    "ClassAppearanceModel",
    "RANDOM",
]
