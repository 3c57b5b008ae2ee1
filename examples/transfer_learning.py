"""Transfer learning: a torchvision ResNet-18 with a new head, body frozen, head retrained.

The recipe: take a network trained on a big data set, replace its last layer by one for your
classes, freeze everything else, and train only the new layer. Three details matter:

* the optimizer gets only the head's parameters (and the body's have ``requires_grad=False``, so
  no gradient is even computed for them);
* batch norm layers update their running statistics in training mode even when frozen, and the
  Trial puts the whole model in training mode at each training pass: a small callback at
  ``on_start_training`` puts the body back in evaluation mode;
* inputs must look like what the body was trained on: here 8x8 grey digits become 32x32
  three-channel images.

This example builds ResNet-18 with ``weights=None`` (random weights, nothing downloaded), so its
features are random projections and the accuracy shows the mechanics, not the benefit. Where a
network is available, use the ImageNet weights and their preprocessing instead::

    from torchvision.models import ResNet18_Weights, resnet18
    weights = ResNet18_Weights.DEFAULT
    model = resnet18(weights=weights)          # downloads once, then cached
    preprocess = weights.transforms()          # resize, crop, normalise as in training

Prints the accuracy and writes ``history.png`` under ``runs/transfer_learning/``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import digits, parse_args
from torch import nn
from torchvision.models import resnet18

from torchbearer import Trial, callbacks
from torchbearer.cv_utils import train_valid_splitter
from torchbearer.plotting import plot_history


def as_rgb_32(images: torch.Tensor) -> torch.Tensor:
    """[N, 1, 8, 8] digits -> [N, 3, 32, 32], the smallest size ResNet's five downsamplings handle well."""
    return F.interpolate(images, size=32, mode="bilinear", align_corners=False).expand(-1, 3, -1, -1).contiguous()


def frozen_resnet(classes: int) -> nn.Module:
    model = resnet18(weights=None)  # ResNet18_Weights.DEFAULT for pretrained weights (needs a download)
    model.requires_grad_(False)  # freeze the body...
    model.fc = nn.Linear(model.fc.in_features, classes)  # ...then the new head, trainable by default
    return model


def main() -> None:
    args = parse_args(__doc__, "transfer_learning")
    images, labels = digits(limit=300 if args.fast else None)
    x_train, y_train, x_val, y_val = train_valid_splitter(as_rgb_32(images), labels, 0.2)

    model = frozen_resnet(classes=10)

    @callbacks.on_start_training
    def keep_body_in_eval_mode(state: dict) -> None:
        model.eval()  # frozen batch norm keeps its statistics...
        model.fc.train()  # ...and only the head trains (a Linear has no mode-dependent behaviour, but be explicit)

    trainable = sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
    total = sum(parameter.numel() for parameter in model.parameters())
    print(f"training {trainable:,} of {total:,} parameters (the head)")

    trial = Trial(
        model, torch.optim.Adam(model.fc.parameters(), lr=1e-2), nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=[keep_body_in_eval_mode], verbose=0 if args.fast else 1,
    )  # fmt: skip
    trial.with_train_data(x_train, y_train, batch_size=64, num_workers=0)
    trial.with_val_data(x_val, y_val, batch_size=256, num_workers=0)
    history = trial.run(epochs=1 if args.fast else 10)

    final = history[-1]
    print(f"acc={final['acc']:.4f} val_acc={final['val_acc']:.4f} (random body features; pretrained ones do better)")
    print(f"wrote {plot_history(history, str(args.out / 'history.png'), metrics=['loss', 'acc'])}")


if __name__ == "__main__":
    main()
