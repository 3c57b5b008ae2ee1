"""Shared fixtures: tiny real models and data sets that train in milliseconds."""

import pytest
import torch

import torchbearer

torch.set_num_threads(1)  # tiny models: threads only contend on a 2-core machine


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def classification_data():
    """40 samples of 4 features, 3 classes, learnable (class = argmax of the first 3 features)."""
    x = torch.randn(40, 4)
    y = x[:, :3].argmax(dim=1)
    return x, y


@pytest.fixture
def linear_trial(classification_data):
    """A Trial of Linear(4, 3) with SGD, cross-entropy, acc and loss, on train and validation data."""
    x, y = classification_data
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=10, num_workers=0)
    trial.with_val_data(x, y, batch_size=10, num_workers=0)
    return trial
