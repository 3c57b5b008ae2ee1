import subprocess
import sys

import pytest
from PIL import Image

from torchbearer.plotting import plot_history

BLUE = (31, 119, 180)  # matplotlib's first colour: the training curve
ORANGE = (255, 127, 14)  # its second: the val_ curve drawn with it


def _history():
    return [
        {"running_loss": 1.2, "loss": 1.0, "acc": 0.5, "val_loss": 1.1, "val_acc": 0.4, "train_steps": 4},
        {"running_loss": 0.9, "loss": 0.8, "acc": 0.6, "val_loss": 0.9, "val_acc": 0.5, "train_steps": 4},
        {"running_loss": 0.7, "loss": 0.6, "acc": 0.7, "val_loss": 0.8, "val_acc": 0.6, "train_steps": 4},
    ]


def _has_colour(image, colour, box):
    pixels = image.convert("RGB").crop(box).getdata()
    return any(all(abs(a - b) <= 10 for a, b in zip(pixel, colour)) for pixel in pixels)


def test_plot_history_writes_one_subplot_per_metric_with_training_and_val_curves(tmp_path):
    path = plot_history(_history(), str(tmp_path / "history.png"))

    assert path == str(tmp_path / "history.png")
    image = Image.open(path)
    assert image.size == (1200, 400)  # two subplots (loss, acc) side by side, 6x4 inches each at 100 dpi
    assert image.convert("L").getextrema()[0] < image.convert("L").getextrema()[1]
    for left in (0, 600):  # both subplots hold a training and a validation curve
        assert _has_colour(image, BLUE, (left, 0, left + 600, 400))
        assert _has_colour(image, ORANGE, (left, 0, left + 600, 400))


def test_plot_history_leaves_out_running_metrics_whose_epoch_metric_exists(tmp_path):
    history = [dict(record, running_acc=0.1) for record in _history()]

    image = Image.open(plot_history(history, str(tmp_path / "h.png")))

    assert image.size == (1200, 400)  # still loss and acc only; four subplots would need two rows


def test_plot_history_plots_only_the_metrics_asked_for(tmp_path):
    image = Image.open(plot_history(_history(), str(tmp_path / "loss.png"), metrics=["loss"]))

    assert image.size == (600, 400)
    assert _has_colour(image, BLUE, (0, 0, 600, 400)) and _has_colour(image, ORANGE, (0, 0, 600, 400))


def test_plot_history_names_the_available_metrics_when_one_is_unknown(tmp_path):
    with pytest.raises(ValueError, match=r"\['acc', 'loss', 'running_loss'\]"):
        plot_history(_history(), str(tmp_path / "x.png"), metrics=["acuracy"])


def test_plot_history_of_a_real_trial(tmp_path, linear_trial):
    history = linear_trial.run(3, verbose=0)

    image = Image.open(plot_history(history, str(tmp_path / "trial.png")))

    assert image.size == (1200, 400)
    assert _has_colour(image, ORANGE, (0, 0, 600, 400))


def test_plot_history_names_the_extra_when_matplotlib_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)

    with pytest.raises(ImportError, match=r"torchbearer\[plots\]"):
        plot_history(_history(), str(tmp_path / "x.png"))


def test_importing_torchbearer_imports_no_plotting_package():
    code = (
        "import sys, torchbearer, torchbearer.plotting, torchbearer.callbacks.imaging, "
        "torchbearer.callbacks.pycm, torchbearer.callbacks.live_loss_plot, torchbearer.integrations.torchmetrics\n"
        "loaded = [m for m in ('matplotlib', 'pycm', 'torchvision', 'livelossplot', 'torchmetrics', 'PIL') "
        "if m in sys.modules]\n"
        "assert not loaded, loaded"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_plot_history_counts_epochs_from_0_with_whole_number_ticks(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    drawn = []
    savefig = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda figure, *args, **kwargs: (drawn.append(figure), savefig(figure, *args, **kwargs))
    )

    plot_history(_history()[:2], str(tmp_path / "two.png"))

    for axes in drawn[0].axes:
        low, high = axes.get_xlim()
        ticks = [tick for tick in axes.get_xticks() if low <= tick <= high]
        assert ticks == [0, 1], ticks  # not 0, 0.2, ..., 1.0
        assert all(list(line.get_xdata()) == [0, 1] for line in axes.get_lines())
