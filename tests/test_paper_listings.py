"""The paper's five listings (spec/README.md), run as a user types them."""

import numpy as np
import torch
import torch.nn as nn

import torchbearer
from torchbearer import Metric, Trial, callbacks, metrics


def test_listing_1_decorated_weight_decay_callback():
    @callbacks.on_criterion
    def l2_weight_decay(state):
        for W in state[torchbearer.MODEL].parameters():
            state[torchbearer.LOSS] += W.norm(2)

    model = torch.nn.Linear(10, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    trial = Trial(model, optimizer, torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"], callbacks=[l2_weight_decay])
    trial.with_train_data(torch.rand(100, 10), torch.randint(0, 2, (100,)), batch_size=10)
    history = trial.run(epochs=2, verbose=0)
    assert len(history) == 2
    assert list(history[0]) == ["running_acc", "running_loss", "acc", "loss", "train_steps", "validation_steps"]


def test_listing_2_metric_decorators(monkeypatch):
    registry = metrics.metrics._DEFAULTS
    monkeypatch.setitem(registry, "acc", registry["acc"])  # the listing re-registers 'acc': undone after the test

    @metrics.default_for_key("acc")
    @metrics.running_mean
    @metrics.std
    class CategoricalAccuracy(Metric):
        def __init__(self):
            super().__init__("acc")

        def process(self, state):
            y_pred, y_true = state[torchbearer.Y_PRED], state[torchbearer.Y_TRUE]
            return (y_pred.argmax(dim=1) == y_true).float()

    model = torch.nn.Linear(4, 3)
    trial = Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"]
    )
    trial.with_train_data(torch.rand(32, 4), torch.randint(0, 3, (32,)), batch_size=8)
    trial.with_val_data(torch.rand(32, 4), torch.randint(0, 3, (32,)), batch_size=8)
    history = trial.run(epochs=1, verbose=0)
    assert list(history[0]) == [
        "running_acc", "running_loss", "acc_std", "loss", "val_acc_std", "val_loss", "train_steps", "validation_steps",
    ]  # fmt: skip


def test_listings_3_to_5_gan():
    batch_size, latent_dim, img_shape = 16, 100, (1, 28, 28)
    adversarial_loss = nn.BCELoss()
    valid = torch.ones(batch_size, 1)
    fake = torch.zeros(batch_size, 1)

    GEN_IMGS = torchbearer.state_key("gen_imgs")
    DISC_GEN = torchbearer.state_key("disc_gen")
    DISC_GEN_DET = torchbearer.state_key("disc_gen_det")
    DISC_REAL = torchbearer.state_key("disc_real")
    G_LOSS = torchbearer.state_key("g_loss")
    D_LOSS = torchbearer.state_key("d_loss")

    generator = nn.Sequential(
        nn.Linear(latent_dim, 256), nn.LeakyReLU(0.2), nn.Linear(256, int(np.prod(img_shape))), nn.Sigmoid()
    )
    discriminator = nn.Sequential(
        nn.Flatten(), nn.Linear(int(np.prod(img_shape)), 256), nn.LeakyReLU(0.2), nn.Linear(256, 1), nn.Sigmoid()
    )

    class GAN(nn.Module):
        def __init__(self):
            super().__init__()
            self.generator = generator
            self.discriminator = discriminator

        def forward(self, real_imgs, state):
            z = torch.randn(real_imgs.size(0), latent_dim, device=real_imgs.device)
            state[GEN_IMGS] = self.generator(z).view(-1, *img_shape)
            state[DISC_GEN] = self.discriminator(state[GEN_IMGS])
            self.discriminator.zero_grad()
            state[DISC_GEN_DET] = self.discriminator(state[GEN_IMGS].detach())
            state[DISC_REAL] = self.discriminator(real_imgs)

    @callbacks.add_to_loss
    def gan_loss(state):
        fake_loss = adversarial_loss(state[DISC_GEN_DET], fake)
        real_loss = adversarial_loss(state[DISC_REAL], valid)
        state[G_LOSS] = adversarial_loss(state[DISC_GEN], valid)
        state[D_LOSS] = (real_loss + fake_loss) / 2
        return state[G_LOSS] + state[D_LOSS]

    optimizer = torch.optim.Adam(
        list(generator.parameters()) + list(discriminator.parameters()), lr=2e-4, betas=(0.5, 0.999)
    )
    dataset = torch.utils.data.TensorDataset(torch.rand(64, *img_shape), torch.zeros(64))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)

    trial = Trial(
        GAN(),
        optimizer,
        metrics=["loss", metrics.mean(G_LOSS), metrics.mean(D_LOSS)],
        callbacks=[gan_loss],
        pass_state=True,
    )
    history = trial.with_train_generator(dataloader).run(epochs=2, verbose=0)
    assert len(history) == 2
    assert {"running_loss", "loss", "g_loss", "d_loss"} <= set(history[0])
    assert history[0]["loss"] > 0
