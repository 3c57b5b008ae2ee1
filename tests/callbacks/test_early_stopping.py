"""EarlyStopping: when a run stops, for each mode, patience and min_delta, and its saved state."""

import warnings

import pytest
import torch

import torchbearer
from torchbearer.callbacks.checkpointers import MostRecent
from torchbearer.callbacks.decorators import on_step_training
from torchbearer.callbacks.early_stopping import EarlyStopping


def _stopping_epoch(stopper, values, monitor="val_loss"):
    """Feed one value per epoch; return the epoch at which the run would stop (None if never)."""
    for epoch, value in enumerate(values):
        state = {torchbearer.METRICS: {monitor: value}, torchbearer.STOP_TRAINING: False}
        stopper.on_end_epoch(state)
        if state[torchbearer.STOP_TRAINING]:
            return epoch
    return None


def test_patience_zero_stops_at_the_first_epoch_without_improvement():
    assert _stopping_epoch(EarlyStopping(), [0.9, 0.8, 0.85, 0.7]) == 2


def test_patience_allows_that_many_epochs_without_improvement():
    assert _stopping_epoch(EarlyStopping(patience=2), [0.9, 0.95, 0.8, 0.85, 0.9, 0.7]) == 4


def test_improvement_resets_the_wait():
    stopper = EarlyStopping(patience=2)
    assert _stopping_epoch(stopper, [0.9, 0.95, 0.8, 0.85]) is None
    assert stopper.wait == 1 and stopper.best == 0.8


def test_min_delta_requires_a_large_enough_improvement():
    assert _stopping_epoch(EarlyStopping(min_delta=0.1), [1.0, 0.5, 0.45]) == 2
    assert _stopping_epoch(EarlyStopping(min_delta=0.1), [1.0, 0.5, 0.35]) is None


def test_auto_mode_maximises_accuracy():
    stopper = EarlyStopping(monitor="val_acc")
    assert stopper.mode == "max"
    assert _stopping_epoch(stopper, [0.5, 0.6, 0.55], monitor="val_acc") == 2


def test_explicit_max_mode_on_a_loss():
    assert _stopping_epoch(EarlyStopping(mode="max"), [0.5, 0.6, 0.4]) == 2


def test_missing_metric_warns_and_does_not_stop():
    stopper = EarlyStopping()
    state = {torchbearer.METRICS: {"loss": 1.0}, torchbearer.STOP_TRAINING: False}
    with pytest.warns(UserWarning, match="Early Stopping: Failed to retrieve key `val_loss`"):
        stopper.on_end_epoch(state)
    assert state[torchbearer.STOP_TRAINING] is False and stopper.wait == 0


def test_val_metric_is_skipped_silently_on_a_test_set_evaluation():
    stopper = EarlyStopping()
    state = {torchbearer.METRICS: {"test_loss": 1.0}, torchbearer.DATA: torchbearer.TEST_DATA}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stopper.on_end_epoch(state)
    assert stopper.wait == 0


def test_state_dict_round_trip_restores_wait_and_best_and_returns_self():
    stopper = EarlyStopping(patience=3)
    _stopping_epoch(stopper, [0.5, 0.7])
    restored = EarlyStopping(patience=3)
    assert restored.load_state_dict(stopper.state_dict()) is restored
    assert restored.state_dict() == {"wait": 1, "best": 0.5}
    assert _stopping_epoch(restored, [0.6, 0.6]) == 1  # waits 2 and 3: patience runs out


def _trial(callbacks, lr, x, y):
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=lr), torch.nn.CrossEntropyLoss(), metrics=["loss"],
        callbacks=callbacks, verbose=0,
    )  # fmt: skip
    return trial.with_train_data(x, y, batch_size=10, num_workers=0, shuffle=False)


def test_trial_stops_once_patience_runs_out(classification_data):
    x, y = classification_data
    trial = _trial([EarlyStopping(monitor="loss", patience=2)], 0.0, x, y)  # lr 0: the loss never improves
    history = trial.run(10)
    assert len(history) == 3  # epoch 0 sets the best, epochs 1 and 2 wait, the run stops after epoch 2


def test_trial_keeps_going_while_the_loss_improves(classification_data):
    x, y = classification_data
    history = _trial([EarlyStopping(monitor="loss")], 0.1, x, y).run(4)
    assert len(history) == 4


