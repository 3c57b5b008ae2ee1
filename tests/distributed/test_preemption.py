"""``Trial.with_preemption`` in one process: SIGTERM finishes the batch, checkpoints, exits 143; a restart resumes.

The signals are sent to this test process itself; a fixture installs a recording handler first, so that a
signal the Trial failed to catch fails the test instead of ending the test run.
"""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import on_end, on_step_training, on_step_validation
from torchbearer.distributed import PREEMPTED_EXIT_CODE, Preempted, load_checkpoint
from torchbearer.errors import ConfigurationError
from torchbearer.io import safe_load


@pytest.fixture
def delivered():
    """The SIGTERMs that reached the handler in place before the Trial's (it records instead of exiting)."""
    received = []

    def record(number, frame):
        received.append(number)

    previous = signal.signal(signal.SIGTERM, record)
    yield received
    assert signal.getsignal(signal.SIGTERM) is record  # every Trial put it back
    signal.signal(signal.SIGTERM, previous)


def _trial(callbacks=(), path=None) -> Trial:
    torch.manual_seed(0)
    x = torch.randn(48, 6, generator=torch.Generator().manual_seed(1))
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], list(callbacks), verbose=0)
    trial.with_train_data(x[:40], y[:40], batch_size=5, num_workers=0)
    trial.with_val_data(x[40:], y[40:], batch_size=3, num_workers=0)
    return trial.with_preemption(path) if path is not None else trial


def _terminate_at(epoch: int, batch: int, hook=on_step_training):
    @hook
    def terminate(state):
        if (state[torchbearer.EPOCH], state[torchbearer.BATCH]) == (epoch, batch):
            os.kill(os.getpid(), signal.SIGTERM)

    return terminate


def _weights(trial: Trial) -> dict:
    return trial.state_dict()[torchbearer.MODEL]


def test_sigterm_finishes_the_batch_checkpoints_exits_143_and_the_restart_ends_bit_identical(tmp_path, delivered):
    reference = _trial()
    history = reference.run(3)
    path = str(tmp_path / "preempted.pt")

    with pytest.raises(Preempted) as preempted:
        _trial([_terminate_at(1, 2)], path).run(3)
    assert preempted.value.code == PREEMPTED_EXIT_CODE == 143
    assert preempted.value.progress == {"epoch": 1, "batch": 2}  # the batch in progress finished first
    assert safe_load(path)["progress"] == {"epoch": 1, "batch": 2}
    assert delivered == []  # the Trial's handler took it

    resumed = _trial(path=path)
    load_checkpoint(resumed, path)
    resumed_history = resumed.run(3)
    for name, value in _weights(reference).items():
        assert torch.equal(_weights(resumed)[name], value), name
    # Epoch means may differ in the last bit: a mid-pass checkpoint flushes the metrics' grouped sums early.
    assert len(resumed_history) == len(history) == 3
    assert all(record == pytest.approx(expected, rel=1e-6) for record, expected in zip(resumed_history, history))


def test_a_sigterm_during_validation_checkpoints_once_the_epoch_is_recorded(tmp_path, delivered):
    path = str(tmp_path / "preempted.pt")
    with pytest.raises(Preempted) as preempted:
        _trial([_terminate_at(0, 1, hook=on_step_validation)], path).run(3)
    assert preempted.value.progress == {"epoch": 1, "batch": -1}  # epoch 0 complete, validation included
    assert len(safe_load(path)[torchbearer.HISTORY]) == 1


def test_a_sigterm_after_the_last_epoch_goes_to_the_handler_that_was_there_before(tmp_path, delivered):
    @on_end
    def terminate(state):
        os.kill(os.getpid(), signal.SIGTERM)

    path = tmp_path / "preempted.pt"
    _trial([terminate], str(path)).run(1)
    assert delivered == [signal.SIGTERM]
    assert not path.exists()


def test_without_with_preemption_the_signal_handlers_are_left_alone(delivered):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    @on_step_training
    def look(state):
        seen.append(signal.getsignal(signal.SIGTERM))

    _trial([look]).run(1)
    assert set(seen) == {before}


def test_with_preemption_refuses_no_signals_and_exit_codes_a_process_cannot_return(tmp_path):
    trial = _trial()
    with pytest.raises(ConfigurationError, match="at least one signal"):
        trial.with_preemption(str(tmp_path / "a.pt"), signals=())
    with pytest.raises(ConfigurationError, match="between 0 and 255"):
        trial.with_preemption(str(tmp_path / "a.pt"), exit_code=300)
    trial.with_preemption(str(tmp_path / "a.pt")).with_preemption(None)
    assert torchbearer.distributed.PREEMPTION not in trial.state
