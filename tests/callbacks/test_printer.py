import io
import re

import pytest
import torch
import tqdm
import tqdm.notebook

import torchbearer
from torchbearer import magics
from torchbearer.callbacks import CallbackList
from torchbearer.callbacks.printer import ConsolePrinter, Tqdm
from torchbearer.metric_values import LazyValues

RUNNING = {"running_acc": 0.0, "running_loss": 1.191919}
FINAL = {"acc": 0.25, "loss": 1.123585, **RUNNING}
FINAL_TEXT = "acc=0.25, loss=1.1236, running_acc=0.0, running_loss=1.1919"


def _pass_state(epoch=0, max_epochs=2, steps=4):
    return {
        torchbearer.EPOCH: epoch,
        torchbearer.MAX_EPOCHS: max_epochs,
        torchbearer.STEPS: steps,
        torchbearer.METRICS: {},
    }


def _drive_training_pass(printer, state, batches, metrics_for_batch):
    printer.on_start_training(state)
    for batch in range(batches):
        state[torchbearer.BATCH] = batch
        state[torchbearer.METRICS] = metrics_for_batch(batch)
        printer.on_step_training(state)
    state[torchbearer.METRICS] = {**state[torchbearer.METRICS], **FINAL}
    printer.on_end_training(state)


def test_console_printer_prints_batch_line_then_final_metrics(capsys):
    state = _pass_state(epoch=0, max_epochs=1)
    _drive_training_pass(ConsolePrinter(), state, 4, lambda batch: dict(RUNNING))

    out = capsys.readouterr().out
    assert out.startswith("\r0/1(t): 0/4 running_acc=0.0, running_loss=1.1919")
    assert out.endswith(f"\r0/1(t): {FINAL_TEXT}\n")


def test_console_printer_labels_validation_with_the_given_letter(capsys):
    printer = ConsolePrinter(validation_label_letter="e", precision=2)
    state = _pass_state(epoch=0, max_epochs=1, steps=2)
    state[torchbearer.BATCH] = 0
    state[torchbearer.METRICS] = {"val_loss": 0.98765}

    printer.on_start_validation(state)
    printer.on_step_validation(state)
    printer.on_end_validation(state)

    assert capsys.readouterr().out == "\r0/1(e): 0/2 val_loss=0.99\r0/1(e): val_loss=0.99\n"


def test_console_printer_rounds_lists_elementwise_and_shows_other_values_as_text(capsys):
    state = _pass_state()
    state[torchbearer.METRICS] = {"vector": [0.123456, 2], "name": "adam", "count": 3, "flag": True}

    ConsolePrinter(precision=3).on_end_training(state)

    assert capsys.readouterr().out == "\r0/2(t): count=3, flag=True, name=adam, vector=[0.123, 2]\n"


def test_console_printer_reads_lazy_device_metrics_as_numbers(capsys):
    state = _pass_state()
    state[torchbearer.METRICS] = LazyValues(
        lambda: {"loss": torch.tensor(0.5), "per_class": torch.tensor([0.25, 0.125])}
    )

    ConsolePrinter().on_end_training(state)

    assert capsys.readouterr().out == "\r0/2(t): loss=0.5, per_class=[0.25, 0.125]\n"


def test_console_printer_refreshes_the_batch_line_far_less_often_than_batches(capsys):
    state = _pass_state(steps=2000)
    _drive_training_pass(ConsolePrinter(), state, 2000, lambda batch: {"running_loss": float(batch)})

    out = capsys.readouterr().out
    batch_lines = re.findall(r"\r0/2\(t\): \d+/2000 ", out)
    assert 1 <= len(batch_lines) < 50
    assert out.endswith(f"\r0/2(t): {FINAL_TEXT}\n")


def _bar_output(**tqdm_args):
    stream = io.StringIO()
    return stream, Tqdm(file=stream, **tqdm_args)


def test_tqdm_bar_per_pass_shows_description_total_and_final_metrics():
    stream, printer = _bar_output()
    _drive_training_pass(printer, _pass_state(epoch=1, max_epochs=2, steps=4), 4, lambda batch: dict(RUNNING))

    final_line = stream.getvalue().split("\r")[-1]
    assert final_line.startswith("1/2(t): 100%")
    assert "4/4" in final_line
    assert final_line.rstrip().endswith(f"{FINAL_TEXT}]")


def test_tqdm_validation_bar_uses_the_validation_letter():
    stream, printer = _bar_output(validation_label_letter="p")
    state = _pass_state(epoch=0, max_epochs=1, steps=1)
    state[torchbearer.METRICS] = {"test_loss": 0.5}

    printer.on_start_validation(state)
    printer.on_step_validation(state)
    printer.on_end_validation(state)

    final_line = stream.getvalue().split("\r")[-1]
    assert final_line.startswith("0/1(p): 100%")
    assert " 1/1 " in final_line
    assert final_line.rstrip().endswith(", test_loss=0.5]")


