import copy
import math
import sys

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks.lr_finder import LRFinder, find_lr
from torchbearer.callbacks.torch_scheduler import StepLR


def make_trial(optimizer_class=torch.optim.SGD, callbacks=(), batches=3, **optimizer_args):
    """Linear(4, 3) on 12 fixed samples (no shuffling, so two such trials train identically)."""
    torch.manual_seed(2)
    model = torch.nn.Linear(4, 3)
    optimizer = optimizer_class(model.parameters(), lr=0.05, **optimizer_args)
    trial = Trial(model, optimizer, torch.nn.CrossEntropyLoss(), metrics=["loss"], callbacks=list(callbacks), verbose=0)
    x = torch.randn(batches * 4, 4)
    data = TensorDataset(x, x[:, :3].argmax(dim=1))
    trial.with_train_generator(DataLoader(data, batch_size=4))
    trial.with_val_generator(DataLoader(data, batch_size=4))
    return trial


def snapshot(trial):
    model_state = {key: value.clone() for key, value in trial.state[torchbearer.MODEL].state_dict().items()}
    return model_state, copy.deepcopy(trial.state[torchbearer.OPTIMIZER].state_dict())


def assert_same_tensors(first, second):
    assert first.keys() == second.keys()
    for key in first:
        if isinstance(first[key], torch.Tensor):
            assert torch.equal(first[key], second[key]), key
        elif isinstance(first[key], dict):
            assert_same_tensors(first[key], second[key])
        else:
            assert first[key] == second[key], key


def test_find_lr_sweeps_the_rates_exponentially_from_start_to_end():
    finder = find_lr(make_trial(), start_lr=1e-4, end_lr=1e-1, num_steps=10)
    ratios = [later / earlier for earlier, later in zip(finder.lrs, finder.lrs[1:])]

    assert len(finder.lrs) == 10 and not finder.diverged
    assert finder.lrs[0] == pytest.approx(1e-4)
    assert finder.lrs[-1] == pytest.approx(1e-1)
    assert ratios == pytest.approx([10 ** (3 / 9)] * 9)


def test_find_lr_returns_one_finite_smoothed_loss_per_rate():
    finder = find_lr(make_trial(), start_lr=1e-4, end_lr=1e-1, num_steps=10, smooth=0.0)

    assert len(finder.losses) == len(finder.raw_losses) == 10
    assert finder.losses == pytest.approx(finder.raw_losses)
    assert all(math.isfinite(loss) and loss > 0 for loss in finder.losses)


def test_losses_are_bias_corrected_moving_averages_of_the_batch_losses():
    finder = find_lr(make_trial(), start_lr=1e-4, end_lr=1e-1, num_steps=5, smooth=0.5)
    average, expected = 0.0, []
    for step, loss in enumerate(finder.raw_losses, start=1):
        average = 0.5 * average + 0.5 * loss
        expected.append(average / (1 - 0.5**step))

    assert finder.losses == pytest.approx(expected)


@pytest.mark.parametrize(
    ("optimizer_class", "arguments"), [(torch.optim.SGD, {"momentum": 0.9}), (torch.optim.Adam, {})]
)
def test_model_weights_and_optimizer_state_are_restored_after_the_test(optimizer_class, arguments):
    trial = make_trial(optimizer_class, **arguments)
    trial.run(1)  # gives the optimizer some state (momentum buffers, Adam moments)
    model_before, optimizer_before = snapshot(trial)

    find_lr(trial, num_steps=8, end_lr=1.0)
    model_after, optimizer_after = snapshot(trial)

    assert_same_tensors(model_after, model_before)
    assert_same_tensors(optimizer_after, optimizer_before)


def test_training_after_find_lr_matches_training_without_it():
    untouched = make_trial(torch.optim.SGD, momentum=0.9).run(2)
    tested = make_trial(torch.optim.SGD, momentum=0.9)
    find_lr(tested, num_steps=7, end_lr=1.0)

    assert tested.run(2) == untouched


def test_find_lr_leaves_out_and_keeps_the_trials_own_callbacks():
    scheduler = StepLR(1, gamma=0.5)
    trial = make_trial(callbacks=[scheduler])
    find_lr(trial, num_steps=5)

    assert scheduler.scheduler is None
    assert list(trial.state[torchbearer.CALLBACK_LIST]) == [scheduler]
    assert trial.state[torchbearer.VALIDATION_GENERATOR] is not None


def test_find_lr_stops_early_when_the_loss_diverges():
    finder = find_lr(make_trial(), start_lr=1e-3, end_lr=1e6, num_steps=60, smooth=0.5)

    assert finder.diverged
    assert len(finder.lrs) < 60
    assert finder.losses[-1] > 4.0 * min(finder.losses[:-1]) or not math.isfinite(finder.losses[-1])


def test_finder_as_a_trial_callback_stops_the_run_then_leaves_later_runs_alone():
    finder = LRFinder(start_lr=1e-4, end_lr=1e-1, num_steps=5)
    trial = make_trial(callbacks=[finder])
    trial.run(10)
    lrs_of_test = list(finder.lrs)

    assert len(lrs_of_test) == 5
    assert trial.state[torchbearer.HISTORY] == []
    assert len(trial.run(2)) == 2
    assert finder.lrs == lrs_of_test
    assert trial.state[torchbearer.OPTIMIZER].param_groups[0]["lr"] == 0.05


def test_finder_warns_when_the_run_ends_before_the_sweep_does():
    finder = LRFinder(num_steps=50)
    with pytest.warns(UserWarning, match="after 3 of 50"):
        make_trial(callbacks=[finder]).run(1)


def test_suggestion_is_the_rate_of_steepest_descent_or_a_tenth_of_the_minimum():
    finder = LRFinder()
    finder.lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    finder.losses = [2.0, 1.9, 1.0, 0.8, 3.0]

    assert finder.suggestion() == 1e-2
    assert finder.suggestion("minimum") == pytest.approx(1e-2)


def test_suggestion_needs_a_recorded_curve_and_a_known_method():
    finder = LRFinder()
    with pytest.raises(ValueError, match="at least 2"):
        finder.suggestion()
    finder.lrs, finder.losses = [1e-3, 1e-2], [1.0, 0.5]
    with pytest.raises(ValueError, match="'steepest' or 'minimum'"):
        finder.suggestion("median")


def test_plot_writes_a_png(tmp_path):
    finder = find_lr(make_trial(), start_lr=1e-4, end_lr=1e-1, num_steps=6)
    path = tmp_path / "lr_finder.png"
    figure = finder.plot(str(path))

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert figure.axes[0].get_xscale() == "log"


def test_plot_without_matplotlib_names_the_extra_to_install(monkeypatch):
    finder = LRFinder()
    finder.lrs, finder.losses = [1e-3, 1e-2], [1.0, 0.5]
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[plots\]"):
        finder.plot()


def test_find_lr_without_training_data_says_how_to_add_it():
    model = torch.nn.Linear(4, 3)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), verbose=0)

    with pytest.raises(ValueError, match="with_train_generator"):
        find_lr(trial)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"start_lr": 1.0, "end_lr": 0.1}, "start_lr < end_lr"),
        ({"num_steps": 1}, "num_steps >= 2"),
        ({"smooth": 1.0}, "smooth < 1"),
        ({"divergence_threshold": 0.5}, "divergence_threshold > 1"),
    ],
)
def test_out_of_range_arguments_are_rejected_with_the_valid_range(arguments, message):
    with pytest.raises(ValueError, match=message):
        LRFinder(**arguments)
