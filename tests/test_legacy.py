"""A checkpoint pickled by torchbearer 0.5 (StateKey objects as keys, classes in the callback list) loads."""

import copyreg

import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import EarlyStopping
from torchbearer.legacy import load_0_5_checkpoint


class _OldKey:
    """Pickles like a 0.5 StateKey: a ``torchbearer.state.StateKey`` made without arguments, then its ``__dict__``."""

    def __init__(self, text):
        self.text = text

    def __reduce_ex__(self, protocol):
        return copyreg._reconstructor, (torchbearer.state.StateKey, object, None), {"key": self.text, "name": self.text}


def _write_0_5_checkpoint(path, model):
    checkpoint = {
        _OldKey("torchbearer_version"): "0.5.5",
        _OldKey("model"): model.state_dict(),
        _OldKey("optimizer"): torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
        _OldKey("history"): [{"loss": 1.0, "train_steps": 4, "validation_steps": None}],
        _OldKey("callback_list"): {"callback_states": [{"wait": 2, "best": 0.5}], "callback_types": [EarlyStopping]},
    }
    torch.save(checkpoint, path)


def test_0_5_checkpoint_loads_into_a_trial_and_resaves_safely(tmp_path):
    old_model = nn.Linear(3, 2)
    path = tmp_path / "old.pt"
    _write_0_5_checkpoint(path, old_model)
    loaded = load_0_5_checkpoint(str(path))
    assert set(loaded) == {"torchbearer_version", "model", "optimizer", "history", "callback_list"}
    assert loaded["callback_list"]["callback_types"] == ["torchbearer.callbacks.early_stopping.EarlyStopping"]

    model = nn.Linear(3, 2)
    stopper = EarlyStopping()
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), callbacks=[stopper])
    trial.load_state_dict(loaded, resume=True)
    assert torch.equal(model.weight, old_model.weight)
    assert stopper.wait == 2 and len(trial.state[torchbearer.HISTORY]) == 1

    resaved = tmp_path / "new.pt"
    torch.save(trial.state_dict(), resaved)
    assert torch.equal(torch.load(resaved)["model"]["weight"], old_model.weight)
