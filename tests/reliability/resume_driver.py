"""Driver for the kill-and-resume tests: trains in forked children that SIGKILL themselves mid-run.

Usage: python resume_driver.py OUT_DIR MODE KILL_AT [KILL_AT ...]
MODE is 'epoch' (MostRecent each epoch) or 'batch' (Interval every 3 training batches). For each
kill point the driver forks a child that trains and kills itself with SIGKILL after that many
training batches, then forks another that resumes from the checkpoint and finishes. It writes the
final weights and history of each scenario (and of an uninterrupted run) to OUT_DIR.
"""

import os
import random
import signal
import sys
import traceback

import numpy as np
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import Interval, MostRecent, on_step_training

EPOCHS = 3
torch.set_num_threads(1)


def make_trial(mode: str, checkpoint: str, kill_at: int) -> Trial:
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    data = torch.Generator().manual_seed(1)
    x = torch.randn(48, 6, generator=data)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = [0]

    @on_step_training
    def kill_switch(state):
        batches[0] += 1
        if batches[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    saver = MostRecent(checkpoint) if mode == "epoch" else Interval(checkpoint, period=3, on_batch=True)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], [saver, kill_switch], verbose=0)
    trial.with_train_data(x[:40], y[:40], batch_size=5, shuffle=True, num_workers=0)
    trial.with_val_data(x[40:], y[40:], batch_size=4, shuffle=True, num_workers=0)
    return trial


def train(mode: str, checkpoint: str, result: str, kill_at: int) -> None:
    trial = make_trial(mode, checkpoint, kill_at)
    if os.path.exists(checkpoint):
        trial.load_state_dict(torch.load(checkpoint))
    history = trial.run(EPOCHS)
    torch.save({"model": trial.state[torchbearer.MODEL].state_dict(), "history": history}, result)


def in_child(function, *args) -> int:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            function(*args)
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    return os.waitpid(pid, 0)[1]


def main() -> None:
    out, mode, kill_points = sys.argv[1], sys.argv[2], [int(arg) for arg in sys.argv[3:]]
    assert in_child(train, mode, os.path.join(out, "reference.ckpt"), os.path.join(out, "reference.pt"), -1) == 0
    for kill_at in kill_points:
        checkpoint = os.path.join(out, f"kill{kill_at}.ckpt")
        status = in_child(train, mode, checkpoint, os.path.join(out, "unused.pt"), kill_at)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
        assert in_child(train, mode, checkpoint, os.path.join(out, f"kill{kill_at}.pt"), -1) == 0


if __name__ == "__main__":
    main()
