"""The model and criterion calling conventions, and the errors raised when a call cannot work."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.calling import call_criterion, call_model
from torchbearer.errors import BatchError, CriterionError, ModelCallError


def test_model_without_state_parameter_is_called_without_state():
    model = nn.Linear(2, 1)
    assert call_model({}, model, torch.zeros(3, 2)).shape == (3, 1)


def test_opaque_callable_falls_back_to_calling_without_state():
    calls = []

    def model(*args, **kwargs):
        calls.append(kwargs)
        if kwargs:
            raise TypeError("unexpected keyword argument 'state'")
        return args[0]

    assert call_model({}, model, 5) == 5
    assert call_model({}, model, 6) == 6
    assert calls == [{"state": {}}, {}, {}]  # learned after the first call


def test_opaque_callable_failing_both_ways_raises_both_errors():
    def model(*args, **kwargs):
        raise TypeError("always")

    with pytest.raises(Exception) as info:
        call_model({}, model, 1)
    assert isinstance(info.value.args[0], list) and len(info.value.args[0]) == 2


def test_pass_state_forces_the_state_keyword():
    received = []

    class Wrapper(nn.Module):
        def forward(self, *args, **kwargs):
            received.append(sorted(kwargs))
            return args[0]

    model = Wrapper()
    Trial(model, pass_state=True, verbose=0).for_train_steps(1).run(1)
    assert received == [["state"]]


def _loss(criterion, y_pred, y_true):
    return call_criterion({"y_pred": y_pred, "y_true": y_true}, criterion, "y_pred", "y_true")


LOSS_CALLS = {"call_criterion": _loss}
MODEL_CALLS = {"call_model": lambda model, x: call_model({}, model, x)}


@pytest.mark.parametrize("compute_loss", LOSS_CALLS.values(), ids=LOSS_CALLS)
def test_criterion_shape_mismatch_names_both_shapes(compute_loss):
    with pytest.raises(CriterionError, match=r"shape \(4, 3\).*shape \(5,\)"):
        compute_loss(nn.CrossEntropyLoss(), torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("compute_loss", LOSS_CALLS.values(), ids=LOSS_CALLS)
def test_float_targets_for_cross_entropy_get_a_hint(compute_loss):
    with pytest.raises(CriterionError, match="int64 targets for CrossEntropyLoss"):
        compute_loss(nn.CrossEntropyLoss(), torch.randn(4, 3), torch.randn(4, 2))


@pytest.mark.parametrize("compute_loss", LOSS_CALLS.values(), ids=LOSS_CALLS)
def test_non_scalar_loss_is_refused(compute_loss):
    with pytest.raises(CriterionError, match=r"loss of shape \(4,\).*reduction='mean'"):
        compute_loss(nn.MSELoss(reduction="none"), torch.randn(4), torch.randn(4))


@pytest.mark.parametrize("compute_loss", LOSS_CALLS.values(), ids=LOSS_CALLS)
def test_a_loss_cut_from_the_graph_is_refused_in_training_only(compute_loss):
    def detached_loss(prediction, target):
        return ((prediction - target) ** 2).mean().detach()

    y_pred = torch.randn(4, requires_grad=True)
    with pytest.raises(CriterionError, match="does not require grad.*the criterion cut the graph"):
        compute_loss(detached_loss, y_pred, torch.randn(4))
    with torch.no_grad():
        assert compute_loss(detached_loss, y_pred, torch.zeros(4)).shape == ()


@pytest.mark.parametrize("call", MODEL_CALLS.values(), ids=MODEL_CALLS)
def test_model_error_names_the_model_and_input(call):
    with pytest.raises(ModelCallError, match=r"Linear on the input \(tensor of shape \(2, 5\)"):
        call(nn.Linear(3, 1), torch.randn(2, 5))


def test_call_model_spreads_a_list_or_tuple_input():
    def add(first, second):
        return first + second

    assert call_model({}, add, [torch.ones(2), torch.ones(2)]).tolist() == [2.0, 2.0]
    assert call_model({}, add, (torch.ones(1), torch.zeros(1))).tolist() == [1.0]


def test_none_input_error_says_no_data_was_given():
    trial = Trial(nn.Linear(3, 1), verbose=0).for_train_steps(1)
    with pytest.raises(ModelCallError, match="this pass has no data"):
        trial.run(1)


def test_a_batch_that_is_not_a_pair_names_its_structure():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    model = nn.Linear(2, 1)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), verbose=0)
    with pytest.raises(BatchError, match="must be a pair \\(x, y\\).*list with 1 items"):
        trial.with_train_generator(loader).run(1)


def test_empty_loader_is_refused_when_configured():
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(0, 2), torch.randn(0, 1)))
    with pytest.raises(torchbearer.errors.ConfigurationError, match="empty"):
        Trial(nn.Linear(2, 1)).with_train_generator(loader)


def test_generator_without_length_needs_steps():
    def batches():
        yield torch.randn(2, 2), torch.randn(2, 1)

    with pytest.raises(torchbearer.errors.ConfigurationError, match="has no length.*steps"):
        Trial(nn.Linear(2, 1)).with_train_generator(batches())


def test_run_with_non_integer_epochs_is_refused(linear_trial):
    with pytest.raises(torchbearer.errors.ConfigurationError, match="int number of epochs, got 2.5"):
        linear_trial.run(2.5)


def test_non_callback_in_callbacks_is_refused():
    with pytest.raises(TypeError, match="is not a torchbearer Callback"):
        Trial(nn.Linear(2, 1), callbacks=[lambda state: None])


def test_the_calling_decision_is_made_once_even_for_unhashable_criteria_and_dropped_with_them(monkeypatch):
    import dataclasses
    import gc

    from torchbearer import calling

    @dataclasses.dataclass  # eq=True makes instances unhashable
    class Scaled:
        weight: float = 2.0

        def __call__(self, y_pred, y_true):
            return ((y_pred - y_true) ** 2).mean() * self.weight

    inspections = []
    signature = calling._signature
    monkeypatch.setattr(calling, "_signature", lambda fn: inspections.append(type(fn)) or signature(fn))
    criterion = Scaled()
    for _ in range(3):
        _loss(criterion, torch.ones(2, requires_grad=True), torch.zeros(2))
    assert len(inspections) == 1
    identity = id(criterion)
    assert identity in calling._STATE_CRITERION
    del criterion
    gc.collect()
    assert identity not in calling._STATE_CRITERION  # forgotten with the object
