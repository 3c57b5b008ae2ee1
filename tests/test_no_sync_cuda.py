"""On a GPU, a training epoch with the default metrics never waits for the device inside the epoch."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import add_to_loss, on_start_training, on_step_training
from torchbearer.state import Y_PRED, Y_TRUE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("without_criterion", [False, True], ids=["criterion", "loss_from_a_callback"])
def test_training_batches_do_not_synchronise_with_the_device(without_criterion):
    device = "cuda"
    batches = [(torch.randn(64, 32, device=device), torch.randint(0, 10, (64,), device=device)) for _ in range(30)]
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    # Without a criterion the Trial notes, for its "loss stayed 0" warning, whether a callback added to the loss.
    loss_callbacks = [add_to_loss(lambda state: nn.functional.cross_entropy(state[Y_PRED], state[Y_TRUE]))]
    criterion, loss_callbacks = (None, loss_callbacks) if without_criterion else (nn.CrossEntropyLoss(), [])

    armed = [False]  # the first (warm-up) run may sync once for lazy CUDA initialisation

    @on_start_training
    def strict(state):
        if armed[0]:
            torch.cuda.set_sync_debug_mode("error")  # any synchronising call now raises

    @on_step_training
    def relax_after_last(state):
        if state[torchbearer.BATCH] == len(batches) - 1:
            torch.cuda.set_sync_debug_mode("default")  # the one end-of-pass transfer comes next

    callbacks = [strict, *loss_callbacks, relax_after_last]
    trial = Trial(model, optimizer, criterion, ["acc", "loss"], callbacks, verbose=0)
    trial.with_train_generator(batches).to(device)
    try:
        trial.run(1)
        armed[0] = True
        history = trial.run(3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(history) == 3 and history[-1]["loss"] == history[-1]["loss"]