def test_step_on_batch_stops_inside_the_first_epoch(classification_data):
    x, y = classification_data
    x = x[:10].repeat(4, 1)  # four identical batches and lr 0: the running loss stays the same
    y = y[:10].repeat(4)
    steps = []
    counter = on_step_training(lambda state: steps.append(state[torchbearer.BATCH]))
    trial = _trial([EarlyStopping(monitor="running_loss", step_on_batch=True), counter], 0.0, x, y)
    history = trial.run(2)
    assert steps == [0, 1]  # step 0 sets the best, step 1 does not improve: stop
    assert history == []


SCORES = [0.9, 0.5, 0.7, 0.8, 0.6, 0.4]  # the monitored value of each epoch: best at 1, until epoch 5


class _Scripted(torchbearer.Callback):
    """Sets the monitored 'score' of each epoch from SCORES, and keeps a copy of each epoch's weights."""

    def __init__(self):
        self.weights = {}

    def on_end_epoch(self, state):
        state[torchbearer.METRICS]["score"] = SCORES[state[torchbearer.EPOCH]]
        weights = state[torchbearer.MODEL].state_dict()
        self.weights[state[torchbearer.EPOCH]] = {name: value.clone() for name, value in weights.items()}


def _equal(weights, model):
    return all(torch.equal(value, model.state_dict()[name]) for name, value in weights.items())


def test_restore_best_weights_gives_the_model_the_best_epochs_weights_when_it_stops(classification_data):
    x, y = classification_data
    scripted = _Scripted()
    stopper = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    trial = _trial([scripted, stopper], 0.1, x, y)

    history = trial.run(10)

    assert len(history) == 4  # epochs 2 and 3 wait, then it stops
    assert _equal(scripted.weights[1], trial.state[torchbearer.MODEL])
    assert not _equal(scripted.weights[3], trial.state[torchbearer.MODEL])
    trial.with_val_data(x, y, batch_size=10, num_workers=0)
    trial.evaluate()  # evaluate steps the stopper but restores nothing
    assert _equal(scripted.weights[1], trial.state[torchbearer.MODEL])


def test_restore_best_weights_at_the_end_of_a_run_that_was_not_stopped(classification_data):
    x, y = classification_data
    scripted = _Scripted()
    trial = _trial([scripted, EarlyStopping(monitor="score", patience=9, restore_best_weights=True)], 0.1, x, y)

    trial.run(5)

    assert _equal(scripted.weights[1], trial.state[torchbearer.MODEL])


def test_without_restore_best_weights_the_model_keeps_the_last_epochs_weights(classification_data):
    x, y = classification_data
    scripted = _Scripted()
    stopper = EarlyStopping(monitor="score", patience=2)
    trial = _trial([scripted, stopper], 0.1, x, y)

    trial.run(10)

    assert _equal(scripted.weights[3], trial.state[torchbearer.MODEL])
    assert "best_weights" not in stopper.state_dict()


def test_restore_best_weights_survives_a_resume_from_a_checkpoint_saved_mid_run(classification_data, tmp_path):
    x, y = classification_data
    checkpoint = str(tmp_path / "checkpoint.pt")
    scripted = _Scripted()
    first = _trial([scripted, EarlyStopping(monitor="score", patience=9, restore_best_weights=True),
                    MostRecent(checkpoint)], 0.1, x, y)  # fmt: skip
    first.run(3)  # epochs 0-2, best at 1; the checkpoint holds the weights after epoch 2

    resumed = _trial([scripted, EarlyStopping(monitor="score", patience=9, restore_best_weights=True),
                      MostRecent(str(tmp_path / "resumed.pt"))], 0.1, x, y)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every callback's state is restored
        resumed.load_state_dict(torch.load(checkpoint, weights_only=True))
    assert _equal(scripted.weights[2], resumed.state[torchbearer.MODEL])
    resumed.run(5)  # epochs 3 and 4 are worse than epoch 1

    assert _equal(scripted.weights[1], resumed.state[torchbearer.MODEL])
    assert not _equal(scripted.weights[4], resumed.state[torchbearer.MODEL])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_restore_best_weights_keeps_cpu_copies_of_a_gpu_model_and_restores_them_on_the_gpu(classification_data):
    x, y = classification_data
    scripted = _Scripted()
    stopper = EarlyStopping(monitor="score", patience=2, restore_best_weights=True)
    trial = _trial([scripted, stopper], 0.1, x, y).to("cuda")

    trial.run(10)

    assert all(not value.is_cuda for value in stopper.best_weights.values())
    model = trial.state[torchbearer.MODEL]
    assert all(parameter.is_cuda for parameter in model.parameters())
    assert _equal(scripted.weights[1], model)
