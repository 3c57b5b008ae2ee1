import sys

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

import torchbearer
from torchbearer.callbacks.decorators import once_per_epoch
from torchbearer.callbacks.imaging import CachingImagingCallback, FromState, ImagingCallback, MakeGrid

KEY = torchbearer.state_key("imaging_test_image")
FIRST = torchbearer.state_key("imaging_test_first")
SECOND = torchbearer.state_key("imaging_test_second")


def _images(count=10, size=4):
    """``count`` RGB images whose pixels are all ``(i + 1) / count`` for image ``i``."""
    return torch.arange(1, count + 1).float().div(count).view(count, 1, 1, 1).expand(count, 3, size, size).clone()


class _ImageModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(48, 2)

    def forward(self, x):
        return self.linear(x.flatten(1))


def _trial(callbacks, images=None, batch_size=4):
    images = _images() if images is None else images
    targets = torch.arange(images.size(0)) % 2
    model = _ImageModel()
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.01), torch.nn.CrossEntropyLoss(), callbacks=callbacks, verbose=0
    )
    trial.with_train_data(images, targets, batch_size=batch_size, shuffle=False, num_workers=0)
    trial.with_val_data(images, targets, batch_size=batch_size, shuffle=False, num_workers=0)
    return trial


def _step_state(batch, images, data=torchbearer.TRAIN_DATA, epoch=0):
    return {
        torchbearer.X: images,
        torchbearer.BATCH: batch,
        torchbearer.EPOCH: epoch,
        torchbearer.DATA: data,
        torchbearer.METRICS: {},
    }


def test_nothing_runs_until_a_pass_is_chosen():
    callback = FromState(torchbearer.X).to_state(KEY)
    state = _step_state(0, _images(1))

    callback.on_step_training(state)
    callback.on_step_validation(dict(state, **{torchbearer.DATA: torchbearer.VALIDATION_DATA}))

    assert KEY not in state


def test_on_train_on_val_on_test_each_select_their_pass():
    chosen = {
        "train": FromState(torchbearer.X).on_train(),
        "val": FromState(torchbearer.X).on_val(),
        "test": FromState(torchbearer.X).on_test(),
    }
    seen = {name: [] for name in chosen}
    for name, callback in chosen.items():
        callback.with_handler(lambda image, index, state, name=name: seen[name].append(state[torchbearer.DATA]))
        callback.on_step_training(_step_state(0, _images(1)))
        for data in (torchbearer.VALIDATION_DATA, torchbearer.TEST_DATA):
            callback.on_step_validation(_step_state(0, _images(1), data=data))

    assert seen == {
        "train": [torchbearer.TRAIN_DATA],
        "val": [torchbearer.VALIDATION_DATA],
        "test": [torchbearer.TEST_DATA],
    }


def test_handlers_get_every_image_or_the_chosen_indices():
    calls = []
    callback = FromState(torchbearer.X).on_train()
    callback.with_handler(lambda image, index, state: calls.append(("all", index, image[0, 0, 0].item())))
    callback.with_handler(lambda image, index, state: calls.append(("one", index, image[0, 0, 0].item())), index=2)
    callback.with_handler(lambda image, index, state: calls.append(("some", index, 0)), index=[3, 1])

    callback.on_step_training(_step_state(0, _images(4)))

    assert calls == [
        ("all", 0, 0.25),
        ("all", 1, 0.5),
        ("all", 2, 0.75),
        ("all", 3, 1.0),
        ("one", 2, 0.75),
        ("some", 3, 0),
        ("some", 1, 0),
    ]


def test_a_single_image_is_handled_as_a_batch_of_one_and_the_transform_applies():
    callback = FromState(KEY, transform=lambda image: image * 2).on_train().to_state(SECOND)
    state = dict(_step_state(0, None), **{KEY: torch.full((3, 2, 2), 0.25)})

    callback.on_step_training(state)

    assert torch.equal(state[SECOND], torch.full((3, 2, 2), 0.5))


def test_to_state_puts_the_nth_selected_image_under_the_nth_key():
    callback = FromState(torchbearer.X).on_train().to_state([FIRST, SECOND], index=[3, 1])
    state = _step_state(0, _images(4))

    callback.on_step_training(state)

    assert state[FIRST][0, 0, 0].item() == 1.0 and state[SECOND][0, 0, 0].item() == 0.5


