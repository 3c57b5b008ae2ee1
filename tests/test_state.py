import pickle
import warnings

import pytest
import torch

import torchbearer
from torchbearer.state import State, StateKey, state_key


def test_state_key_collisions_get_numbered_suffixes():
    first, second, third = state_key("collide_me"), state_key("collide_me"), state_key("collide_me")
    assert (str(first), str(second), str(third)) == ("collide_me", "collide_me_1", "collide_me_2")
    assert str(state_key("loss")).startswith("loss_")


def test_state_key_and_string_are_interchangeable_dict_keys():
    assert {torchbearer.MODEL: 1}["model"] == 1
    assert {"model": 2}[torchbearer.MODEL] == 2
    assert torchbearer.MODEL == "model" and hash(torchbearer.MODEL) == hash("model")
    assert repr(torchbearer.MODEL) == "model" and type(str(torchbearer.MODEL)) is str


def test_aliases_share_one_key():
    assert torchbearer.TARGET is torchbearer.Y_TRUE
    assert torchbearer.PREDICTION is torchbearer.Y_PRED
    assert torchbearer.INPUT is torchbearer.X
    assert str(torchbearer.BATCH) == "t" and str(torchbearer.DATA_TYPE) == "dtype"


def test_unpickled_key_keeps_its_text_without_registering_again():
    key = state_key("pickled_key")
    restored = pickle.loads(pickle.dumps(key))
    assert isinstance(restored, StateKey) and str(restored) == "pickled_key"
    assert torchbearer.state.__keys__.count("pickled_key") == 1


def test_state_key_is_a_metric_and_a_criterion():
    key = state_key("reported")
    state = {key: 5}
    assert key.process(state) == {"reported": 5}
    assert key.process_final(state) == {"reported": 5}
    assert key(state) == 5


def test_state_warns_on_plain_string_access_but_still_works():
    state = State()
    state[torchbearer.MODEL] = 1
    with pytest.warns(UserWarning, match="State was accessed with a string: model"):
        assert state["model"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert state[torchbearer.MODEL] == 1


def test_state_update_warns_for_string_keys_at_the_callers_line():
    state = State()
    with pytest.warns(UserWarning, match="State was accessed with a string: lr") as caught:
        state.update({"lr": 0.1, torchbearer.EPOCH: 3})
    assert [warning.filename for warning in caught] == [__file__]
    with pytest.warns(UserWarning, match="State was accessed with a string: momentum"):
        state.update(momentum=0.9)
    assert state == {"lr": 0.1, "epoch": 3, "momentum": 0.9}


def test_state_update_from_another_state_copies_without_warning():
    source = State()
    source[torchbearer.MODEL], source[torchbearer.EPOCH] = "model", 2
    target = State()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        target.update(source)
        target.update([(torchbearer.BATCH, 1)])
    assert target == {"model": "model", "epoch": 2, "t": 1}


def test_state_data_detaches_tensors():
    state = State()
    weight = torch.ones(2, requires_grad=True)
    state[torchbearer.LOSS] = (weight * 2).sum()
    view = state.data
    assert not view[torchbearer.LOSS].requires_grad
    assert torchbearer.LOSS in view and len(view) == 1


def test_a_run_state_takes_string_keys_silently_as_its_item_access_does():
    from torchbearer.state import RunState

    state = RunState()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state["custom"] = 1
        state.update({"other": 2}, third=3)
    assert state == {"custom": 1, "other": 2, "third": 3}
