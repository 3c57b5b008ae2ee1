"""A linear support vector machine trained by gradient descent on the hinge loss.

Two Gaussian blobs from scikit-learn, labelled -1 and +1. The model is one linear layer; the
hinge loss ``mean(max(0, 1 - y * f(x)))`` is the criterion, the margin-widening weight penalty is
the ``L2WeightDecay`` callback (restricted to the weight, not the bias), and accuracy for +/-1
labels is a metric built with the metric decorators. A ``StepLR`` callback lowers the learning
rate as training settles.

Writes ``decision_boundary.png`` (the data, the learned boundary and the two margins) under
``runs/svm/``.
"""

from __future__ import annotations

import numpy as np
import torch
from common import new_figure, parse_args, save
from sklearn.datasets import make_blobs
from torch import nn

from torchbearer import Trial, callbacks, metrics


def hinge_loss(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """The soft-margin SVM loss for labels in {-1, +1}."""
    return torch.clamp(1 - y_pred.squeeze(1) * y_true, min=0).mean()


# A metric from a plain function: the decorators add a running mean (per batch) and an epoch mean,
# and `default_for_key` lets the Trial accept it by name, like the built-in 'acc'.
@metrics.default_for_key("svm_acc")
@metrics.running_mean
@metrics.mean
@metrics.lambda_metric("svm_acc")
def svm_accuracy(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """1 where the sign of the score matches the +/-1 label, per sample."""
    return (torch.sign(y_pred.squeeze(1)) == y_true).float()


def blobs(samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two standardised, slightly overlapping blobs with labels -1 and +1."""
    points, labels = make_blobs(n_samples=samples, centers=2, cluster_std=1.6, random_state=1)
    points = (points - points.mean(axis=0)) / points.std(axis=0)
    return torch.tensor(points, dtype=torch.float32), torch.tensor(labels * 2 - 1, dtype=torch.float32)


def plot_boundary(svm: nn.Linear, points: torch.Tensor, labels: torch.Tensor, path) -> None:
    figure, (axes,) = new_figure(size=(6, 5))
    grid_x, grid_y = np.meshgrid(np.linspace(-3, 3, 200), np.linspace(-3, 3, 200))
    grid = torch.tensor(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1), dtype=torch.float32)
    with torch.no_grad():
        scores = svm(grid).view(grid_x.shape).numpy()
    axes.contourf(grid_x, grid_y, np.sign(scores), levels=[-2, 0, 2], colors=["#c6dbef", "#f4c7c3"], alpha=0.6)
    axes.contour(grid_x, grid_y, scores, levels=[-1, 0, 1], colors="k", linestyles=["--", "-", "--"])
    axes.scatter(points[:, 0], points[:, 1], c=labels, cmap="coolwarm", s=10, edgecolors="none")
    axes.set_title("decision boundary (solid) and margins (dashed)")
    save(figure, path)


def main() -> None:
    args = parse_args(__doc__, "svm")
    points, labels = blobs(200 if args.fast else 1000)

    svm = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(svm.parameters(), lr=0.1)
    trial = Trial(
        svm, optimizer, hinge_loss, metrics=["svm_acc", "loss"],
        callbacks=[callbacks.L2WeightDecay(0.01, params=[svm.weight]), callbacks.StepLR(step_size=10)],
        verbose=0 if args.fast else 1,
    )  # fmt: skip
    trial.with_train_data(points, labels, batch_size=32, num_workers=0)
    history = trial.run(epochs=2 if args.fast else 30)

    weight, bias = svm.weight.detach()[0].tolist(), svm.bias.item()
    print(f"svm_acc={history[-1]['svm_acc']:.4f} loss={history[-1]['loss']:.4f}")
    print(f"boundary: {weight[0]:.3f} * x0 + {weight[1]:.3f} * x1 + {bias:.3f} = 0")
    plot_boundary(svm, points, labels, args.out / "decision_boundary.png")


if __name__ == "__main__":
    main()
