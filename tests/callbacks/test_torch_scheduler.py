import functools
import io
import random
import warnings

import numpy as np
import pytest
import torch
from torch.optim import lr_scheduler
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.callbacks.torch_scheduler import (
    ChainedScheduler,
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    CyclicLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiplicativeLR,
    MultiStepLR,
    OneCycleLR,
    PolynomialLR,
    ReduceLROnPlateau,
    SequentialLR,
    StepLR,
    TorchScheduler,
)

# (callback factory, the same schedule built directly with torch) for every wrapper.
SCHEDULES = {
    "LambdaLR": (lambda: LambdaLR(lambda step: 0.5**step), lambda opt: lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)),
    "MultiplicativeLR": (
        lambda: MultiplicativeLR(lambda step: 0.9),
        lambda opt: lr_scheduler.MultiplicativeLR(opt, lambda s: 0.9),
    ),
    "StepLR": (lambda: StepLR(2, gamma=0.5), lambda opt: lr_scheduler.StepLR(opt, 2, gamma=0.5)),
    "MultiStepLR": (lambda: MultiStepLR([2, 5]), lambda opt: lr_scheduler.MultiStepLR(opt, [2, 5])),
    "ExponentialLR": (lambda: ExponentialLR(0.8), lambda opt: lr_scheduler.ExponentialLR(opt, 0.8)),
    "CosineAnnealingLR": (
        lambda: CosineAnnealingLR(4, eta_min=0.01),
        lambda opt: lr_scheduler.CosineAnnealingLR(opt, 4, eta_min=0.01),
    ),
    "CosineAnnealingWarmRestarts": (
        lambda: CosineAnnealingWarmRestarts(3, T_mult=2),
        lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, 3, T_mult=2),
    ),
    "LinearLR": (lambda: LinearLR(total_iters=4), lambda opt: lr_scheduler.LinearLR(opt, total_iters=4)),
    "PolynomialLR": (
        lambda: PolynomialLR(total_iters=6, power=2.0),
        lambda opt: lr_scheduler.PolynomialLR(opt, total_iters=6, power=2.0),
    ),
    "ConstantLR": (lambda: ConstantLR(total_iters=3), lambda opt: lr_scheduler.ConstantLR(opt, total_iters=3)),
    "OneCycleLR": (
        lambda: OneCycleLR(1.0, total_steps=10, step_on_batch=False),
        lambda opt: lr_scheduler.OneCycleLR(opt, 1.0, total_steps=10),
    ),
    "CyclicLR": (
        lambda: CyclicLR(0.01, 0.1, step_size_up=2),
        lambda opt: lr_scheduler.CyclicLR(opt, 0.01, 0.1, step_size_up=2),
    ),
    "SequentialLR": (
        lambda: SequentialLR([LinearLR(start_factor=0.1, total_iters=3), lambda o: lr_scheduler.StepLR(o, 2)], [3]),
        lambda opt: lr_scheduler.SequentialLR(
            opt, [lr_scheduler.LinearLR(opt, 0.1, total_iters=3), lr_scheduler.StepLR(opt, 2)], [3]
        ),
    ),
    "ChainedScheduler": (
        lambda: ChainedScheduler([ConstantLR(factor=0.5, total_iters=2), ExponentialLR(0.9)]),
        lambda opt: lr_scheduler.ChainedScheduler(
            [lr_scheduler.ConstantLR(opt, 0.5, total_iters=2), lr_scheduler.ExponentialLR(opt, 0.9)]
        ),
    ),
}


def make_optimizer():
    model = torch.nn.Linear(2, 1)
    return model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def dict_state(model, optimizer, metrics=None):
    return {
        torchbearer.MODEL: model,
        torchbearer.OPTIMIZER: optimizer,
        torchbearer.EPOCH: 0,
        torchbearer.METRICS: metrics if metrics is not None else {},
    }


def drive_epochs(callback, state, epochs):
    """Step the optimizer once per epoch and end the epoch; returns the lr after each epoch."""
    lrs = []
    for _ in range(epochs):
        state[torchbearer.OPTIMIZER].step()
        callback.on_step_training(state)
        callback.on_end_epoch(state)
        lrs.append(state[torchbearer.OPTIMIZER].param_groups[0]["lr"])
    return lrs


