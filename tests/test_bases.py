"""``torchbearer.bases``: the Callback and Metric base classes, ``get_metric``, ``cite`` and the grad switches."""

import warnings

import pytest
import torch

import torchbearer
from torchbearer.bases import HOOKS, Callback, Metric, cite, enable_grad, get_metric, no_grad

BIBTEX = "@article{key,\n  title={A Title}\n}"


def test_a_bare_callback_does_nothing_at_every_hook_and_saves_nothing():
    callback = Callback()
    state = {torchbearer.EPOCH: 0}
    assert all(getattr(callback, hook)(state) is None for hook in HOOKS)
    assert state == {torchbearer.EPOCH: 0}
    assert callback.state_dict() == {} and callback.load_state_dict({"x": 1}) is callback


def test_hooks_are_listed_once_in_the_order_a_run_first_reaches_them():
    assert len(set(HOOKS)) == len(HOOKS)
    assert HOOKS[:2] == ("on_init", "on_start") and HOOKS[-2:] == ("on_checkpoint", "on_end")
    assert HOOKS.index("on_step_training") < HOOKS.index("on_start_validation") < HOOKS.index("on_end_epoch")


def test_a_bare_metric_is_named_produces_nothing_and_saves_nothing():
    metric = Metric("my_metric")
    assert metric.name == str(metric) == "my_metric"
    assert metric.process({}) is None and metric.process_final({}) is None
    assert metric.reset({}) is None and metric.train() is None and metric.eval(torchbearer.TEST_DATA) is None
    assert metric.state_dict() == {} and metric.load_state_dict({}) is metric


def test_get_metric_returns_the_monitored_value():
    state = {torchbearer.METRICS: {"val_loss": 0.5}}
    assert get_metric("EarlyStopping", state, "val_loss") == 0.5


def test_get_metric_warns_naming_the_available_metrics_when_one_is_missing():
    state = {torchbearer.METRICS: {"loss": 1.0, "acc": 0.5}}
    with pytest.warns(UserWarning, match=r"Checkpointer: Failed to retrieve key `val_acc`.*\['acc', 'loss'\]"):
        assert get_metric("Checkpointer", state, "val_acc") is None


def test_get_metric_skips_validation_metrics_silently_while_evaluating_test_data():
    state = {torchbearer.METRICS: {"test_loss": 1.0}, torchbearer.DATA: torchbearer.TEST_DATA}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_metric("EarlyStopping", state, "val_loss") is None


def test_cite_puts_the_entry_before_the_args_section():
    @cite(BIBTEX)
    def method(x):
        """Does X.

        Args:
            x: The input.
        """

    doc = method.__doc__
    assert doc.index("@article{key,") < doc.index("Args:")
    assert "            title={A Title}" in doc  # indented as the section, inside a literal block


def test_cite_appends_the_entry_to_a_docstring_without_sections_and_to_classes():
    @cite(BIBTEX)
    class Method:
        """Does X."""

    assert Method.__doc__.startswith("Does X.") and Method.__doc__.rstrip().endswith("}")
    assert "::" in Method.__doc__


def test_no_grad_and_enable_grad_are_torch_s():
    weight = torch.ones(1, requires_grad=True)
    with no_grad():
        assert not (weight * 2).requires_grad
        with enable_grad():
            assert (weight * 2).requires_grad
