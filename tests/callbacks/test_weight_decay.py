"""Weight decay: the training loss grows by rate * ||param||_p on every batch, validation losses do not."""

import pytest
import torch

import torchbearer
from torchbearer.callbacks.decorators import on_criterion
from torchbearer.callbacks.weight_decay import L1WeightDecay, L2WeightDecay, WeightDecay


def _penalised_loss(callback, params, loss=0.0):
    model = torch.nn.Linear(1, 1)
    state = {torchbearer.MODEL: model, torchbearer.LOSS: torch.tensor(loss)}
    callback.params = params
    callback.on_criterion(state)
    return state[torchbearer.LOSS].item()


def test_l2_adds_the_plain_norm_not_its_square():
    assert _penalised_loss(WeightDecay(rate=1.0, p=2), [torch.tensor([2.0])]) == pytest.approx(2.0)
    assert _penalised_loss(L2WeightDecay(rate=0.5), [torch.tensor([3.0, 4.0])], loss=1.0) == pytest.approx(3.5)


def test_l1_adds_the_sum_of_absolute_values_over_all_params():
    params = [torch.tensor([1.0, -2.0]), torch.tensor([[3.0], [-4.0]])]
    assert _penalised_loss(L1WeightDecay(rate=0.1), params) == pytest.approx(1.0)


def test_default_params_are_all_model_parameters():
    model = torch.nn.Linear(4, 3)
    decay = WeightDecay()
    decay.on_start({torchbearer.MODEL: model})
    assert decay.params == list(model.parameters())


def test_a_given_parameter_list_is_kept_and_a_generator_is_materialised():
    model = torch.nn.Linear(4, 3)
    params = [model.weight]
    assert WeightDecay(params=params).params is params
    assert L1WeightDecay(params=model.parameters()).params == list(model.parameters())


def _trial(callbacks, criterion, lr, x, y):
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=lr), criterion, metrics=["loss"], callbacks=callbacks, verbose=0
    )
    trial.with_train_data(x, y, batch_size=10, num_workers=0).with_val_data(x, y, batch_size=10, num_workers=0)
    return trial, model


def test_decay_is_added_on_every_batch_with_the_default_zero_loss(classification_data):
    losses, expected = [], []

    @on_criterion
    def record(state):
        model = state[torchbearer.MODEL]
        expected.append(0.01 * sum(torch.linalg.vector_norm(p, 2) for p in model.parameters()).item())
        losses.append(state[torchbearer.LOSS].item())

    trial, _ = _trial([WeightDecay(rate=0.01), record], None, 0.1, *classification_data)
    history = trial.run(2)
    assert len(losses) == 8
    assert losses == pytest.approx(expected)
    assert all(loss > 0 for loss in losses)
    assert history[-1]["val_loss"] == 0  # validation losses carry no penalty


def test_decay_adds_to_a_real_criterion_and_leaves_validation_alone(classification_data):
    plain, plain_model = _trial([], torch.nn.CrossEntropyLoss(), 0.0, *classification_data)
    decayed, model = _trial([L1WeightDecay(rate=1.0)], torch.nn.CrossEntropyLoss(), 0.0, *classification_data)
    model.load_state_dict(plain_model.state_dict())  # same weights, and lr 0 keeps them
    plain_record, decayed_record = plain.run(1)[0], decayed.run(1)[0]
    l1 = sum(p.abs().sum() for p in model.parameters()).item()
    assert decayed_record["loss"] == pytest.approx(plain_record["loss"] + l1)
    assert decayed_record["val_loss"] == pytest.approx(plain_record["val_loss"])