def torch_lrs(torch_builder, steps, metric=None):
    """The same schedule driven by hand the PyTorch way: optimizer.step() then scheduler.step()."""
    _, optimizer = make_optimizer()
    scheduler = torch_builder(optimizer)
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step() if metric is None else scheduler.step(metric)
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_wrapper_lr_per_epoch_matches_torch_scheduler_driven_by_hand(name):
    make_callback, torch_builder = SCHEDULES[name]
    model, optimizer = make_optimizer()
    callback, state = make_callback(), dict_state(model, optimizer)
    callback.on_start(state)

    assert drive_epochs(callback, state, 8) == pytest.approx(torch_lrs(torch_builder, 8))


def test_step_on_batch_steps_after_every_training_batch_and_not_at_epoch_end():
    model, optimizer = make_optimizer()
    callback, state = ExponentialLR(0.5, step_on_batch=True), dict_state(model, optimizer)
    callback.on_start(state)
    lrs = []
    for _ in range(3):
        optimizer.step()
        callback.on_step_training(state)
        lrs.append(optimizer.param_groups[0]["lr"])
    callback.on_end_epoch(state)

    assert lrs == pytest.approx([0.05, 0.025, 0.0125])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_nothing_steps_while_the_model_is_in_eval_mode():
    model, optimizer = make_optimizer()
    callback, state = StepLR(1, gamma=0.5), dict_state(model, optimizer)
    callback.on_start(state)
    model.eval()
    callback.on_end_epoch(state)

    assert optimizer.param_groups[0]["lr"] == 0.1


def test_builder_is_called_with_last_epoch_from_the_epoch_minus_one():
    calls = []

    def builder(optimizer, last_epoch):
        calls.append(last_epoch)
        return lr_scheduler.StepLR(optimizer, 1, last_epoch=last_epoch)

    model, optimizer = make_optimizer()
    TorchScheduler(builder).on_start(dict_state(model, optimizer))

    assert calls == [-1]


def test_builder_without_last_epoch_is_called_with_the_optimizer_only():
    model, optimizer = make_optimizer()
    callback = TorchScheduler(lambda opt: lr_scheduler.StepLR(opt, 1, gamma=0.5))
    state = dict_state(model, optimizer)
    callback.on_start(state)

    assert drive_epochs(callback, state, 2) == pytest.approx([0.05, 0.025])


def test_reduce_lr_on_plateau_reduces_when_the_monitored_value_stops_improving():
    model, optimizer = make_optimizer()
    callback = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=0, verbose=True)
    state = dict_state(model, optimizer, metrics={"val_loss": 1.0})
    callback.on_start(state)

    assert drive_epochs(callback, state, 3) == pytest.approx([0.1, 0.05, 0.025])


def test_reduce_lr_on_plateau_skips_the_step_with_a_warning_when_the_metric_is_missing():
    model, optimizer = make_optimizer()
    callback = ReduceLROnPlateau(monitor="val_acc", factor=0.5, patience=0)
    state = dict_state(model, optimizer, metrics={"val_loss": 1.0})
    callback.on_start(state)

    with pytest.warns(UserWarning, match="val_acc"):
        drive_epochs(callback, state, 2)
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_cyclic_lr_steps_on_batches_despite_its_default_monitor():
    model, optimizer = make_optimizer()
    callback = CyclicLR(0.01, 0.1, step_size_up=2, cycle_momentum=False, step_on_batch=True)
    state = dict_state(model, optimizer, metrics={"running_loss": 0.3})
    callback.on_start(state)
    lrs = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(4):
            optimizer.step()
            callback.on_step_training(state)
            lrs.append(optimizer.param_groups[0]["lr"])

    assert lrs == pytest.approx([0.055, 0.1, 0.055, 0.01])


def test_one_cycle_lr_steps_on_batches_by_default():
    model, optimizer = make_optimizer()
    callback, state = OneCycleLR(1.0, total_steps=4), dict_state(model, optimizer)
    callback.on_start(state)
    optimizer.step()
    callback.on_step_training(state)

    expected = torch_lrs(lambda opt: lr_scheduler.OneCycleLR(opt, 1.0, total_steps=4), 1)
    assert [optimizer.param_groups[0]["lr"]] == pytest.approx(expected)


def test_a_second_start_on_the_same_optimizer_continues_the_schedule():
    model, optimizer = make_optimizer()
    callback, state = StepLR(2, gamma=0.5), dict_state(model, optimizer)
    callback.on_start(state)
    first = drive_epochs(callback, state, 3)
    callback.on_start(state)
    second = drive_epochs(callback, state, 3)

    assert first + second == pytest.approx(torch_lrs(SCHEDULES["StepLR"][1], 6))


def test_inner_scheduler_that_is_not_callable_is_rejected_with_the_expected_forms():
    with pytest.raises(TypeError, match="optimizer -> scheduler"):
        SequentialLR([0.5], milestones=[])


