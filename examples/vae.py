"""A variational autoencoder on scikit-learn's 8x8 digits, with the KL term as a callback.

The encoder's mean and log-variance are not part of the model's output: the forward pass puts
them in the state under keys made with ``torchbearer.state_key``, and an ``add_to_loss`` callback
reads them to add the KL divergence to the reconstruction loss. The same key, wrapped in
``metrics.mean``, reports the average KL per epoch (``kl``, ``val_kl``) next to the loss.

Writes ``reconstructions.png`` (validation digits above their reconstructions) and
``samples.png`` (decoded draws from the prior) under ``runs/vae/``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from common import digits, new_figure, parse_args, save, show_images
from torch import nn

import torchbearer
from torchbearer import Trial, callbacks, metrics
from torchbearer.cv_utils import train_valid_splitter

LATENT = 4
MU = torchbearer.state_key("mu")
LOGVAR = torchbearer.state_key("logvar")
KL = torchbearer.state_key("kl")


class VAE(nn.Module):
    """Encode a 64-pixel digit to a Gaussian over 4 latent numbers; decode a sample back to pixels."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 2 * LATENT))
        self.decoder = nn.Sequential(nn.Linear(LATENT, 128), nn.ReLU(), nn.Linear(128, 64), nn.Sigmoid())

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(-1, 1, 8, 8)

    def forward(self, x: torch.Tensor, state: dict) -> torch.Tensor:
        # Taking `state` makes the Trial pass it in; the KL callback reads what we leave there.
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        state[MU], state[LOGVAR] = mu, logvar
        if self.training:  # the reparameterisation trick: sample, keeping the gradient to mu and logvar
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        else:  # evaluation reconstructs from the mean
            z = mu
        return self.decode(z)


def reconstruction_loss(y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy summed over the pixels of each image, averaged over the batch."""
    return F.binary_cross_entropy(y_pred, y_true, reduction="sum") / y_true.size(0)


@callbacks.add_to_loss
def kl_divergence(state: dict) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, averaged over the batch; kept in the state for the metric."""
    mu, logvar = state[MU], state[LOGVAR]
    state[KL] = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / mu.size(0)
    return state[KL]


def main() -> None:
    args = parse_args(__doc__, "vae")
    images, _ = digits(limit=400 if args.fast else None)
    x_train, _, x_val, _ = train_valid_splitter(images, images, 0.2)

    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    trial = Trial(
        model, optimizer, reconstruction_loss, metrics=["loss", metrics.mean(KL)], callbacks=[kl_divergence],
        verbose=0 if args.fast else 1,
    )  # fmt: skip
    # An autoencoder's target is its input: pass the images as both x and y.
    trial.with_train_data(x_train, x_train, batch_size=64, num_workers=0)
    trial.with_val_data(x_val, x_val, batch_size=256, num_workers=0)
    history = trial.run(epochs=2 if args.fast else 100)

    final = history[-1]
    print(f"loss={final['loss']:.3f} kl={final['kl']:.3f} ", end="")
    print(f"val_loss={final['val_loss']:.3f} val_kl={final['val_kl']:.3f}")

    model.eval()
    with torch.no_grad():
        originals = x_val[:16]
        reconstructed = model(originals, state={})
        samples = model.decode(torch.randn(64, LATENT))
    figure, (axes,) = new_figure(size=(5, 2.6))
    show_images(axes, torch.cat([originals, reconstructed]), "validation digits (top) and reconstructions")
    save(figure, args.out / "reconstructions.png")
    figure, (axes,) = new_figure(size=(5, 5))
    show_images(axes, samples, "decoded samples from the prior")
    save(figure, args.out / "samples.png")


if __name__ == "__main__":
    main()