def test_to_state_with_too_few_keys_says_how_to_fix_it():
    callback = FromState(torchbearer.X).on_train().to_state(KEY)

    with pytest.raises(IndexError, match="one key per image"):
        callback.on_step_training(_step_state(0, _images(2)))


def test_on_batch_must_be_implemented():
    with pytest.raises(NotImplementedError, match="on_batch"):
        ImagingCallback().on_train().on_step_training(_step_state(0, None))


def test_from_state_skips_steps_where_the_key_is_missing():
    calls = []
    FromState(KEY).on_train().with_handler(lambda *args: calls.append(args)).on_step_training(_step_state(0, None))

    assert calls == []


def test_cache_emits_the_first_images_of_each_pass_once():
    emitted = []
    callback = FromState(torchbearer.X).on_train().cache(6).with_handler(lambda image, i, s: emitted.append(image))

    history = _trial([callback]).run(2)

    assert len(history) == 2
    assert len(emitted) == 12  # 6 images, once per training pass
    assert torch.equal(torch.stack(emitted[:6]), _images()[:6])
    assert torch.equal(torch.stack(emitted[6:]), _images()[:6])


def test_cache_then_make_grid_gives_one_grid_per_pass():
    pytest.importorskip("torchvision")
    grids = []
    callback = FromState(torchbearer.X).on_val().cache(4).make_grid(nrow=2, padding=1, pad_value=1)
    callback.with_handler(lambda image, i, s: grids.append(image))

    _trial([callback]).run(1)

    assert len(grids) == 1
    assert grids[0].shape == (3, 11, 11)  # 2x2 images of 4 pixels with 1-pixel padding
    assert grids[0][0, 1, 1].item() == pytest.approx(0.1) and grids[0][0, 6, 6].item() == pytest.approx(0.4)
    assert grids[0][0, 0, 0].item() == 1  # padding


def test_make_grid_norm_range_is_the_value_range_used_to_normalise():
    pytest.importorskip("torchvision")
    callback = FromState(torchbearer.X).on_train().make_grid(normalize=True, norm_range=(0, 2), padding=0)
    callback.to_state(KEY)
    state = _step_state(0, torch.ones(1, 3, 2, 2))

    callback.on_step_training(state)

    assert torch.allclose(state[KEY], torch.full((3, 2, 2), 0.5))


def test_make_grid_callback_grids_the_cached_images(tmp_path):
    pytest.importorskip("torchvision")
    callback = MakeGrid(torchbearer.X, num_images=4, nrow=2).on_val().to_file(str(tmp_path / "grid_{epoch}.png"))

    _trial([callback]).run(2)

    for epoch in (0, 1):
        image = Image.open(tmp_path / f"grid_{epoch}.png")
        assert image.size == (14, 14)  # 2 images of 4 pixels per row, 2-pixel padding
        assert image.mode == "RGB"
        assert image.getpixel((2, 2)) == (26, 26, 26)  # first image: 0.1 * 255, rounded
        assert image.getpixel((8, 8)) == (102, 102, 102)  # fourth image: 0.4 * 255
        assert image.getpixel((0, 0)) == (0, 0, 0)


def test_caching_imaging_callback_calls_on_cache_once_per_pass_with_the_cache():
    class Mean(CachingImagingCallback):
        def on_cache(self, cache, state):
            return cache.mean(0)

    means = []
    callback = Mean(torchbearer.X, num_images=3).on_val().with_handler(lambda image, i, s: means.append(image))

    _trial([callback]).run(2)

    assert len(means) == 2
    assert torch.allclose(means[0], torch.full((3, 4, 4), 0.2))


def test_to_file_formats_the_name_with_index_state_keys_and_metrics(tmp_path):
    callback = FromState(torchbearer.X).on_train().to_file(str(tmp_path / "{index}_{epoch}_{loss:.1f}.png"), index=1)
    state = dict(_step_state(0, _images(2, size=3), epoch=5), **{torchbearer.METRICS: {"loss": 0.25}})

    callback.on_step_training(state)

    image = Image.open(tmp_path / "1_5_0.2.png")
    assert image.size == (3, 3) and image.getpixel((0, 0)) == (255, 255, 255)


def test_to_file_writes_single_channel_images_as_greyscale(tmp_path):
    callback = FromState(torchbearer.X).on_train().to_file(str(tmp_path / "grey.png"))

    callback.on_step_training(_step_state(0, torch.tensor([[[[0.0, 0.5], [1.0, 0.2]]]])))

    image = Image.open(tmp_path / "grey.png")
    assert image.mode == "L" and list(image.getdata()) == [0, 128, 255, 51]


