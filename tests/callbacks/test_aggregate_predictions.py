"""AggregatePredictions: per-batch outputs become one tensor, or a list with a warning when they cannot."""

import pytest
import torch

import torchbearer
from torchbearer.callbacks.aggregate_predictions import AggregatePredictions


def _aggregate(outputs):
    callback, state = AggregatePredictions(), {}
    callback.on_start_validation(state)
    for output in outputs:
        state[torchbearer.Y_PRED] = output
        callback.on_step_validation(state)
    callback.on_end_validation(state)
    callback.on_end_epoch(state)
    return state[torchbearer.FINAL_PREDICTIONS]


def test_batch_outputs_are_concatenated_on_the_first_dimension():
    outputs = [torch.arange(6.0).reshape(2, 3), torch.arange(6.0, 9.0).reshape(1, 3)]
    assert torch.equal(_aggregate(outputs), torch.arange(9.0).reshape(3, 3))


def test_a_single_batch_output_is_returned_as_is():
    output = torch.ones(4, 2)
    assert _aggregate([output]) is output


def test_tuple_outputs_fall_back_to_a_list_with_a_warning():
    outputs = [(torch.ones(2), torch.zeros(2)), (torch.ones(1), torch.zeros(1))]
    with pytest.warns(UserWarning, match="Failed to format predictions as tensor, returning as list."):
        result = _aggregate(outputs)
    assert result == outputs  # still intact after on_end_epoch cleared the callback's list


def test_ragged_outputs_fall_back_to_a_list_with_a_warning():
    outputs = [torch.ones(2, 3), torch.ones(2, 4)]
    with pytest.warns(UserWarning, match="Failed to format predictions as tensor"):
        assert len(_aggregate(outputs)) == 2


def test_no_batches_give_an_empty_list():
    assert _aggregate([]) == []


def test_predict_returns_all_outputs_and_does_not_accumulate_across_calls():
    x = torch.randn(25, 4)
    model = torch.nn.Linear(4, 2)
    trial = torchbearer.Trial(model, verbose=0).with_test_data(x, batch_size=10, num_workers=0)
    first = trial.predict()
    second = trial.predict()
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(first, expected) and torch.allclose(second, expected)
