import pytest
import torch

import torchbearer
from torchbearer.callbacks.label_smoothing import LabelSmoothingRegularisation


def test_label_smoothing_moves_epsilon_to_the_uniform_distribution():
    state = {torchbearer.Y_TRUE: torch.tensor([0, 3])}
    LabelSmoothingRegularisation(0.2, classes=4).on_sample(state)
    expected = torch.tensor([[0.85, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05, 0.85]])
    assert torch.allclose(state[torchbearer.Y_TRUE], expected)


def test_label_smoothing_smooths_given_one_hot_targets_without_classes():
    state = {torchbearer.Y_TRUE: torch.tensor([[0, 1], [1, 0]])}
    LabelSmoothingRegularisation(0.1).on_sample(state)
    assert torch.allclose(state[torchbearer.Y_TRUE], torch.tensor([[0.05, 0.95], [0.95, 0.05]]))


def test_label_smoothing_one_hots_validation_targets():
    state = {torchbearer.Y_TRUE: torch.tensor([1, 2])}
    LabelSmoothingRegularisation(0.1, classes=3).on_sample_validation(state)
    assert torch.equal(state[torchbearer.Y_TRUE], torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def test_label_smoothing_leaves_prediction_batches_without_targets_alone():
    state = {torchbearer.X: torch.rand(2, 3)}
    LabelSmoothingRegularisation(0.1, classes=3).on_sample_validation(state)
    assert torchbearer.Y_TRUE not in state


def test_label_smoothing_without_classes_on_index_targets_says_how_to_fix():
    with pytest.raises(ValueError, match="classes"):
        LabelSmoothingRegularisation(0.1).on_sample({torchbearer.Y_TRUE: torch.tensor([0, 1])})


def test_label_smoothing_trains_with_a_multi_label_loss():
    x = torch.randn(40, 4)
    y = x[:, :3].argmax(dim=1)
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.5),
        torch.nn.BCEWithLogitsLoss(),
        metrics=["loss", "cat_acc"],
        callbacks=[LabelSmoothingRegularisation(0.1, classes=3)],
        verbose=0,
    )
    history = trial.with_train_data(x, y, batch_size=8).with_val_data(x, y, batch_size=8).run(4)
    assert {"acc", "val_acc", "loss", "val_loss"} <= set(history[-1])
    assert history[-1]["val_loss"] < history[0]["val_loss"]


def test_label_smoothing_cites_its_paper():
    assert "szegedy2016rethinking" in LabelSmoothingRegularisation.__doc__


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_label_smoothing_runs_on_cuda_without_host_device_sync():
    state = {torchbearer.Y_TRUE: torch.randint(0, 5, (8,), device="cuda")}
    torch.cuda.set_sync_debug_mode("error")
    try:
        LabelSmoothingRegularisation(0.1, classes=5).on_sample(state)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert state[torchbearer.Y_TRUE].is_cuda