def test_tqdm_refreshes_the_postfix_far_less_often_than_batches_and_ends_with_final_values():
    stream, printer = _bar_output(mininterval=0)  # tqdm itself redraws on every update
    state = _pass_state(steps=2000)
    _drive_training_pass(printer, state, 2000, lambda batch: {"running_loss": float(batch)})

    lines = stream.getvalue().split("\r")
    postfixes = {match.group(1) for line in lines for match in [re.search(r"running_loss=([\d.]+)\]", line)] if match}
    assert len(lines) > 1000  # the bar itself advanced on every batch
    assert 1 <= len(postfixes) < 50
    assert lines[-1].rstrip().endswith(f"{FINAL_TEXT}]")


def test_tqdm_with_infinite_steps_has_no_total():
    stream, printer = _bar_output()
    _drive_training_pass(printer, _pass_state(steps=-1), 5, lambda batch: dict(RUNNING))

    final_line = stream.getvalue().split("\r")[-1]
    assert final_line.startswith("0/2(t): 5it")


def _epoch_record(loss):
    return {"loss": loss, "train_steps": 4, "validation_steps": None}


def _drive_epochs(printer, history, max_epochs, epochs):
    state = {torchbearer.EPOCH: 0, torchbearer.MAX_EPOCHS: max_epochs, torchbearer.HISTORY: history}
    printer.on_start(state)
    for epoch in epochs:
        state[torchbearer.EPOCH] = epoch
        printer.on_start_epoch(state)
        state[torchbearer.METRICS] = {"loss": 1.0 / (epoch + 1)}
        printer.on_end_epoch(state)
        history.append(_epoch_record(1.0 / (epoch + 1)))
    printer.on_end(state)


def test_tqdm_on_epoch_counts_epochs_to_max_epochs_with_the_last_metrics():
    stream, printer = _bar_output(on_epoch=True)
    _drive_epochs(printer, [], max_epochs=3, epochs=range(3))

    lines = stream.getvalue().split("\r")
    assert lines[1].startswith("  0%") and "0/3" in lines[1]
    assert "3/3" in lines[-1]
    assert lines[-1].rstrip().endswith("loss=0.3333]")


def test_tqdm_on_epoch_resumes_at_the_history_length_showing_the_last_record_without_an_extra_tick():
    stream, printer = _bar_output(on_epoch=True)
    history = [_epoch_record(0.9), _epoch_record(0.8765432)]

    _drive_epochs(printer, history, max_epochs=4, epochs=[2, 3])

    lines = [line for line in stream.getvalue().split("\r") if line.strip()]
    assert " 2/4 " in lines[0]
    assert "loss=0.8765]" in lines[1] and " 2/4 " in lines[1]
    assert "train_steps" not in stream.getvalue()
    assert " 4/4 " in lines[-1]
    assert not any(" 5/4 " in line for line in lines)


def test_tqdm_on_epoch_bar_of_an_evaluate_after_training_counts_one_epoch():
    stream, printer = _bar_output(on_epoch=True, validation_label_letter="e")
    _drive_epochs(printer, [_epoch_record(0.5)], max_epochs=1, epochs=[0])

    lines = [line for line in stream.getvalue().split("\r") if line.strip()]
    assert " 0/1 " in lines[0]
    assert " 1/1 " in lines[-1]


def test_tqdm_passes_its_arguments_to_every_bar_and_they_win_over_defaults():
    stream, printer = _bar_output(desc="custom", ncols=60)
    _drive_training_pass(printer, _pass_state(), 4, lambda batch: dict(RUNNING))

    final_line = stream.getvalue().split("\r")[-1]
    assert final_line.startswith("custom")
    assert len(final_line.rstrip("\n")) <= 60


@pytest.fixture
def notebook_mode():
    magics.set_notebook(True)
    yield
    magics.set_notebook(False)


def test_tqdm_uses_text_bars_outside_notebooks_unless_given_a_module():
    assert Tqdm().tqdm_module is tqdm.tqdm
    assert Tqdm(tqdm_module=tqdm.notebook.tqdm).tqdm_module is tqdm.notebook.tqdm


def test_tqdm_uses_notebook_bars_in_notebook_mode(notebook_mode, monkeypatch):
    monkeypatch.setattr(tqdm.notebook, "IProgress", object)  # as if ipywidgets were installed

    assert Tqdm().tqdm_module is tqdm.notebook.tqdm


