"""Gradient clipping: gradients seen by the optimizer are clipped on every batch, not just the first."""

import torch

import torchbearer
from torchbearer.callbacks.decorators import on_backward
from torchbearer.callbacks.gradient_clipping import GradientClipping, GradientNormClipping


def _total_norm(params):
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params])).item()


def _train(callbacks, x, y, epochs=2):
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.MSELoss(), callbacks=callbacks, verbose=0
    )
    trial.with_train_data(x, y, batch_size=10, num_workers=0).run(epochs)
    return model


def _regression_data():
    x = torch.randn(40, 4)
    return x, 100 * torch.randn(40, 3)  # large targets: large gradients


def test_norm_clipping_bounds_the_gradient_norm_on_every_batch():
    before, after = [], []
    record_before = on_backward(lambda state: before.append(_total_norm(state[torchbearer.MODEL].parameters())))
    record_after = on_backward(lambda state: after.append(_total_norm(state[torchbearer.MODEL].parameters())))
    _train([record_before, GradientNormClipping(1.0), record_after], *_regression_data())
    assert len(after) == 8  # 2 epochs of 4 batches
    assert min(before) > 1.0  # clipping had work to do on every batch
    assert all(norm <= 1.0 + 1e-5 for norm in after)


def test_norm_clipping_with_infinity_norm_bounds_the_largest_element():
    largest = []
    record = on_backward(
        lambda state: largest.append(max(p.grad.abs().max().item() for p in state[torchbearer.MODEL].parameters()))
    )
    _train([GradientNormClipping(0.5, norm_type=float("inf")), record], *_regression_data())
    assert len(largest) == 8 and all(value <= 0.5 + 1e-6 for value in largest)


def test_value_clipping_bounds_every_gradient_element_on_every_batch():
    largest = []
    record = on_backward(
        lambda state: largest.append(max(p.grad.abs().max().item() for p in state[torchbearer.MODEL].parameters()))
    )
    _train([GradientClipping(0.125), record], *_regression_data())
    assert len(largest) == 8 and all(value <= 0.125 for value in largest)
    assert max(largest) == 0.125  # the bound was reached, so clipping did act


def test_default_params_are_the_trainable_model_parameters():
    model = torch.nn.Linear(4, 3)
    model.bias.requires_grad_(False)
    for callback in (GradientNormClipping(1.0), GradientClipping(1.0)):
        callback.on_start({torchbearer.MODEL: model})
        assert len(callback.params) == 1 and callback.params[0] is model.weight


def test_a_parameter_generator_is_materialised_so_it_works_every_batch():
    model = torch.nn.Linear(4, 3)
    for callback in (GradientNormClipping(1.0, params=model.parameters()), GradientClipping(1.0, model.parameters())):
        assert isinstance(callback.params, list) and len(callback.params) == 2


def test_a_given_parameter_list_is_kept_as_passed():
    model = torch.nn.Linear(4, 3)
    params = [model.weight]
    assert GradientNormClipping(1.0, params=params).params is params
    assert GradientClipping(1.0, params=params).params is params


def test_only_the_given_parameters_are_clipped():
    x, y = _regression_data()
    model = torch.nn.Linear(4, 3)
    grads = []
    record = on_backward(lambda state: grads.append((model.weight.grad.abs().max(), model.bias.grad.abs().max())))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.MSELoss(),
        callbacks=[GradientClipping(0.1, params=[model.weight]), record], verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=10, num_workers=0).run(1)
    assert all(weight <= 0.1 for weight, _ in grads)
    assert any(bias > 0.1 for _, bias in grads)
