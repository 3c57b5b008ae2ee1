import pytest
import torch

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.bases import HOOKS
from torchbearer.callbacks import CallbackList, decorators
from torchbearer.callbacks.decorators import (
    LambdaCallback,
    add_to_loss,
    bind_to,
    count_args,
    on_criterion,
    on_end,
    on_end_epoch,
    on_forward,
    on_forward_validation,
    on_start,
    on_step_training,
    once,
    once_per_epoch,
    only_if,
)


def test_every_hook_has_a_module_level_decorator_named_and_documented_after_it():
    for hook in HOOKS:
        decorator = getattr(decorators, hook)
        assert decorator.__name__ == hook
        assert decorator.__module__ == "torchbearer.callbacks.decorators"
        assert hook in decorator.__doc__
        assert hook in decorators.__all__


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_decorator_binds_its_hook_and_passes_the_return_value(hook):
    callback = getattr(decorators, hook)(lambda state: ("seen", state["x"]))

    assert isinstance(callback, LambdaCallback)
    assert getattr(callback, hook)({"x": 3}) == ("seen", 3)


def test_hook_decorator_leaves_other_hooks_as_no_ops():
    calls = []
    callback = on_start(lambda state: calls.append("start"))

    callbacks = CallbackList([callback])
    callbacks.on_end({})
    callbacks.on_step_training({})
    callbacks.on_start({})

    assert calls == ["start"]
    assert callback.on_end({}) is None


def test_stacked_hook_decorators_bind_several_hooks_on_one_callback():
    seen = []

    @on_forward
    @on_forward_validation
    def log(state):
        seen.append(state[torchbearer.EPOCH])

    assert isinstance(log, LambdaCallback)
    callbacks = CallbackList([log])
    callbacks.on_forward({torchbearer.EPOCH: 0})
    callbacks.on_forward_validation({torchbearer.EPOCH: 1})
    callbacks.on_criterion({torchbearer.EPOCH: 2})

    assert seen == [0, 1]


def test_bind_to_accepts_the_hook_method_or_its_name_and_reuses_a_lambda_callback():
    callback = bind_to(Callback.on_start)(lambda state: "ran")
    same = bind_to("on_end")(callback)

    assert same is callback
    assert callback.on_start({}) == "ran"
    assert callback.on_end({}) == "ran"


def test_bind_to_rejects_a_target_that_is_not_a_hook():
    with pytest.raises(ValueError, match="on_step_training"):
        bind_to("on_batch")
    with pytest.raises(ValueError, match="does not name a callback hook"):
        bind_to(len)


def test_callback_list_calls_decorated_callbacks_in_order_with_class_callbacks():
    calls = []

    class Recorder(Callback):
        def on_step_training(self, state):
            calls.append("class")

    first = on_step_training(lambda state: calls.append("first"))
    last = on_step_training(lambda state: calls.append("last"))
    CallbackList([first, Recorder(), last]).on_step_training({})

    assert calls == ["first", "class", "last"]


def _counting_function():
    calls = []

    def record(state):
        calls.append(state[torchbearer.EPOCH])
        return "fired"

    return record, calls


@pytest.mark.parametrize("guard_first", [True, False])
def test_once_fires_on_the_first_call_only_in_either_decorator_order(guard_first):
    record, calls = _counting_function()
    callback = once(on_step_training(record)) if guard_first else on_step_training(once(record))

    results = [callback.on_step_training({torchbearer.EPOCH: epoch}) for epoch in (0, 0, 1, 2)]

    assert calls == [0]
    assert results == ["fired", None, None, None]


def test_once_is_shared_by_every_hook_bound_to_the_callback():
    record, calls = _counting_function()
    callback = once(on_start(on_end_epoch(record)))

    callback.on_start({torchbearer.EPOCH: 0})
    callback.on_end_epoch({torchbearer.EPOCH: 1})

    assert calls == [0]


def test_once_on_a_method_fires_once_per_callback_instance():
    class Announce(Callback):
        def __init__(self):
            self.calls = 0

        @once
        def on_step_training(self, state):
            self.calls += 1

    first, second = Announce(), Announce()
    for _ in range(3):
        CallbackList([first, second]).on_step_training({})

    assert (first.calls, second.calls) == (1, 1)


@pytest.mark.parametrize("guard_first", [True, False])
def test_once_per_epoch_fires_on_the_first_call_of_each_epoch(guard_first):
    record, calls = _counting_function()
    callback = once_per_epoch(on_step_training(record)) if guard_first else on_step_training(once_per_epoch(record))

    for epoch in (0, 0, 0, 1, 1, 2, 0):
        callback.on_step_training({torchbearer.EPOCH: epoch})

    assert calls == [0, 1, 2, 0]


def test_once_per_epoch_on_a_method_keeps_one_memory_per_instance():
    class EpochStart(Callback):
        def __init__(self):
            self.epochs = []

        @once_per_epoch
        def on_step_training(self, state):
            self.epochs.append(state[torchbearer.EPOCH])

    first, second = EpochStart(), EpochStart()
    for epoch in (0, 0, 1):
        first.on_step_training({torchbearer.EPOCH: epoch})
    second.on_step_training({torchbearer.EPOCH: 1})

    assert first.epochs == [0, 1]
    assert second.epochs == [1]


