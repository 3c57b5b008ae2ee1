"""UnpackState: the model receives chosen state entries as a dict, and dict outputs land in the state."""

import torch

import torchbearer
from torchbearer.callbacks.decorators import on_step_training
from torchbearer.callbacks.unpack_state import UnpackState

EXTRA = torchbearer.state_key("unpack_state_test_extra")
MEAN = torchbearer.state_key("unpack_state_test_mean")


def test_x_is_inserted_first_into_the_given_list():
    keys = [EXTRA]
    unpacker = UnpackState(keys=keys)
    assert unpacker.keys is keys and keys == [torchbearer.X, EXTRA]
    assert UnpackState().keys == [torchbearer.X]


def test_sample_replaces_x_with_a_dict_of_the_chosen_keys():
    unpacker = UnpackState(keys=[torchbearer.X, EXTRA])
    for hook in (unpacker.on_sample, unpacker.on_sample_validation):
        state = {torchbearer.X: "batch", EXTRA: "extra", torchbearer.Y_TRUE: "target"}
        hook(state)
        assert state[torchbearer.X] == {torchbearer.X: "batch", EXTRA: "extra"}


def test_default_keys_leave_x_alone():
    state = {torchbearer.X: "batch"}
    UnpackState().on_sample(state)
    assert state[torchbearer.X] == "batch"


def test_dict_output_is_merged_into_state_and_y_pred_taken_from_it():
    for hook in ("on_forward", "on_forward_validation"):
        state = {torchbearer.Y_PRED: {torchbearer.Y_PRED: "prediction", MEAN: "mean"}}
        getattr(UnpackState(), hook)(state)
        assert state[torchbearer.Y_PRED] == "prediction" and state[MEAN] == "mean"


def test_dict_output_without_y_pred_stays_the_prediction():
    outputs = {MEAN: "mean"}
    state = {torchbearer.Y_PRED: outputs}
    UnpackState().on_forward(state)
    assert state[torchbearer.Y_PRED] is outputs and state[MEAN] == "mean"


def test_output_to_state_false_leaves_dict_outputs_alone():
    outputs = {torchbearer.Y_PRED: "prediction", MEAN: "mean"}
    state = {torchbearer.Y_PRED: outputs}
    UnpackState(output_to_state=False).on_forward(state)
    assert state[torchbearer.Y_PRED] is outputs and MEAN not in state


class _TargetAwareModel(torch.nn.Module):
    """Receives {X, Y_TRUE} and returns {Y_PRED, MEAN}."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        self.seen_keys = []

    def forward(self, inputs):
        self.seen_keys.append(sorted(map(str, inputs)))
        out = self.linear(inputs[torchbearer.X])
        return {torchbearer.Y_PRED: out, MEAN: inputs[torchbearer.Y_TRUE].float().mean()}


def test_trial_passes_the_dict_to_the_model_and_stores_its_outputs(classification_data):
    x, y = classification_data
    model = _TargetAwareModel()
    means = []
    record = on_step_training(lambda state: means.append(state[MEAN]))
    trial = torchbearer.Trial(
        model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), metrics=["acc", "loss"],
        callbacks=[UnpackState(keys=[torchbearer.Y_TRUE]), record], verbose=0,
    )  # fmt: skip
    trial.with_train_data(x, y, batch_size=10, num_workers=0, shuffle=False).with_val_data(
        x, y, batch_size=20, num_workers=0
    )
    history = trial.run(1)
    assert model.seen_keys == [["x", "y_true"]] * 6  # 4 training and 2 validation batches
    assert [m.item() for m in means] == [y[i : i + 10].float().mean().item() for i in range(0, 40, 10)]
    assert 0 <= history[0]["val_acc"] <= 1
