"""Optimising functions, not data sets: a Trial with no data, and a counter-example for Adam.

Part 1 minimises the Rosenbrock function. The "model" just holds the point being optimised and
returns it; the criterion is the function to minimise, written as ``f(state)``; and
``for_train_steps(N)`` runs N optimizer steps per epoch without any data loader.

Part 2 rebuilds the synthetic problem from "On the Convergence of Adam and Beyond" (Reddi et al.,
2018), where Adam provably goes the wrong way. On x in [-1, 1], the loss at step t is
``1010 * x`` once every 101 steps and ``-10 * x`` otherwise (``--stochastic``: ``1010 * x`` with
probability 0.01). The average slope is positive, so the best x is -1, but Adam's second-moment
average forgets the rare large gradient quickly and the frequent small ones push x to +1.
AMSGrad (``amsgrad=True``) keeps the largest second moment seen and heads to -1. A callback
projects x back into [-1, 1] after every step.

Writes ``rosenbrock.png`` and ``adam_vs_amsgrad.png`` under ``runs/function_optimisation/``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import new_figure, parse_args, save
from torch import nn

import torchbearer
from torchbearer import Callback, Trial, callbacks


class Point(nn.Module):
    """A 'model' with no input: its only parameter is the point being optimised."""

    def __init__(self, start: float | list[float]) -> None:
        super().__init__()
        self.point = nn.Parameter(torch.tensor(start))

    def forward(self, _: None) -> torch.Tensor:  # with no data the Trial passes None as the input
        return self.point


class Trajectory(Callback):
    """Record the model's point every ``every`` steps, kept as tensors so recording costs no sync."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.points: list[torch.Tensor] = []

    @callbacks.only_if(lambda self, state: state[torchbearer.BATCH] % self.every == 0)
    def on_step_training(self, state: dict) -> None:
        self.points.append(state[torchbearer.MODEL].point.detach().clone())

    def numpy(self) -> np.ndarray:
        return torch.stack(self.points).numpy()


def rosenbrock(state: dict) -> torch.Tensor:
    """(1 - x)^2 + 100 (y - x^2)^2: a long curved valley with its minimum at (1, 1)."""
    x, y = state[torchbearer.Y_PRED]
    return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def minimise_rosenbrock(steps: int, out) -> None:
    model = Point([-1.5, 2.0])
    trajectory = Trajectory(every=10)
    trial = Trial(model, torch.optim.Adam(model.parameters(), lr=0.02), rosenbrock, callbacks=[trajectory], verbose=0)
    trial.for_train_steps(steps).run(epochs=1)
    x, y = model.point.tolist()
    print(f"rosenbrock: after {steps} steps the point is ({x:.4f}, {y:.4f}); the minimum is at (1, 1)")

    figure, (axes,) = new_figure(size=(6, 5))
    grid_x, grid_y = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    heights = (1 - grid_x) ** 2 + 100 * (grid_y - grid_x**2) ** 2
    axes.contour(grid_x, grid_y, np.log10(heights + 1e-3), levels=20, cmap="viridis")
    path = trajectory.numpy()
    axes.plot(path[:, 0], path[:, 1], "r.-", markersize=2, label="Adam, lr=0.02")
    axes.plot([1], [1], "k*", markersize=12, label="minimum")
    axes.set_title("minimising the Rosenbrock function")
    axes.legend()
    save(figure, out / "rosenbrock.png")


def online_loss(stochastic: bool):
    """The loss at each step of Reddi et al.'s problem, as a criterion of the state."""

    def loss(state: dict) -> torch.Tensor:
        x = state[torchbearer.Y_PRED]
        if stochastic:  # drawn on the model's device: no host-device sync
            rare = torch.rand((), device=x.device) < 0.01
            return torch.where(rare, 1010 * x, -10 * x)
        return 1010 * x if state[torchbearer.BATCH] % 101 == 0 else -10 * x  # BATCH is a Python int

    return loss


@callbacks.on_step_training
def project(state: dict) -> None:
    """Keep x in the feasible set [-1, 1] after every optimizer step."""
    with torch.no_grad():
        state[torchbearer.MODEL].point.clamp_(-1, 1)


def adam_vs_amsgrad(steps: int, stochastic: bool, out) -> None:
    figure, (axes,) = new_figure(size=(7, 4))
    for amsgrad in (False, True):
        model = Point(0.0)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.1, betas=(0.9, 0.99), amsgrad=amsgrad)
        trajectory = Trajectory(every=max(1, steps // 2000))
        # The order matters: project first, then record the projected point.
        trial = Trial(model, optimizer, online_loss(stochastic), callbacks=[project, trajectory], verbose=0)
        trial.for_train_steps(steps).run(epochs=1)
        name = "AMSGrad" if amsgrad else "Adam"
        print(f"{name}: final x = {model.point.item():+.4f} (optimum -1)")
        axes.plot(np.arange(len(trajectory.points)) * trajectory.every, trajectory.numpy(), label=name)
    axes.axhline(-1, color="k", linestyle=":", label="optimum")
    axes.set_xlabel("step")
    axes.set_ylabel("x")
    axes.set_ylim(-1.05, 1.05)
    axes.set_title(f"{'stochastic' if stochastic else 'online'} problem of Reddi et al. (2018)")
    axes.legend()
    save(figure, out / "adam_vs_amsgrad.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stochastic", action="store_true", help="the random version of the problem (slower)")
    args = parse_args(__doc__, "function_optimisation", parser)
    minimise_rosenbrock(200 if args.fast else 3000, args.out)
    adam_vs_amsgrad(505 if args.fast else 20000, args.stochastic, args.out)


if __name__ == "__main__":
    main()