@pytest.mark.parametrize("guard_first", [True, False])
def test_only_if_runs_the_callback_only_when_the_condition_holds(guard_first):
    batches = []

    def record(state):
        batches.append(state[torchbearer.BATCH])

    is_even = only_if(lambda state: state[torchbearer.BATCH] % 2 == 0)
    callback = is_even(on_step_training(record)) if guard_first else on_step_training(is_even(record))

    for batch in range(5):
        callback.on_step_training({torchbearer.BATCH: batch})

    assert batches == [0, 2, 4]


def test_only_if_guards_every_hook_bound_to_a_decorated_callback():
    calls = []
    callback = only_if(lambda state: state["go"])(on_start(on_end(lambda state: calls.append(state["go"]))))

    callback.on_start({"go": False})
    callback.on_end({"go": True})

    assert calls == [True]


def test_only_if_passes_the_wrapped_function_as_self_to_a_two_argument_condition():
    owners = []

    def record(state):
        return "ran"

    def condition(owner, state):
        owners.append(owner)
        return True

    callback = on_start(only_if(condition)(record))

    assert callback.on_start({}) == "ran"
    assert owners == [record]


def test_only_if_on_a_method_gives_the_instance_to_the_condition():
    class Gate(Callback):
        def __init__(self, enabled):
            self.enabled = enabled
            self.calls = 0

        @only_if(lambda self, state: self.enabled)
        def on_end_epoch(self, state):
            self.calls += 1

    on, off = Gate(True), Gate(False)
    CallbackList([on, off]).on_end_epoch({})

    assert (on.calls, off.calls) == (1, 0)


def test_stacked_guards_apply_outermost_first():
    after_first_epoch = only_if(lambda state: state[torchbearer.EPOCH] > 0)
    record, first_time_condition_holds = _counting_function()
    callback = after_first_epoch(once(on_step_training(record)))
    record, first_call_only_if_condition_holds = _counting_function()
    consumed_at_epoch_0 = once(after_first_epoch(on_step_training(record)))

    for epoch in (0, 1, 2):
        callback.on_step_training({torchbearer.EPOCH: epoch})
        consumed_at_epoch_0.on_step_training({torchbearer.EPOCH: epoch})

    assert first_time_condition_holds == [1]
    assert first_call_only_if_condition_holds == []


def test_count_args_counts_signature_parameters():
    assert count_args(lambda state: None) == 1
    assert count_args(lambda self, state: None) == 2
    assert count_args(Callback().on_start) == 1


def test_add_to_loss_adds_out_of_place_and_keeps_the_graph():
    weight = torch.tensor([2.0], requires_grad=True)
    loss = (weight * 3).sum()
    state = {torchbearer.LOSS: loss}
    callback = add_to_loss(lambda state: (weight**2).sum())

    callback.on_criterion(state)
    state[torchbearer.LOSS].backward()

    assert state[torchbearer.LOSS] is not loss
    assert state[torchbearer.LOSS].item() == pytest.approx(10.0)
    assert weight.grad.item() == pytest.approx(3.0 + 2 * 2.0)


def test_add_to_loss_works_on_a_leaf_zero_loss_that_requires_grad():
    weight = torch.tensor([1.5], requires_grad=True)
    state = {torchbearer.LOSS: torch.zeros((), requires_grad=True)}
    callback = add_to_loss(lambda state: (weight * 4).sum())

    callback.on_criterion(state)
    state[torchbearer.LOSS].backward()

    assert state[torchbearer.LOSS].item() == pytest.approx(6.0)
    assert weight.grad.item() == pytest.approx(4.0)


def test_add_to_loss_also_runs_after_the_validation_criterion():
    callback = add_to_loss(lambda state: torch.tensor(0.5))
    state = {torchbearer.LOSS: torch.tensor(1.0)}

    CallbackList([callback]).on_criterion_validation(state)

    assert state[torchbearer.LOSS].item() == pytest.approx(1.5)


def _tiny_trial(callbacks, criterion=torch.nn.MSELoss()):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trial = Trial(model, optimizer, criterion, metrics=["loss"], callbacks=callbacks, verbose=0)
    return trial.with_train_data(torch.rand(8, 3), torch.rand(8, 1), batch_size=2)


def test_guarded_decorated_callbacks_fire_as_promised_during_a_real_run():
    first_batches, every_batch, once_calls = [], [], []

    @once_per_epoch
    @on_step_training
    def first_of_epoch(state):
        first_batches.append((state[torchbearer.EPOCH], state[torchbearer.BATCH]))

    @on_step_training
    @only_if(lambda state: state[torchbearer.BATCH] % 2 == 1)
    def odd_batches(state):
        every_batch.append(state[torchbearer.BATCH])

    @once
    @on_criterion
    def first_criterion(state):
        once_calls.append(state[torchbearer.EPOCH])

    history = _tiny_trial([first_of_epoch, odd_batches, first_criterion]).run(2)

    assert len(history) == 2
    assert first_batches == [(0, 0), (1, 0)]
    assert every_batch == [1, 3, 1, 3]
    assert once_calls == [0]


def test_add_to_loss_trains_a_model_without_a_criterion():
    target = torch.tensor([[1.0]])

    @add_to_loss
    def squared_error(state):
        return ((state[torchbearer.Y_PRED] - target) ** 2).mean()

    history = _tiny_trial([squared_error], criterion=None).run(3)

    assert history[-1]["loss"] < history[0]["loss"]