def save_and_load(state_dict):
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_state_dict_loads_with_weights_only(name):
    model, optimizer = make_optimizer()
    callback, state = SCHEDULES[name][0](), dict_state(model, optimizer)
    callback.on_start(state)
    drive_epochs(callback, state, 3)

    loaded = save_and_load(callback.state_dict())

    assert loaded == callback.state_dict()
    assert loaded["scheduler"]["_last_lr"] == callback.scheduler.get_last_lr()


def test_state_dict_is_empty_before_any_scheduler_is_built():
    assert StepLR(1).state_dict() == {}


def test_multistep_milestones_are_saved_as_a_plain_list():
    model, optimizer = make_optimizer()
    callback = MultiStepLR([5, 2])
    callback.on_start(dict_state(model, optimizer))

    assert callback.state_dict()["scheduler"]["milestones"] == [2, 5]


def resume_at(name, stop, total, metrics=None):
    """Run ``stop`` epochs, save callback + optimizer (weights_only), load into fresh ones, run to ``total``."""
    make_callback = SCHEDULES[name][0]
    model, optimizer = make_optimizer()
    callback, state = make_callback(), dict_state(model, optimizer, metrics)
    callback.on_start(state)
    before = drive_epochs(callback, state, stop)
    saved = save_and_load({"callback": callback.state_dict(), "optimizer": optimizer.state_dict()})

    model, optimizer = make_optimizer()
    optimizer.load_state_dict(saved["optimizer"])
    resumed, state = make_callback().load_state_dict(saved["callback"]), dict_state(model, optimizer, metrics)
    resumed.on_start(state)
    return before + drive_epochs(resumed, state, total - stop)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_resumed_schedule_continues_exactly_like_an_uninterrupted_one(name):
    model, optimizer = make_optimizer()
    callback, state = SCHEDULES[name][0](), dict_state(model, optimizer)
    callback.on_start(state)
    uninterrupted = drive_epochs(callback, state, 8)

    assert resume_at(name, 3, 8) == uninterrupted


def test_resumed_reduce_lr_on_plateau_keeps_its_patience_count():
    def run(epochs, callback=None, optimizer_state=None, callback_state=None):
        model, optimizer = make_optimizer()
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        callback = ReduceLROnPlateau(factor=0.5, patience=2)
        if callback_state is not None:
            callback.load_state_dict(callback_state)
        state = dict_state(model, optimizer, {"val_loss": 1.0})
        callback.on_start(state)
        return drive_epochs(callback, state, epochs), callback, optimizer

    uninterrupted, _, _ = run(6)
    first, callback, optimizer = run(2)
    saved = save_and_load({"callback": callback.state_dict(), "optimizer": optimizer.state_dict()})
    second, _, _ = run(4, optimizer_state=saved["optimizer"], callback_state=saved["callback"])

    assert first + second == uninterrupted == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05])


def test_resumed_one_cycle_restores_momentum_as_well_as_lr():
    model, optimizer = make_optimizer()
    callback, state = OneCycleLR(1.0, total_steps=10), dict_state(model, optimizer)
    callback.on_start(state)
    for _ in range(4):
        optimizer.step()
        callback.on_step_training(state)
    saved = save_and_load({"callback": callback.state_dict(), "optimizer": optimizer.state_dict()})
    expected = {key: optimizer.param_groups[0][key] for key in ("lr", "momentum", "initial_lr")}

    model, fresh_optimizer = make_optimizer()
    fresh_optimizer.load_state_dict(saved["optimizer"])
    OneCycleLR(1.0, total_steps=10).load_state_dict(saved["callback"]).on_start(dict_state(model, fresh_optimizer))

    assert {key: fresh_optimizer.param_groups[0][key] for key in expected} == expected


# ------------------------------------------------------------------------------------------- with a Trial


class RecordLR(Callback):
    """Records the lr and momentum each training batch uses (read before the optimizer steps)."""

    def __init__(self):
        self.values = []

    def on_sample(self, state):
        group = state[torchbearer.OPTIMIZER].param_groups[0]
        self.values.append((group["lr"], group.get("momentum")))


def make_trial(scheduler, val_loss_constant=False):
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    recorder = RecordLR()
    if val_loss_constant:
        criterion = lambda y_pred, y_true: (y_pred * 0).sum() + 1.0  # noqa: E731
    else:
        criterion = torch.nn.CrossEntropyLoss()
    trial = Trial(model, optimizer, criterion, metrics=["loss"], callbacks=[scheduler, recorder], verbose=0)
    data = TensorDataset(torch.randn(12, 4), torch.randint(0, 2, (12,)))
    trial.with_train_generator(DataLoader(data, batch_size=4))
    trial.with_val_generator(DataLoader(data, batch_size=4))
    return trial, recorder