def test_to_file_with_an_unknown_name_field_lists_what_is_available(tmp_path):
    callback = FromState(torchbearer.X).on_train().to_file(str(tmp_path / "{acuracy}.png"))

    with pytest.raises(KeyError, match="acuracy"):
        callback.on_step_training(dict(_step_state(0, _images(1)), **{torchbearer.METRICS: {"acc": 1.0}}))


def test_to_pyplot_draws_each_image_in_a_titled_figure():
    before = set(plt.get_fignums())
    callback = FromState(torchbearer.X).on_train().to_pyplot(title="image {index} at {epoch}", show=False)

    callback.on_step_training(_step_state(0, _images(2), epoch=4))

    new = sorted(set(plt.get_fignums()) - before)
    assert len(new) == 2
    first, second = (plt.figure(number).axes[0] for number in new)
    assert second.get_title() == "image 1 at 4" and not second.axison
    assert first.images[0].get_array()[0, 0, 0] == 0.5 and second.images[0].get_array()[0, 0, 0] == 1.0
    plt.close("all")


def test_decorator_wraps_on_batch():
    calls = []
    callback = FromState(torchbearer.X, decorator=once_per_epoch).on_train()
    callback.with_handler(lambda image, i, s: calls.append(s[torchbearer.EPOCH]), index=0)

    for epoch in (0, 0, 1, 1):
        callback.on_step_training(_step_state(0, _images(2), epoch=epoch))

    assert calls == [0, 1]


def test_to_tensorboard_writes_an_image_event_per_epoch(tmp_path):
    pytest.importorskip("torchvision")
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="reading the event files back needs the tensorboard package",
    )
    callback = MakeGrid(torchbearer.X, num_images=4, nrow=2).on_val()
    callback.to_tensorboard(name="grid", log_dir=str(tmp_path), comment="run")

    _trial([callback]).run(2)

    events = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert events.Tags()["images"] == ["grid"]
    images = events.Images("grid")
    assert [image.step for image in images] == [0, 1]
    assert (images[0].width, images[0].height) == (14, 14)


def test_missing_torchvision_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.utils", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[imaging\]"):
        FromState(torchbearer.X).make_grid()
    with pytest.raises(ImportError, match=r"pip install torchbearer\[imaging\]"):
        MakeGrid()


def test_the_default_transform_is_an_identity_function_as_in_0_5():
    image = _images(1)[0]

    assert FromState(torchbearer.X).transform(image) is image
    assert MakeGrid().transform(image) is image


class _CountsItsOwnSteps(FromState):
    """A subclass with its own step hooks, as 0.5 users wrote them: its images must still be made."""

    def __init__(self):
        super().__init__(torchbearer.X)
        self.own_steps = []

    def on_step_training(self, state):
        self.own_steps.append("train")

    def on_step_validation(self, state):
        self.own_steps.append(str(state[torchbearer.DATA]))


def test_a_subclass_with_its_own_step_hooks_still_makes_its_images_in_a_trial():
    made = []
    callback = _CountsItsOwnSteps().on_train().on_val().on_test()
    callback.with_handler(lambda image, index, state: made.append((str(state[torchbearer.DATA]), index)))
    trial = _trial([callback], images=_images(4))
    trial.with_test_data(_images(4), batch_size=4, num_workers=0)

    trial.run(1)
    trial.predict()

    train, val, test = str(torchbearer.TRAIN_DATA), str(torchbearer.VALIDATION_DATA), str(torchbearer.TEST_DATA)
    assert callback.own_steps == ["train", val, test]  # its own hooks ran, once per step
    assert made == [(data, index) for data in (train, val, test) for index in range(4)]  # and so did the images


def test_to_tensorboard_logs_an_evaluation_at_the_last_trained_epoch_in_the_same_event_file(tmp_path):
    pytest.importorskip("torchvision")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    from torchbearer.callbacks import writers

    callback = MakeGrid(torchbearer.X, num_images=4, nrow=2).on_val()
    callback.to_tensorboard(name="grid", log_dir=str(tmp_path), comment="run")
    trial = _trial([callback])
    trial.run(2)
    trial.evaluate()
    writers.close_writer(str(tmp_path / "run"), callback)

    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 1
    events = event_accumulator.EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [image.step for image in events.Images("grid")] == [0, 1, 1]
