"""The Trial's data builders: generators and tensors for each pass, step counts, infinite loading."""

import pytest
import torch
from torch import nn
from torch.utils.data import RandomSampler, SequentialSampler

import torchbearer
from torchbearer import Trial
from torchbearer.state import TEST_GENERATOR, TRAIN_GENERATOR, VALIDATION_GENERATOR


def test_steps_larger_than_loader_cycle_through_it():
    dataset = torch.utils.data.TensorDataset(torch.arange(5.0).unsqueeze(1), torch.zeros(5, 1))
    seen = []

    @torchbearer.callbacks.on_sample
    def record(state):
        seen.append(int(state[torchbearer.X].item()))

    Trial(None, callbacks=[record], verbose=0).with_train_generator(dataset, steps=7).run(1)
    assert seen == [0, 1, 2, 3, 4, 0, 1]


def test_inf_train_loader_continues_across_epochs():
    dataset = torch.utils.data.TensorDataset(torch.arange(5.0).unsqueeze(1), torch.zeros(5, 1))
    seen = []

    @torchbearer.callbacks.on_sample
    def record(state):
        seen.append(int(state[torchbearer.X].item()))

    trial = Trial(None, callbacks=[record], verbose=0).with_train_generator(dataset, steps=2).with_inf_train_loader()
    trial.run(3)
    assert seen == [0, 1, 2, 3, 4, 0]


def test_infinite_validation_steps_run_until_stopped():
    dataset = torch.utils.data.TensorDataset(torch.zeros(3, 1), torch.zeros(3, 1))

    @torchbearer.callbacks.on_step_validation
    def stop(state):
        if state[torchbearer.BATCH] == 7:
            state[torchbearer.STOP_TRAINING] = True

    trial = Trial(None, callbacks=[stop], verbose=0).with_val_generator(dataset).for_inf_val_steps()
    with pytest.warns(UserWarning, match="run indefinitely"):
        trial.evaluate()


def test_with_data_skips_missing_parts():
    trial = Trial(nn.Linear(2, 1), verbose=0).with_data(x_train=torch.randn(4, 2), y_train=torch.randn(4, 1),
                                                         x_test=torch.randn(3, 2), num_workers=0)  # fmt: skip
    assert trial.state[torchbearer.VALIDATION_GENERATOR] is None
    assert trial.state[torchbearer.TEST_STEPS] == 3


def test_tensor_data_is_loaded_in_the_main_process_by_default():
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    trial = Trial(nn.Linear(2, 1), verbose=0).with_train_data(x, y).with_val_data(x, y).with_test_data(x)
    other = Trial(nn.Linear(2, 1), verbose=0).with_data(x, y, x, y, x)
    for each in (trial, other):
        loaders = [each.state[key] for key in (TRAIN_GENERATOR, VALIDATION_GENERATOR, TEST_GENERATOR)]
        assert [loader.num_workers for loader in loaders] == [0, 0, 0]


def test_only_training_data_is_shuffled_by_default():
    x, y = torch.randn(6, 2), torch.randn(6, 1)
    trial = Trial(nn.Linear(2, 1), verbose=0).with_train_data(x, y).with_val_data(x, y)
    other = Trial(nn.Linear(2, 1), verbose=0).with_data(x, y, x, y, shuffle=True)
    for each in (trial, other):
        assert isinstance(each.state[TRAIN_GENERATOR].sampler, RandomSampler)
        assert isinstance(each.state[VALIDATION_GENERATOR].sampler, SequentialSampler)


def test_non_int_steps_warn_and_cast():
    with pytest.warns(UserWarning, match="Number of training steps is not an int, casting to int"):
        trial = Trial(None).for_train_steps(3.0)
    assert trial.state[torchbearer.TRAIN_STEPS] == 3