RESUME_CASES = {
    "StepLR per epoch": lambda: StepLR(2, gamma=0.5),
    "OneCycleLR per batch": lambda: OneCycleLR(0.5, total_steps=18),
    "ExponentialLR per batch": lambda: ExponentialLR(0.9, step_on_batch=True),
}


@pytest.mark.parametrize("case", sorted(RESUME_CASES))
def test_trial_saved_after_epoch_3_and_loaded_into_a_fresh_trial_continues_the_lr_exactly(case, tmp_path):
    make_scheduler = RESUME_CASES[case]
    trial, uninterrupted = make_trial(make_scheduler())
    trial.run(6)

    first_trial, first_half = make_trial(make_scheduler())
    first_trial.run(3)
    torch.save(first_trial.state_dict(), tmp_path / "trial.pt")
    resumed_trial, second_half = make_trial(make_scheduler())
    resumed_trial.load_state_dict(torch.load(tmp_path / "trial.pt", weights_only=True))
    resumed_trial.run(6)

    assert len(uninterrupted.values) == 18
    assert first_half.values + second_half.values == uninterrupted.values


def test_trial_run_then_run_again_follows_one_schedule():
    trial, once = make_trial(StepLR(3, gamma=0.5))
    trial.run(5)
    twice_trial, twice = make_trial(StepLR(3, gamma=0.5))
    twice_trial.run(2)
    twice_trial.run(5)

    assert twice.values == once.values


def test_trial_evaluate_does_not_step_the_scheduler():
    trial, _ = make_trial(StepLR(1, gamma=0.5))
    trial.run(2)
    lr_after_run = trial.state[torchbearer.OPTIMIZER].param_groups[0]["lr"]
    trial.evaluate()

    assert lr_after_run == pytest.approx(0.025)
    assert trial.state[torchbearer.OPTIMIZER].param_groups[0]["lr"] == lr_after_run


def test_trial_reduce_lr_on_plateau_reduces_when_val_loss_is_constant():
    trial, recorder = make_trial(ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=1), True)
    history = trial.run(4)
    lr_per_epoch = [lr for lr, _ in recorder.values[::3]]

    assert [record["val_loss"] for record in history] == pytest.approx([1.0] * 4)
    assert lr_per_epoch == pytest.approx([0.1, 0.1, 0.1, 0.05])


def test_trial_cyclic_lr_with_step_on_batch_changes_the_lr_every_batch():
    trial, recorder = make_trial(CyclicLR(0.01, 0.1, step_size_up=3, cycle_momentum=False, step_on_batch=True))
    trial.run(2)
    lrs = [lr for lr, _ in recorder.values]

    assert lrs == pytest.approx([0.01, 0.04, 0.07, 0.1, 0.07, 0.04])


def test_trial_partial_builder_gets_last_epoch_minus_one_at_start():
    builder = functools.partial(lr_scheduler.MultiStepLR, milestones=[1], gamma=0.5)
    trial, recorder = make_trial(TorchScheduler(builder))
    trial.run(2)

    assert [lr for lr, _ in recorder.values[::3]] == pytest.approx([0.1, 0.05])


class DecayBy:
    """A callable lr_lambda object: torch saves its __dict__."""

    def __init__(self, factor):
        self.factor = np.float64(factor)
        self.generator = random.Random(0)

    def __call__(self, step):
        return float(self.factor) ** step


def test_callable_lr_lambda_state_is_saved_in_plain_types_leaving_out_what_cannot_be():
    model, optimizer = make_optimizer()
    callback, state = LambdaLR(DecayBy(0.5)), dict_state(model, optimizer)
    callback.on_start(state)

    with pytest.warns(UserWarning, match=r"\['lr_lambdas'\]\[0\]\['generator'\] holds a Random"):
        saved = save_and_load(callback.state_dict())

    assert saved["scheduler"]["lr_lambdas"] == [{"factor": 0.5}]
    assert type(saved["scheduler"]["lr_lambdas"][0]["factor"]) is float


def test_a_batch_stepped_schedule_counts_optimizer_steps_under_gradient_accumulation():
    trial, recorder = make_trial(StepLR(1, gamma=0.5, step_on_batch=True))
    trial.with_accumulation(3)  # 3 batches an epoch: one optimizer step each
    trial.run(3)
    assert [lr for lr, _ in recorder.values] == [0.1] * 3 + [0.05] * 3 + [0.025] * 3
