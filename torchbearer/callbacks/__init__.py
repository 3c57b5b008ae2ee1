"""Callbacks: the built-in library and the decorator API for writing your own."""

from torchbearer.bases import Callback, get_metric
from torchbearer.callbacks.callbacks import CallbackList
