import sys

import matplotlib.pyplot as plt
import pytest
import torch

import torchbearer
from torchbearer.callbacks.pycm import PyCM

pycm = pytest.importorskip("pycm")

CM = torchbearer.state_key("pycm_test_matrix")


def _one_hot_logits(classes, num_classes=3):
    return torch.nn.functional.one_hot(torch.tensor(classes), num_classes).float()


def _drive_training_pass(callback, batches, state=None):
    """Run the training hooks over ``batches`` of (predicted classes, true classes) with a plain dict state."""
    state = state if state is not None else {torchbearer.EPOCH: 0}
    callback.on_start_training(state)
    for predicted, actual in batches:
        state[torchbearer.Y_PRED] = _one_hot_logits(predicted)
        state[torchbearer.Y_TRUE] = torch.tensor(actual)
        callback.on_step_training(state)
    callback.on_end_training(state)
    return state


BATCHES = [([0, 1, 2, 2], [0, 1, 1, 2]), ([0, 0, 2], [0, 2, 2])]
# actual -> predicted counts over both batches: 0->0: 2, 1->1: 1, 1->2: 1, 2->2: 2, 2->0: 1
EXPECTED_TABLE = {0: {0: 2, 1: 0, 2: 0}, 1: {0: 0, 1: 1, 2: 1}, 2: {0: 1, 1: 0, 2: 2}}


def test_to_state_stores_a_confusion_matrix_over_the_whole_pass():
    state = _drive_training_pass(PyCM().on_train().to_state(CM), BATCHES)

    matrix = state[CM]
    assert isinstance(matrix, pycm.ConfusionMatrix)
    assert matrix.table == EXPECTED_TABLE


def test_one_hot_targets_are_reduced_with_argmax():
    callback = PyCM().on_train().to_state(CM)
    state = {torchbearer.EPOCH: 0}
    callback.on_start_training(state)
    state[torchbearer.Y_PRED] = _one_hot_logits([0, 1, 1])
    state[torchbearer.Y_TRUE] = _one_hot_logits([0, 1, 2])
    callback.on_step_training(state)
    callback.on_end_training(state)

    assert state[CM].table == {0: {0: 1, 1: 0, 2: 0}, 1: {0: 0, 1: 1, 2: 0}, 2: {0: 0, 1: 1, 2: 0}}


def test_nothing_is_made_unless_a_pass_is_chosen():
    state = _drive_training_pass(PyCM().on_val().to_state(CM), BATCHES)

    assert CM not in state


def test_to_console_prints_the_matrix_and_its_statistics(capsys):
    _drive_training_pass(PyCM().on_train().to_console(), BATCHES)

    printed = capsys.readouterr().out
    assert "Predict" in printed and "Overall Statistics" in printed
    assert "ACC Macro" in printed


def test_file_handlers_write_files_named_from_the_state(tmp_path):
    callback = (
        PyCM()
        .on_train()
        .to_pycm_file(str(tmp_path / "stats_{epoch}"))
        .to_html_file(str(tmp_path / "page_{epoch}"))
        .to_csv_file(str(tmp_path / "table_{epoch}"))
        .to_obj_file(str(tmp_path / "object_{epoch}"))
    )

    _drive_training_pass(callback, BATCHES, {torchbearer.EPOCH: 7})

    for name in ("stats_7.pycm", "page_7.html", "table_7.csv", "object_7.obj"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "Overall Statistics" in (tmp_path / "stats_7.pycm").read_text()
    assert "</html>" in (tmp_path / "page_7.html").read_text()
    restored = pycm.ConfusionMatrix(file=open(tmp_path / "object_7.obj"))
    assert restored.table == EXPECTED_TABLE


def test_a_file_that_cannot_be_written_raises_instead_of_passing_silently(tmp_path):
    callback = PyCM().on_train().to_pycm_file(str(tmp_path / "missing_folder" / "cm"))

    with pytest.raises(OSError, match="missing_folder"):
        _drive_training_pass(callback, BATCHES)


def test_to_pyplot_draws_the_counts_in_a_new_figure_titled_from_the_state():
    before = set(plt.get_fignums())

    _drive_training_pass(PyCM().on_train().to_pyplot(title="Epoch {epoch}"), BATCHES, {torchbearer.EPOCH: 3})

    new = set(plt.get_fignums()) - before
    assert len(new) == 1
    axes = plt.figure(new.pop()).axes[0]
    assert axes.get_title() == "Epoch 3"
    assert [text.get_text() for text in axes.texts] == ["2", "0", "0", "0", "1", "1", "1", "0", "2"]
    plt.close("all")


def test_to_pyplot_normalises_rows():
    _drive_training_pass(PyCM().on_train().to_pyplot(normalize=True), BATCHES)

    texts = [text.get_text() for text in plt.gcf().axes[0].texts]
    assert texts == ["1.00", "0.00", "0.00", "0.00", "0.50", "0.50", "0.33", "0.00", "0.67"]
    plt.close("all")


def test_with_handler_receives_the_matrix_and_the_state():
    received = []
    state = _drive_training_pass(PyCM().on_train().with_handler(lambda cm, s: received.append((cm, s))), BATCHES)

    assert len(received) == 1 and received[0][1] is state
    assert received[0][0].table == EXPECTED_TABLE


def test_kwargs_go_to_the_confusion_matrix():
    state = _drive_training_pass(PyCM(digit=2).on_train().to_state(CM), BATCHES)

    assert state[CM].digit == 2


def _trained_trial(callbacks, classification_data):
    x, y = classification_data
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        torch.nn.CrossEntropyLoss(),
        callbacks=callbacks,
        verbose=0,
    )
    trial.with_train_data(x, y, batch_size=10, num_workers=0)
    trial.with_val_data(x[:30], y[:30], batch_size=10, num_workers=0)
    return trial, model


def _expected_table(model, x, y):
    predicted = model(x).argmax(1)
    labels = sorted(set(y.tolist()) | set(predicted.tolist()))
    table = {a: {p: 0 for p in labels} for a in labels}
    for actual, guess in zip(y.tolist(), predicted.tolist()):
        table[actual][guess] += 1
    return table


def test_validation_matrix_of_a_trial_matches_the_final_model(classification_data):
    matrices = []
    callback = PyCM().on_val().with_handler(lambda cm, state: matrices.append((state[torchbearer.DATA], cm)))
    trial, model = _trained_trial([callback], classification_data)

    trial.run(2)

    assert [data for data, _ in matrices] == [torchbearer.VALIDATION_DATA] * 2
    x, y = classification_data
    with torch.no_grad():
        assert matrices[-1][1].table == _expected_table(model, x[:30], y[:30])


def test_test_matrix_is_made_by_evaluate_on_test_data(classification_data):
    matrices = []
    callback = PyCM().on_test().with_handler(lambda cm, state: matrices.append(cm))
    trial, model = _trained_trial([callback], classification_data)
    x, y = classification_data
    trial.with_test_generator(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[30:], y[30:]), 5))

    trial.run(1)
    assert matrices == []
    trial.evaluate(data_key=torchbearer.TEST_DATA)

    with torch.no_grad():
        assert [cm.table for cm in matrices] == [_expected_table(model, x[30:], y[30:])]


def test_missing_pycm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pycm", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[pycm\]"):
        PyCM()
