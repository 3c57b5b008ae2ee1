"""Mixed precision, gradient accumulation and torch.compile through Trial (all on the CPU)."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import GradientNormClipping, on_backward, on_forward


def _regression_data(samples=32):
    x = torch.randn(samples, 4)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])


def _trial(model, lr=0.05, callbacks=(), metrics=("loss",)):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return Trial(model, optimizer, nn.MSELoss(), list(metrics), list(callbacks), verbose=0)


def test_bf16_autocasts_the_forward_pass_and_still_trains():
    dtypes = []

    @on_forward
    def record(state):
        dtypes.append(state[torchbearer.Y_PRED].dtype)

    x, y = _regression_data()
    trial = _trial(nn.Linear(4, 1), callbacks=[record]).with_precision("bf16")
    history = trial.with_train_data(x, y, batch_size=8, num_workers=0).run(10)
    assert set(dtypes) == {torch.bfloat16}
    assert history[-1]["loss"] < history[0]["loss"] * 0.5


def test_bf16_autocasts_every_validation_batch_and_nothing_after_it():
    seen = []

    @torchbearer.callbacks.on_forward_validation
    def record(state):
        seen.append((state[torchbearer.Y_PRED].dtype, torch.is_autocast_enabled("cpu")))

    x, y = _regression_data()
    trial = _trial(nn.Linear(4, 1), callbacks=[record]).with_precision("bf16")
    trial.with_val_data(x, y, batch_size=8, num_workers=0).evaluate()
    assert seen == [(torch.bfloat16, True)] * 4
    assert not torch.is_autocast_enabled("cpu")


def test_fp16_uses_a_grad_scaler_saved_in_the_state_dict():
    x, y = _regression_data()
    trial = _trial(nn.Linear(4, 1)).with_precision("fp16").with_train_data(x, y, batch_size=8, num_workers=0)
    trial.run(2)
    state_dict = trial.state_dict()
    assert "scale" in state_dict["grad_scaler"]
    restored = _trial(nn.Linear(4, 1)).with_precision("fp16")
    restored.load_state_dict(state_dict)
    assert restored.state[torchbearer.GRAD_SCALER].get_scale() == trial.state[torchbearer.GRAD_SCALER].get_scale()


def test_fp16_skips_a_step_whose_gradients_overflow():
    model = nn.Linear(4, 1)

    @on_backward
    def poison(state):
        model.weight.grad.fill_(float("inf"))

    x, y = _regression_data(8)
    trial = _trial(model, callbacks=[poison]).with_precision("fp16")
    before = model.weight.detach().clone()
    scale_before = trial.state[torchbearer.GRAD_SCALER].get_scale()
    trial.with_train_data(x, y, batch_size=8, num_workers=0).run(1)
    assert torch.equal(model.weight, before)
    assert trial.state[torchbearer.GRAD_SCALER].get_scale() < scale_before


def test_gradient_clipping_sees_unscaled_gradients_under_fp16():
    model = nn.Linear(4, 1)
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    x, y = _regression_data()
    trial = _trial(model, lr=0.05, callbacks=[GradientNormClipping(0.5)]).with_precision("fp16")
    trial.with_train_data(x * 10, y * 10, batch_size=8, num_workers=0).run(5)
    moved = torch.linalg.vector_norm(torch.cat([p.detach().flatten() for p in model.parameters()]) - before)
    # Each applied step moves by lr * 0.5 at most; clipping the still-scaled gradients would move ~1e-6.
    assert 0.02 < moved.item() <= 20 * 0.05 * 0.5 + 1e-4


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'fp8' is unknown"):
        _trial(nn.Linear(4, 1)).with_precision("fp8")


def test_accumulation_equals_one_step_over_the_concatenated_batch():
    x, y = _regression_data(32)
    torch.manual_seed(1)
    accumulated = nn.Linear(4, 1)
    whole = nn.Linear(4, 1)
    whole.load_state_dict(accumulated.state_dict())
    _trial(accumulated).with_accumulation(4).with_train_data(x, y, batch_size=2, shuffle=False, num_workers=0).run(3)
    _trial(whole).with_train_data(x, y, batch_size=8, shuffle=False, num_workers=0).run(3)
    assert torch.allclose(accumulated.weight, whole.weight, atol=1e-6)
    assert torch.allclose(accumulated.bias, whole.bias, atol=1e-6)


def test_accumulation_needs_a_positive_int():
    with pytest.raises(torchbearer.errors.ConfigurationError, match="positive int"):
        _trial(nn.Linear(4, 1)).with_accumulation(0)


def test_compiled_model_trains_and_saves_plain_keys(tmp_path):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    x, y = _regression_data()
    trial = _trial(model).with_compile().with_train_data(x, y, batch_size=8, num_workers=0)
    history = trial.run(3)
    assert history[-1]["loss"] < history[0]["loss"]
    path = tmp_path / "compiled.pt"
    torch.save(trial.state_dict(), path)
    plain = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    plain.load_state_dict(torch.load(path)["model"])
    assert torch.equal(plain[0].weight, model[0].weight)


def test_lbfgs_gets_the_closure_and_reevaluates_it():
    model = nn.Linear(4, 1)
    calls = []

    @on_forward
    def count(state):
        calls.append(state[torchbearer.BATCH])

    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    x, y = _regression_data()
    trial = Trial(model, optimizer, nn.MSELoss(), ["loss"], [count], verbose=0)
    history = trial.with_train_data(x, y, batch_size=32, num_workers=0).run(3)
    assert len(calls) > 3  # several evaluations per step
    assert history[-1]["loss"] < history[0]["loss"]


def test_an_optimizer_whose_step_needs_the_closure_still_gets_it():
    class TwoPass(torch.optim.SGD):  # like SAM: evaluates the closure itself, twice
        def step(self, closure):
            closure()
            return super().step(closure)

    model = nn.Linear(4, 1)
    forwards = []
    x, y = _regression_data()
    trial = Trial(model, TwoPass(model.parameters(), lr=0.05), nn.MSELoss(), ["loss"],
                  [on_forward(lambda state: forwards.append(1))], verbose=0)  # fmt: skip
    trial.with_train_data(x, y, batch_size=8, num_workers=0).run(1)
    assert len(forwards) == 8  # 4 batches, two forward passes each


def test_a_step_pre_hook_runs_before_the_closure_as_with_step_closure():
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    seen = []
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(model.weight.grad is None))
    x, y = _regression_data(8)
    Trial(model, optimizer, nn.MSELoss(), verbose=0).with_train_data(x, y, batch_size=8, num_workers=0).run(1)
    assert seen == [True]  # the hook ran before the closure computed the first gradients


def test_a_model_swapped_during_a_pass_is_called_by_its_own_convention():
    class TakesState(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 1)
            self.states_seen = 0

        def forward(self, x, state):
            self.states_seen += state is not None
            return self.linear(x)

    replacement = TakesState()

    @torchbearer.callbacks.on_sample
    def swap(state):
        if state[torchbearer.BATCH] == 2:
            state[torchbearer.MODEL] = replacement

    x, y = _regression_data(16)
    trial = _trial(nn.Linear(4, 1), callbacks=[swap])
    trial.with_train_data(x, y, batch_size=4, num_workers=0).run(1)
    assert replacement.states_seen == 2  # batches 2 and 3
