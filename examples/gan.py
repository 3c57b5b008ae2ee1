"""A GAN in a few lines: the torchbearer paper's listings 3-5, on scikit-learn's 8x8 digits.

The whole adversarial game lives in two places:

* the model's ``forward(real_imgs, state)`` (listing 3) generates images and runs the
  discriminator on them, storing every intermediate tensor in the state under its own key;
* one ``add_to_loss`` callback (listing 4) computes the generator and discriminator losses from
  those tensors and adds them to the (zero) base loss.

Training is then two lines (listing 5): ``Trial(..., pass_state=True)`` and ``run``. One optimizer
updates both networks: the ``detach()`` in the forward pass keeps the discriminator's loss from
reaching the generator, and freezing the discriminator while it scores the generated images keeps
the generator's loss from training it (the one change from the printed listing, see the comment).

Writes ``samples.png`` (a grid of generated digits) and ``losses.png`` under ``runs/gan/``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from common import digits, epoch_axis, new_figure, parse_args, save, show_images
from matplotlib.figure import Figure
from torch.utils.data import DataLoader, TensorDataset

import torchbearer
from torchbearer import Trial, callbacks, metrics

batch_size, latent_dim, img_shape = 64, 32, (1, 8, 8)
adversarial_loss = nn.BCELoss()
valid = torch.ones(batch_size, 1)  # the discriminator's target for real images
fake = torch.zeros(batch_size, 1)  # ... and for generated ones

# State keys: collision-free names for the values that the model and the loss exchange through state.
GEN_IMGS = torchbearer.state_key("gen_imgs")
DISC_GEN = torchbearer.state_key("disc_gen")
DISC_GEN_DET = torchbearer.state_key("disc_gen_det")
DISC_REAL = torchbearer.state_key("disc_real")
G_LOSS = torchbearer.state_key("g_loss")
D_LOSS = torchbearer.state_key("d_loss")

generator = nn.Sequential(
    nn.Linear(latent_dim, 128), nn.LeakyReLU(0.2),
    nn.Linear(128, int(np.prod(img_shape))), nn.Sigmoid(),
)  # fmt: skip
discriminator = nn.Sequential(
    nn.Flatten(), nn.Linear(int(np.prod(img_shape)), 128), nn.LeakyReLU(0.2),
    nn.Linear(128, 1), nn.Sigmoid(),
)  # fmt: skip


# Listing 3: the forward pass stores intermediate tensors in state and returns nothing.
class GAN(nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, real_imgs, state):
        z = torch.randn(real_imgs.size(0), latent_dim, device=real_imgs.device)
        state[GEN_IMGS] = self.generator(z).view(-1, *img_shape)
        # The generator's loss flows through this call only to the generator: the discriminator's
        # weights are frozen while it runs. (The printed listing calls `self.discriminator.zero_grad()`
        # after it instead, which clears nothing, since backward has not run yet.)
        self.discriminator.requires_grad_(False)
        state[DISC_GEN] = self.discriminator(state[GEN_IMGS])
        self.discriminator.requires_grad_(True)
        state[DISC_GEN_DET] = self.discriminator(state[GEN_IMGS].detach())  # no gradient to the generator
        state[DISC_REAL] = self.discriminator(real_imgs)


# Listing 4: no criterion is given, so the base loss is zero; this callback adds both losses to it.
@callbacks.add_to_loss
def gan_loss(state):
    fake_loss = adversarial_loss(state[DISC_GEN_DET], fake)
    real_loss = adversarial_loss(state[DISC_REAL], valid)
    state[G_LOSS] = adversarial_loss(state[DISC_GEN], valid)
    state[D_LOSS] = (real_loss + fake_loss) / 2
    return state[G_LOSS] + state[D_LOSS]


def plot_losses(history: list) -> Figure:
    """The generator's and the discriminator's mean loss per epoch."""
    figure, (axes,) = new_figure()
    epochs = range(len(history))
    axes.plot(epochs, [record["g_loss"] for record in history], label="generator")
    axes.plot(epochs, [record["d_loss"] for record in history], label="discriminator")
    epoch_axis(axes)
    axes.set_ylabel("loss")
    axes.legend()
    return figure


def main() -> None:
    args = parse_args(__doc__, "gan")
    images, labels = digits()
    # drop_last: the fixed-size `valid`/`fake` targets above need full batches.
    dataloader = DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer = torch.optim.Adam(
        list(generator.parameters()) + list(discriminator.parameters()), lr=2e-3, betas=(0.5, 0.999)
    )

    # Listing 5: training in two lines. `metrics.mean(KEY)` averages a state key over each epoch.
    trial = Trial(
        GAN(), optimizer, metrics=["loss", metrics.mean(G_LOSS), metrics.mean(D_LOSS)], callbacks=[gan_loss],
        pass_state=True, verbose=0 if args.fast else 1,
    )  # fmt: skip
    history = trial.with_train_generator(dataloader).run(epochs=3 if args.fast else 300)

    final = history[-1]
    print(f"epochs: {len(history)}  g_loss={final['g_loss']:.4f}  d_loss={final['d_loss']:.4f}")

    # Sample from the trained generator: the same module the Trial trained, used directly.
    generator.eval()
    with torch.no_grad():
        samples = generator(torch.randn(64, latent_dim)).view(-1, *img_shape)
    figure, (axes,) = new_figure(size=(5, 5))
    show_images(axes, samples, "generated digits")
    save(figure, args.out / "samples.png")

    save(plot_losses(history), args.out / "losses.png")


if __name__ == "__main__":
    main()
