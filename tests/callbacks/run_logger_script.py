"""A plain Trial with an MLflowLogger and a WandbLogger, which ``test_run_logger.py`` runs under ``torchrun``.

Usage: ``python -m torch.distributed.run --nproc-per-node=2 run_logger_script.py MLFLOW_URI WANDB_DIR``.
Each rank prints one JSON line: its rank and the run ids its two loggers hold after training.
"""

from __future__ import annotations

import json
import sys

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from torchbearer import Trial, distributed
from torchbearer.callbacks import MLflowLogger, WandbLogger


def main() -> None:
    mlflow_uri, wandb_dir = sys.argv[1], sys.argv[2]
    torch.manual_seed(0)
    x = torch.randn(32, 4)
    data = TensorDataset(x, x[:, :3].argmax(1))
    model = nn.Linear(4, 3)
    loggers = [
        MLflowLogger(mlflow_uri, experiment_name="torchrun", log_history_plot=False),
        WandbLogger(project="torchrun", dir=wandb_dir, mode="offline", log_history_plot=False),
    ]
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), ["loss"], loggers, 0)
    trial.with_generators(DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    trial.run(2)
    print(json.dumps({"rank": distributed.get_rank(), "run_ids": [logger.run_id for logger in loggers]}))


if __name__ == "__main__":
    main()
