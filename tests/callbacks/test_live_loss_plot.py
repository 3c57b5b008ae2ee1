import sys

import matplotlib.pyplot as plt
import pytest
import torch
from PIL import Image

import torchbearer
from torchbearer.callbacks.decorators import on_end_epoch, on_step_training
from torchbearer.callbacks.live_loss_plot import LiveLossPlot

livelossplot_outputs = pytest.importorskip("livelossplot.outputs")
ExtremaPrinter, MatplotlibPlot = livelossplot_outputs.ExtremaPrinter, livelossplot_outputs.MatplotlibPlot


def _assert_png_drawn(path):
    image = Image.open(path).convert("L")
    assert image.size[0] > 100 and image.size[1] > 100
    low, high = image.getextrema()
    assert low < high


def _trial(callbacks, classification_data, validation=True):
    x, y = classification_data
    model = torch.nn.Linear(4, 3)
    trial = torchbearer.Trial(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1),
        torch.nn.CrossEntropyLoss(),
        metrics=["loss"],
        callbacks=callbacks,
        verbose=0,
    )
    trial.with_train_data(x, y, batch_size=10, shuffle=False, num_workers=0)
    if validation:
        trial.with_val_data(x, y, batch_size=10, shuffle=False, num_workers=0)
    return trial


def test_epoch_plot_logs_every_epoch_and_draws_a_figure_each_time(tmp_path, classification_data):
    plot = LiveLossPlot(outputs=[MatplotlibPlot(figpath=str(tmp_path / "epoch_{i}.png"))])

    history = _trial([plot], classification_data).run(3)

    logged = plot.plt.logger.log_history
    assert [item.value for item in logged["loss"]] == pytest.approx([record["loss"] for record in history])
    assert [item.value for item in logged["val_loss"]] == pytest.approx([record["val_loss"] for record in history])
    assert [item.step for item in logged["loss"]] == [0, 1, 2]
    for index in range(3):
        _assert_png_drawn(tmp_path / f"epoch_{index}.png")
    assert not (tmp_path / "epoch_3.png").exists()


def test_batch_plot_logs_every_training_step_and_draws_every_batch_step_size(tmp_path, classification_data):
    seen = []

    @on_step_training
    def record(state):
        seen.append(float(state[torchbearer.METRICS]["running_loss"]))

    output = MatplotlibPlot(figpath=str(tmp_path / "batch_{i}.png"))
    plot = LiveLossPlot(on_batch=True, batch_step_size=3, on_epoch=False, outputs=[output])

    _trial([plot, record], classification_data, validation=False).run(1)

    assert [item.value for item in plot.batch_plt.logger.log_history["running_loss"]] == pytest.approx(seen)
    assert len(seen) == 4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["batch_0.png", "batch_1.png"]  # batches 0 and 3
    _assert_png_drawn(tmp_path / "batch_1.png")
    assert plot.plt.logger.log_history == {}


def test_draw_once_draws_nothing_until_the_end(tmp_path, classification_data):
    output = MatplotlibPlot(figpath=str(tmp_path / "plot_{i}.png"))
    drawn_during_run = []

    @on_end_epoch
    def count(state):
        drawn_during_run.append(len(list(tmp_path.iterdir())))

    plot = LiveLossPlot(on_batch=True, batch_step_size=1, draw_once=True, outputs=[output])

    _trial([plot, count], classification_data).run(2)

    assert drawn_during_run == [0, 0]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["plot_0.png", "plot_1.png"]  # batch plot, epoch plot
    assert len(plot.batch_plt.logger.log_history["running_loss"]) == 8


def test_drawing_prints_nothing_and_leaves_no_figure_open_on_a_headless_backend(capsys, classification_data):
    open_before = plt.get_fignums()
    plot = LiveLossPlot(outputs=[MatplotlibPlot(), ExtremaPrinter()])

    _trial([plot], classification_data).run(2)

    assert capsys.readouterr().out == ""
    assert plt.get_fignums() == open_before


def test_hooks_are_bound_only_for_the_chosen_plots():
    epoch_only = LiveLossPlot()
    batch_only = LiveLossPlot(on_batch=True, on_epoch=False)

    assert "on_end_epoch" in vars(epoch_only) and "on_step_training" not in vars(epoch_only)
    assert "on_step_training" in vars(batch_only) and "on_end_epoch" not in vars(batch_only)


def test_missing_livelossplot_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "livelossplot", None)

    with pytest.raises(ImportError, match=r"pip install torchbearer\[plots\]"):
        LiveLossPlot()
