import random

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from torchbearer.cv_utils import DatasetValidationSplitter, SubsetDataset, get_train_valid_sets, train_valid_splitter


def _paired(n=10):
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return x, x.squeeze(1) * 10


def test_train_valid_splitter_puts_floor_of_split_samples_in_validation():
    x, y = _paired(10)

    x_train, y_train, x_val, y_val = train_valid_splitter(x, y, 0.25)

    assert (len(x_train), len(y_train), len(x_val), len(y_val)) == (8, 8, 2, 2)
    assert sorted(torch.cat([x_train, x_val]).squeeze(1).tolist()) == x.squeeze(1).tolist()


def test_train_valid_splitter_shuffles_x_and_y_with_the_same_permutation():
    x, y = _paired(50)
    torch.manual_seed(1)

    x_train, y_train, x_val, y_val = train_valid_splitter(x, y, 0.2)

    assert torch.equal(y_train, x_train.squeeze(1) * 10)
    assert torch.equal(y_val, x_val.squeeze(1) * 10)
    assert not torch.equal(torch.cat([x_val, x_train]), x)


def test_train_valid_splitter_without_shuffle_takes_the_first_samples_for_validation():
    x, y = _paired(10)

    x_train, _, x_val, y_val = train_valid_splitter(x, y, 0.3, shuffle=False)

    assert x_val.squeeze(1).tolist() == [0.0, 1.0, 2.0]
    assert y_val.tolist() == [0.0, 10.0, 20.0]
    assert x_train.squeeze(1).tolist() == [3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]


def test_train_valid_splitter_is_repeatable_under_torch_manual_seed():
    x, y = _paired(20)
    torch.manual_seed(7)
    first = train_valid_splitter(x, y, 0.5)
    torch.manual_seed(7)
    second = train_valid_splitter(x, y, 0.5)

    assert all(torch.equal(a, b) for a, b in zip(first, second))


def test_train_valid_splitter_explains_mismatched_lengths_and_bad_fractions():
    x, y = _paired(10)
    with pytest.raises(ValueError, match="same number of samples, got 10 and 9"):
        train_valid_splitter(x, y[:9], 0.1)
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        train_valid_splitter(x, y, 1.5)


def test_get_train_valid_sets_uses_given_validation_data_as_is():
    x, y = _paired(10)
    x_val, y_val = _paired(3)

    trainset, valset = get_train_valid_sets(x, y, (x_val, y_val), validation_split=0.5)

    assert isinstance(trainset, TensorDataset) and isinstance(valset, TensorDataset)
    assert len(trainset) == 10
    assert torch.equal(valset.tensors[0], x_val)


def test_get_train_valid_sets_splits_off_a_float_fraction():
    x, y = _paired(10)

    trainset, valset = get_train_valid_sets(x, y, None, 0.2, shuffle=False)

    assert (len(trainset), len(valset)) == (8, 2)
    assert torch.equal(valset.tensors[1], y[:2])


def test_get_train_valid_sets_without_validation_returns_none():
    x, y = _paired(10)

    trainset, valset = get_train_valid_sets(x, y, None, None)

    assert len(trainset) == 10
    assert valset is None


def test_dataset_validation_splitter_partitions_ids_by_fraction():
    splitter = DatasetValidationSplitter(25, 0.2)

    assert (splitter.dataset_len, splitter.split_fraction) == (25, 0.2)
    assert len(splitter.valid_ids) == 5
    assert len(splitter.train_ids) == 20
    assert sorted(splitter.train_ids + splitter.valid_ids) == list(range(25))


def test_dataset_validation_splitter_seed_is_repeatable_and_leaves_global_random_alone():
    random.seed(123)
    global_state = random.getstate()

    first = DatasetValidationSplitter(100, 0.1, shuffle_seed=5)
    second = DatasetValidationSplitter(100, 0.1, shuffle_seed=5)
    other = DatasetValidationSplitter(100, 0.1, shuffle_seed=6)

    assert random.getstate() == global_state
    assert first.valid_ids == second.valid_ids and first.train_ids == second.train_ids
    assert first.valid_ids != other.valid_ids
    assert first.valid_ids != list(range(10))


def test_dataset_validation_splitter_without_seed_follows_global_random_seed():
    random.seed(9)
    first = DatasetValidationSplitter(50, 0.2)
    random.seed(9)
    second = DatasetValidationSplitter(50, 0.2)

    assert first.valid_ids == second.valid_ids


def test_splitter_datasets_return_the_items_at_their_ids():
    dataset = TensorDataset(torch.arange(10) * 2)
    splitter = DatasetValidationSplitter(len(dataset), 0.3, shuffle_seed=0)

    trainset, valset = splitter.get_train_dataset(dataset), splitter.get_val_dataset(dataset)

    assert isinstance(valset, SubsetDataset)
    assert (len(trainset), len(valset)) == (7, 3)
    assert [valset[i][0].item() for i in range(3)] == [2 * index for index in splitter.valid_ids]
    loaded = torch.cat([batch[0] for batch in DataLoader(trainset, batch_size=4)])
    assert loaded.tolist() == [2 * index for index in splitter.train_ids]


def test_subset_dataset_exposes_dataset_and_ids():
    subset = SubsetDataset(["a", "b", "c", "d"], [3, 1])

    assert (subset.dataset, subset.ids) == (["a", "b", "c", "d"], [3, 1])
    assert len(subset) == 2
    assert [subset[0], subset[1]] == ["d", "b"]
