import torch

import torchbearer
from torchbearer.callbacks.imaging import RANDOM, ClassAppearanceModel

IMAGE = torchbearer.state_key("cam_test_image")
TARGET = torchbearer.state_key("cam_test_target")
LOGITS = torchbearer.state_key("cam_test_logits")

INPUT_SIZE = (1, 3, 3)


class _Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(9, 4)

    def forward(self, x):
        return self.linear(x.flatten(1))


def _state(model, epoch=0):
    return {
        torchbearer.MODEL: model,
        torchbearer.EPOCH: epoch,
        torchbearer.DEVICE: "cpu",
        torchbearer.DATA_TYPE: torch.float32,
        torchbearer.DATA: torchbearer.VALIDATION_DATA,
        torchbearer.BATCH: 0,
        torchbearer.METRICS: {},
    }


def test_random_is_minus_ten():
    assert RANDOM == -10


def test_image_has_the_input_size_stays_in_the_unit_interval_and_raises_the_target_logit():
    model = _Classifier()
    cam = ClassAppearanceModel(4, INPUT_SIZE, steps=30, target=2).on_val().to_state(IMAGE)
    state = _state(model)

    with torch.no_grad():  # validation steps run without gradients; the callback must enable them
        cam.on_step_validation(state)

    image = state[IMAGE]
    assert image.shape == INPUT_SIZE
    assert image.min() > 0 and image.max() < 1
    with torch.no_grad():
        grey = model(torch.full((1, *INPUT_SIZE), 0.5))[0, 2]
        learnt = model(image.unsqueeze(0))[0, 2]
    assert learnt > grey + 0.1


def test_the_model_is_left_unchanged_and_back_in_training_mode():
    model = _Classifier()
    weights = [parameter.clone() for parameter in model.parameters()]
    cam = ClassAppearanceModel(4, INPUT_SIZE, steps=5, target=1).on_train().to_state(IMAGE)
    seen_modes = []
    model.register_forward_hook(lambda module, args, output: seen_modes.append(module.training))

    cam.on_step_training(_state(model))

    assert seen_modes and not any(seen_modes)  # evaluated in eval mode
    assert model.training
    assert all(torch.equal(before, after) for before, after in zip(weights, model.parameters()))
    assert all(parameter.grad is None and parameter.requires_grad for parameter in model.parameters())


def test_runs_once_per_epoch():
    model = _Classifier()
    images = []
    cam = ClassAppearanceModel(4, INPUT_SIZE, steps=2).on_val().with_handler(lambda image, i, s: images.append(i))

    for epoch in (0, 0, 1):
        cam.on_step_validation(_state(model, epoch))

    assert len(images) == 2


def test_target_to_key_stores_the_chosen_class():
    torch.manual_seed(3)
    cam = ClassAppearanceModel(4, INPUT_SIZE, steps=2).on_val().target_to_key(TARGET)
    state = _state(_Classifier())

    cam.on_step_validation(state)

    assert state[TARGET].shape == (1,) and 0 <= state[TARGET].item() < 4


def test_logits_can_come_from_another_state_key():
    class WritesLogits(_Classifier):
        def forward(self, x, state):
            state[LOGITS] = self.linear(x.flatten(1))
            return None

    model = WritesLogits()
    cam = ClassAppearanceModel(4, INPUT_SIZE, steps=30, target=0, logit_key=LOGITS).on_val().to_state(IMAGE)
    state = _state(model)

    cam.on_step_validation(state)

    with torch.no_grad():
        grey = model.linear(torch.full((1, 9), 0.5))[0, 0]
        learnt = model.linear(state[IMAGE].flatten().unsqueeze(0))[0, 0]
    assert learnt > grey + 0.1


def test_in_transform_is_applied_before_the_model_and_transform_after():
    seen = []
    model = _Classifier()
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    cam = (
        ClassAppearanceModel(
            4, INPUT_SIZE, steps=1, target=0, in_transform=lambda image: image * 0, transform=lambda image: image + 1
        )
        .on_val()
        .to_state(IMAGE)
    )
    state = _state(model)

    cam.on_step_validation(state)

    assert torch.equal(seen[0], torch.zeros(1, *INPUT_SIZE))
    assert state[IMAGE].min() > 1


def test_in_a_trial_it_makes_one_image_per_validation_pass(classification_data):
    images = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(9, 3))
    cam = ClassAppearanceModel(3, INPUT_SIZE, steps=3).on_val().with_handler(lambda image, i, s: images.append(image))
    x = torch.rand(12, *INPUT_SIZE)
    y = torch.randint(0, 3, (12,))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), callbacks=[cam], verbose=0
    )
    trial.with_train_data(x, y, batch_size=4, num_workers=0).with_val_data(x, y, batch_size=4, num_workers=0)

    history = trial.run(2)

    assert len(history) == 2
    assert len(images) == 2 and all(image.shape == INPUT_SIZE for image in images)


def test_an_int_input_size_is_a_vector_input_as_in_0_5():
    cam = ClassAppearanceModel(4, 10, steps=2, target=1)

    image = cam.on_batch(_state(torch.nn.Linear(10, 4)))

    assert cam.input_size == (10,)
    assert image.shape == (10,) and image.min() > 0 and image.max() < 1