def test_tqdm_in_notebook_mode_without_ipywidgets_warns_and_falls_back_to_text_bars(notebook_mode, monkeypatch):
    monkeypatch.setattr(tqdm.notebook, "IProgress", None)

    with pytest.warns(UserWarning, match="pip install ipywidgets"):
        printer = Tqdm()

    assert printer.tqdm_module is tqdm.tqdm


def test_printers_are_only_dispatched_the_hooks_they_use():
    calls = CallbackList([ConsolePrinter()])._hooks("on_step_training")
    assert len(calls) == 1
    assert CallbackList([ConsolePrinter()])._hooks("on_forward") == []


def _bar_lines(err):
    return [line for line in err.replace("\n", "\r").split("\r") if line.strip()]


def test_trial_run_with_verbose_2_draws_a_bar_per_pass_on_stderr(linear_trial, capsys):
    linear_trial.run(2, verbose=2)

    err = capsys.readouterr().err
    for description in ("0/2(t)", "0/2(v)", "1/2(t)", "1/2(v)"):
        assert any(line.startswith(f"{description}: 100%") and " 4/4 " in line for line in _bar_lines(err))
    assert re.search(r"1/2\(t\): 100%.*, acc=[\d.]+, loss=[\d.]+, running_acc=[\d.]+, running_loss=[\d.]+\]", err)
    assert re.search(r"1/2\(v\): 100%.*, val_acc=[\d.]+, val_loss=[\d.]+\]", err)


def test_trial_run_with_verbose_1_draws_one_bar_over_epochs_and_resumes_without_overcounting(linear_trial, capsys):
    linear_trial.run(2, verbose=1)
    first = _bar_lines(capsys.readouterr().err)
    linear_trial.run(3, verbose=1)
    second = _bar_lines(capsys.readouterr().err)

    assert " 0/2 " in first[0] and " 2/2 " in first[-1]
    assert " 2/3 " in second[0] and " 3/3 " in second[-1]
    assert not any(" 4/3 " in line or "(t)" in line for line in first + second)
    resumed_loss = linear_trial.state[torchbearer.HISTORY][1]["loss"]
    assert any(" 2/3 " in line and f"loss={round(resumed_loss, 4)}," in line for line in second)


def test_trial_evaluate_and_replay_bars_count_their_own_epochs(linear_trial, capsys):
    linear_trial.run(2, verbose=0)
    linear_trial.evaluate(verbose=2)
    evaluate_bars = _bar_lines(capsys.readouterr().err)
    linear_trial.replay(verbose=1)
    replay_bars = _bar_lines(capsys.readouterr().err)

    assert evaluate_bars[-1].startswith("0/1(e): 100%")
    assert " 0/2 " in replay_bars[0] and " 2/2 " in replay_bars[-1]
    assert not any("train_steps" in line for line in replay_bars)


def test_console_printer_in_a_trial_prints_one_final_line_per_pass(linear_trial, capsys):
    linear_trial.state[torchbearer.CALLBACK_LIST].append([ConsolePrinter()])
    linear_trial.run(2, verbose=0)

    lines = capsys.readouterr().out.split("\n")
    finals = [line.split("\r")[-1] for line in lines if line]
    assert [line.split(":")[0] for line in finals] == ["0/2(t)", "0/2(v)", "1/2(t)", "1/2(v)"]
    assert re.fullmatch(r"1/2\(v\): val_acc=[\d.]+, val_loss=[\d.]+", finals[-1])
    assert "\r0/2(t): 0/4 running_acc=" in lines[0]


def test_a_printer_is_put_before_the_users_callbacks_only_for_calls_that_show_progress(linear_trial, capsys):
    lists_seen = []
    user_callback = torchbearer.callbacks.on_start(lambda state: lists_seen.append(state[torchbearer.CALLBACK_LIST]))
    linear_trial.state[torchbearer.CALLBACK_LIST].append([user_callback])
    user_list = linear_trial.state[torchbearer.CALLBACK_LIST]

    linear_trial.run(1)  # the trial's verbose=0
    linear_trial.run(2, verbose=2)
    linear_trial.evaluate(2)  # verbose given by position
    linear_trial.evaluate(verbose=0)

    silent_run, shown_run, shown_evaluation, silent_evaluation = lists_seen
    assert silent_run is user_list and silent_evaluation is user_list
    for shown in (shown_run, shown_evaluation):
        assert isinstance(shown.callback, Tqdm) and shown.callback_list is user_list
    assert linear_trial.state[torchbearer.CALLBACK_LIST] is user_list
    assert "(e)" in capsys.readouterr().err
