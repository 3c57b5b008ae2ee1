"""Trial.with_prefetch: batches are fetched one step ahead and moved to the device early."""

import pytest
import torch
from torch import nn

import torchbearer
from torchbearer import Trial
from torchbearer.callbacks import on_sample
from torchbearer.prefetch import DevicePrefetcher


class CountingBatches:
    """A re-iterable list of batches that records how many batches have been taken from it."""

    def __init__(self, batches):
        self.batches, self.taken = batches, 0

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for batch in self.batches:
            self.taken += 1
            yield batch


def _batches(count=4):
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(count, 8, 4, generator=generator)
    targets = torch.randint(0, 3, (count, 8), generator=generator)
    return list(zip(inputs, targets))


def _trial(callbacks=()):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    return Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), nn.CrossEntropyLoss(), ["acc", "loss"],
                 list(callbacks), verbose=0)  # fmt: skip


@pytest.mark.parametrize("prefetching, ahead", [(False, 0), (True, 1)])
def test_prefetch_takes_the_next_batch_before_the_current_one_trains(prefetching, ahead):
    data = CountingBatches(_batches())
    taken_at_sample = []

    @on_sample
    def record(state):
        taken_at_sample.append(data.taken - state[torchbearer.BATCH] - 1)

    _trial([record]).with_prefetch(prefetching).with_train_generator(data).run(1)
    assert taken_at_sample == [ahead, ahead, ahead, 0]  # the last batch has nothing after it


def test_prefetch_trains_to_the_same_weights_and_metrics():
    results = []
    for prefetching in (False, True):
        trial = _trial().with_prefetch(prefetching).with_generators(_batches(), _batches(2))
        history = trial.run(2)
        results.append((history, trial.state[torchbearer.MODEL].weight.detach().clone()))
    assert results[0][0] == results[1][0]
    assert torch.equal(results[0][1], results[1][1])


def test_prefetch_carries_on_when_an_infinite_loader_restarts():
    iterators = []

    @on_sample
    def record(state):
        iterators.append(type(state[torchbearer.ITERATOR]))

    _trial([record]).with_prefetch().with_train_generator(_batches(3), steps=7).run(1)
    assert iterators == [DevicePrefetcher] * 7


def test_prefetcher_moves_nested_batches_and_stops_at_the_end():
    batches = [{"x": torch.ones(2, dtype=torch.float64), "rest": [torch.zeros(1, dtype=torch.int64)]}] * 2
    moved = list(DevicePrefetcher(iter(batches), "cpu", torch.float32))
    assert len(moved) == 2
    assert moved[0]["x"].dtype == torch.float32 and moved[0]["rest"][0].dtype == torch.int64


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_prefetch_on_cuda_from_pinned_memory_gives_the_same_training():
    x, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, pin_memory=True)
    devices, weights = [], []

    @on_sample
    def record(state):
        devices.append(state[torchbearer.X].device.type)

    for prefetching in (False, True):
        trial = _trial([record]).to("cuda").with_prefetch(prefetching).with_train_generator(loader)
        trial.run(2)
        weights.append(trial.state[torchbearer.MODEL].weight.detach().cpu())
    assert set(devices) == {"cuda"}
    torch.testing.assert_close(weights[0], weights[1])
