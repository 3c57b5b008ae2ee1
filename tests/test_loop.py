"""The passes and the training step (torchbearer/loop.py): hook order, closures, models without modes."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial, callbacks
from torchbearer.bases import base_closure
from torchbearer.loop import training_step

TRAINING_ORDER = ["on_sample", "on_forward", "on_criterion", "on_backward", "on_step_training"]


class Recorder(torchbearer.Callback):
    """Records every batch hook, and the optimizer's step, in order."""

    def __init__(self, order):
        self.order = order

    def __getattribute__(self, name):
        if name in TRAINING_ORDER:
            return lambda state: object.__getattribute__(self, "order").append(name)
        return object.__getattribute__(self, name)


for _hook in TRAINING_ORDER:  # the callback list calls only the hooks a class overrides
    setattr(Recorder, _hook, lambda self, state: None)


def test_a_training_step_runs_every_hook_in_order_with_the_optimizer_step_after_on_backward():
    order = []
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.register_step_post_hook(lambda *args: order.append("step"))
    trial = Trial(model, optimizer, nn.MSELoss(), callbacks=[Recorder(order)], verbose=0)
    trial.with_train_data(torch.randn(4, 2), torch.randn(4, 1), batch_size=4).run(1)
    assert order == ["on_sample", "on_forward", "on_criterion", "on_backward", "step", "on_step_training"]


def test_training_step_is_the_whole_batch_for_a_hand_built_state():
    model = nn.Linear(2, 1)
    trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.MSELoss(), metrics=["loss"], verbose=0)
    x, y = torch.randn(4, 2), torch.randn(4, 1)
    state = torchbearer.state.RunState(trial.state)
    state.update(
        {
            torchbearer.BATCH: 0,
            torchbearer.STEPS: 1,
            torchbearer.SAMPLER: lambda s: s.update({torchbearer.X: x, torchbearer.Y_TRUE: y}),
        }
    )  # noqa: E501
    before = model.weight.detach().clone()
    training_step(state, trial.closure)
    assert not torch.equal(before, model.weight)
    assert float(state[torchbearer.METRICS]["running_loss"]) == pytest.approx(state[torchbearer.LOSS].item())


def test_a_plain_function_is_a_model_for_run_evaluate_and_predict():
    weight = torch.zeros(2, 1, requires_grad=True)

    def model(x):
        return x @ weight

    x = torch.randn(16, 2)
    y = x @ torch.tensor([[1.0], [-2.0]])
    trial = Trial(model, torch.optim.SGD([weight], lr=0.1), nn.MSELoss(), metrics=["loss"], verbose=0)
    trial.with_train_data(x, y, batch_size=4).with_val_data(x, y, batch_size=8).with_test_data(x, batch_size=8)
    history = trial.run(2)
    assert history[1]["loss"] < history[0]["loss"]
    assert "val_loss" in trial.evaluate() and trial.predict().shape == (16, 1)


def test_two_closures_over_other_keys_run_as_in_the_0_5_gan_example():
    """0.5's two-optimiser GAN: the discriminator's closure names a target key that is never in the state,
    and its criterion takes the state alone."""
    disc_model, disc_opt, disc_crit = (torchbearer.state_key(name) for name in ("disc_model", "disc_opt", "disc_crit"))
    disc_imgs, gen_opt = torchbearer.state_key("disc_imgs"), torchbearer.state_key("gen_opt")
    generator, discriminator = nn.Linear(3, 2), nn.Linear(2, 1)
    real = torch.randn(8, 2)

    def gen_crit(state):
        return -discriminator(state[torchbearer.Y_PRED]).mean()

    def disc_crit_fn(state):
        fake = discriminator(state[torchbearer.Y_PRED].detach()).mean()
        return fake - discriminator(real).mean()

    closure_gen = base_closure(torchbearer.X, torchbearer.MODEL, torchbearer.Y_PRED, torchbearer.Y_TRUE,
                               torchbearer.CRITERION, torchbearer.LOSS, gen_opt)  # fmt: skip
    closure_disc = base_closure(torchbearer.Y_PRED, disc_model, None, disc_imgs, disc_crit, torchbearer.LOSS, disc_opt)

    def closure(state):
        closure_gen(state)
        state[gen_opt].step()
        closure_disc(state)
        state[disc_opt].step()

    trial = Trial(generator, None, criterion=gen_crit, verbose=0)
    trial.state.update({disc_model: discriminator, disc_opt: torch.optim.SGD(discriminator.parameters(), lr=0.1),
                        gen_opt: torch.optim.SGD(generator.parameters(), lr=0.1), disc_crit: disc_crit_fn})  # fmt: skip
    before = discriminator.weight.detach().clone()
    trial.with_train_data(torch.randn(8, 3), torch.zeros(8), batch_size=4).with_closure(closure).run(1)
    assert not torch.equal(before, discriminator.weight)


def test_accumulated_batches_step_the_optimizer_once_per_group():
    steps = []
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.register_step_pre_hook(lambda *args: steps.append(1))
    trial = Trial(model, optimizer, nn.MSELoss(), verbose=0).with_accumulation(3)
    trial.with_train_data(torch.randn(28, 2), torch.randn(28, 1), batch_size=4).run(1)  # 7 batches: 3 + 3 + 1
    assert len(steps) == 3


def test_a_stop_set_during_a_batch_ends_the_pass_after_that_batch():
    seen = []

    @callbacks.on_step_training
    def stop_at_second(state):
        seen.append(state[torchbearer.BATCH])
        if state[torchbearer.BATCH] == 1:
            state[torchbearer.STOP_TRAINING] = True

    trial = Trial(nn.Linear(2, 1), None, nn.MSELoss(), callbacks=[stop_at_second], verbose=0)
    trial.with_train_data(torch.randn(16, 2), torch.randn(16, 1), batch_size=4).run(1)
    assert seen == [0, 1]


def test_pytorch_optimizers_step_after_the_closure_exactly_as_step_with_the_closure():
    """The shortcut for PyTorch's own optimizers (closure, then step) trains as ``optimizer.step(closure)`` does,
    which a subclass of SGD still gets."""
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    weights = []
    for optimizer_class in (torch.optim.SGD, type("SGDSubclass", (torch.optim.SGD,), {})):
        torch.manual_seed(0)
        model = nn.Linear(4, 1)
        optimizer = optimizer_class(model.parameters(), lr=0.05, momentum=0.9)
        Trial(model, optimizer, nn.MSELoss(), verbose=0).with_train_data(x, y, batch_size=8, shuffle=False).run(3)
        weights.append(model.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_lbfgs_gets_the_closure_and_may_evaluate_it_again():
    x = torch.randn(32, 2)
    y = x @ torch.tensor([[2.0], [-1.0]])
    model = nn.Linear(2, 1)
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.5, max_iter=5)
    history = (
        Trial(model, optimizer, nn.MSELoss(), metrics=["loss"], verbose=0).with_train_data(x, y, batch_size=32).run(3)
    )
    assert history[-1]["loss"] < history[0]["loss"] / 10
