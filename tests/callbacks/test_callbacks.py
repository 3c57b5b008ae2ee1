"""``torchbearer.callbacks.callbacks``: ``CallbackList`` calls its callbacks in order, only at the hooks they
override, and saves and restores their states."""

import pytest
import torch

import torchbearer
from torchbearer import Callback
from torchbearer.callbacks import CallbackList, EarlyStopping
from torchbearer.callbacks.callbacks import overrides
from torchbearer.errors import ConfigurationTypeError


class Recorder(Callback):
    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    def on_step_training(self, state):
        self.calls.append((self.name, "on_step_training"))

    def on_end_epoch(self, state):
        self.calls.append((self.name, "on_end_epoch"))


class Counter(Callback):
    def __init__(self, count: int = 0) -> None:
        self.count = count

    def on_end_epoch(self, state):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state_dict):
        self.count = state_dict["count"]
        return self


def test_hooks_reach_every_callback_in_list_order_with_nested_lists_flattened():
    calls = []
    first, second, third = (Recorder(name, calls) for name in ("first", "second", "third"))
    callbacks = CallbackList([first, CallbackList([second, third])])
    callbacks.on_step_training({})
    callbacks.on_end_epoch({})
    assert calls == [
        (name, hook) for hook in ("on_step_training", "on_end_epoch") for name in ("first", "second", "third")
    ]
    assert list(callbacks) == [first, second, third] and len(callbacks) == 3


def test_hooks_a_callback_does_not_override_are_never_called(monkeypatch):
    base_calls = []
    monkeypatch.setattr(Callback, "on_forward", lambda self, state: base_calls.append(self))
    calls = []
    recorder = Recorder("only", calls)
    callbacks = CallbackList([recorder])
    callbacks.on_forward({})
    callbacks.on_step_training({})
    assert base_calls == [] and calls == [("only", "on_step_training")]
    assert not overrides(recorder, "on_forward") and overrides(recorder, "on_step_training")


def test_a_hook_bound_on_the_instance_is_called():
    calls = []
    callback = Callback()
    callback.on_sample = lambda state: calls.append(state)
    CallbackList([callback]).on_sample({"batch": 1})
    assert calls == [{"batch": 1}] and overrides(callback, "on_sample")


def test_callbacks_appended_later_take_part_in_hooks_already_called():
    calls = []
    callbacks = CallbackList([Recorder("first", calls)])
    callbacks.on_end_epoch({})
    callbacks.append([Recorder("later", calls)])
    callbacks.on_end_epoch({})
    assert calls == [("first", "on_end_epoch"), ("first", "on_end_epoch"), ("later", "on_end_epoch")]


def test_state_dict_restores_each_callback_s_state_and_holds_only_plain_types(tmp_path):
    saved = CallbackList([Counter(3), EarlyStopping(patience=2)])
    saved.on_end_epoch({torchbearer.METRICS: {"val_loss": 0.25}})
    path = tmp_path / "callbacks.pt"
    torch.save(saved.state_dict(), path)
    restored = CallbackList([Counter(), EarlyStopping(patience=2)])
    assert restored.load_state_dict(torch.load(path)) is restored
    counter, early_stopping = restored
    assert counter.count == 4 and early_stopping.best == 0.25


def test_loading_into_callbacks_of_other_classes_warns_and_leaves_them_alone():
    saved = CallbackList([Counter(5)]).state_dict()
    other = Recorder("other", [])
    with pytest.warns(UserWarning, match="Callback classes did not match"):
        CallbackList([other]).load_state_dict(saved)


def test_a_mismatch_names_both_lists_and_what_was_and_was_not_restored():
    saved = CallbackList([Counter(5), EarlyStopping(patience=2), Counter(7)]).state_dict()
    first, recorder, last = Counter(), Recorder("new", []), Counter()
    with pytest.warns(UserWarning) as caught:
        CallbackList([first, recorder, last]).load_state_dict(saved)
    assert [str(warning.message) for warning in caught] == [
        "Callback classes did not match, expected: ['Counter', 'EarlyStopping', 'Counter'], got: ['Counter', "
        "'Recorder', 'Counter']. Restored: #1 Counter, #3 Counter. Not restored (no saved state of its class, in "
        "order): #2 Recorder. Saved but not loaded: #2 EarlyStopping. Give the callbacks in the order they were "
        "saved in to restore them all"
    ]
    assert first.count == 5 and last.count == 7


def test_a_copy_is_a_new_list_of_the_same_callbacks():
    counter = Counter()
    callbacks = CallbackList([counter])
    copied = callbacks.copy()
    copied.append([Counter()])
    assert list(callbacks) == [counter] and len(copied) == 2


@pytest.mark.parametrize("entries", [Counter(), [Counter(), "not a callback"]])
def test_a_single_callback_or_a_non_callback_entry_is_refused(entries):
    with pytest.raises(ConfigurationTypeError):
        CallbackList(entries)


def test_a_trial_s_list_warns_when_a_pass_ends_with_a_non_finite_loss():
    callbacks = CallbackList([], warn_on_nan_loss=True)
    state = {torchbearer.EPOCH: 0, torchbearer.METRICS: {"loss": float("nan")}}
    callbacks.on_start(state)
    with pytest.warns(UserWarning, match="loss is not finite"):
        callbacks.on_end_training(state)
