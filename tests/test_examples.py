"""Every example script runs with ``--fast`` and produces what its docstring promises.

The scripts start together (as many at a time as there are CPUs) when the first test asks for
them; each test then checks one script's exit code, printed results and files.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = [
    "quickstart",
    "gan",
    "vae",
    "svm",
    "function_optimisation",
    "adversarial",
    "regularisers",
    "custom_loader",
    "serialisation",
    "history_replay",
    "tensorboard_logging",
    "transfer_learning",
    "lr_finder",
    "mixed_precision",
    "distributed",
    "hyperparameter_search",
]
NUMBER = r"([-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"


class Run:
    """One finished example: its output folder, exit code and printed text."""

    def __init__(self, out: Path, completed: subprocess.CompletedProcess) -> None:
        self.out = out
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    def number(self, label: str) -> float:
        """The number printed right after ``label`` (e.g. ``'val_acc='``)."""
        match = re.search(re.escape(label) + r"\s*" + NUMBER, self.stdout)
        assert match, f"{label!r} not found in the output:\n{self.stdout}"
        return float(match.group(1))


def _run_example(name: str, root: Path) -> Run:
    out = root / name
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), "--fast", "--out", str(out)],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    return Run(out, completed)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Future]:
    root = tmp_path_factory.mktemp("examples")
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        yield {name: pool.submit(_run_example, name, root) for name in NAMES}


def finished(runs: dict[str, Future], name: str) -> Run:
    run = runs[name].result()
    assert run.returncode == 0, f"examples/{name}.py --fast failed:\n{run.stdout}\n{run.stderr[-4000:]}"
    return run


def assert_png(path: Path) -> None:
    """The file is a PNG image of reasonable size with more than one colour in it."""
    from PIL import Image

    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width >= 100 and image.height >= 100
        low, high = image.convert("L").getextrema()
    assert low < high, f"{path} is blank"


def test_every_example_script_is_tested():
    scripts = {path.stem for path in EXAMPLES.glob("*.py")} - {"common"}
    assert scripts == set(NAMES)


def test_quickstart_trains_and_writes_checkpoint_log_and_plot(runs):
    run = finished(runs, "quickstart")
    assert 0.5 < run.number("val_acc=") <= 1  # ten digits: guessing gets 0.1
    assert run.number("loss=") > 0
    assert set(torch.load(run.out / "model.pt")) >= {"model", "optimizer", "history"}
    assert len((run.out / "log.csv").read_text().splitlines()) == 3  # header and two epochs
    assert_png(run.out / "history.png")


def test_gan_reports_both_losses_and_draws_samples(runs):
    pytest.importorskip("torchvision")
    run = finished(runs, "gan")
    assert run.number("epochs:") == 3
    assert math.isfinite(run.number("g_loss=")) and run.number("g_loss=") > 0
    assert math.isfinite(run.number("d_loss=")) and run.number("d_loss=") > 0
    assert_png(run.out / "samples.png")
    assert_png(run.out / "losses.png")


def test_vae_reports_kl_from_its_state_key_and_draws_reconstructions(runs):
    pytest.importorskip("torchvision")
    run = finished(runs, "vae")
    assert run.number("val_loss=") > 0
    assert run.number("kl=") >= 0 and run.number("val_kl=") >= 0
    assert_png(run.out / "reconstructions.png")
    assert_png(run.out / "samples.png")


def test_svm_separates_the_blobs_and_plots_the_boundary(runs):
    run = finished(runs, "svm")
    assert run.number("svm_acc=") >= 0.8
    assert "boundary:" in run.stdout
    assert_png(run.out / "decision_boundary.png")


def test_function_optimisation_shows_amsgrad_beating_adam(runs):
    run = finished(runs, "function_optimisation")
    adam, amsgrad = run.number("Adam: final x ="), run.number("AMSGrad: final x =")
    assert -1 <= amsgrad < adam <= 1
    assert_png(run.out / "rosenbrock.png")
    assert_png(run.out / "adam_vs_amsgrad.png")


def test_adversarial_accuracy_falls_as_epsilon_grows(runs):
    pytest.importorskip("torchvision")
    run = finished(runs, "adversarial")
    assert run.number("epsilon=0.30 val_acc=") < run.number("epsilon=0.00 val_acc=")
    assert_png(run.out / "accuracy_vs_epsilon.png")
    assert_png(run.out / "examples.png")


def test_regularisers_table_has_a_test_accuracy_per_regulariser(runs):
    run = finished(runs, "regularisers")
    for name in ("baseline", "mixup", "cutmix", "cutout", "label smoothing"):
        match = re.search(rf"^{name}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", run.stdout, re.MULTILINE)
        assert match, f"no table row for {name}:\n{run.stdout}"
        assert 0 <= float(match.group(2)) <= 1
    assert_png(run.out / "test_accuracy.png")


def test_custom_loader_trains_and_predicts_on_dictionaries(runs):
    run = finished(runs, "custom_loader")
    assert 0 <= run.number("test_acc=") <= 1
    assert "misclassified validation ids:" in run.stdout
    assert_png(run.out / "mistakes.png")
    assert_png(run.out / "history.png")


def test_serialisation_resumes_from_a_weights_only_checkpoint(runs):
    run = finished(runs, "serialisation")
    assert "resumed at epoch 2; the history now has 4 epochs" in run.stdout
    checkpoint = torch.load(run.out / "checkpoint.pt", weights_only=True)
    assert len(checkpoint["history"]) == 4
    assert torch.load(run.out / "best_model.pt", weights_only=True).keys() == {
        "1.weight", "1.bias", "3.weight", "3.bias"
    }  # fmt: skip
    assert_png(run.out / "resumed_history.png")


def test_history_replay_prints_the_table_and_replays_into_a_csv(runs):
    run = finished(runs, "history_replay")
    assert "replayed 3 epochs" in run.stdout
    lines = (run.out / "history.csv").read_text().splitlines()
    assert len(lines) == 4 and "val_acc" in lines[0].split(",")
    assert_png(run.out / "history.png")


def test_tensorboard_logging_writes_event_files_that_read_back(runs):
    pytest.importorskip("torchvision")
    run = finished(runs, "tensorboard_logging")
    assert list(run.out.rglob("events.out.tfevents.*"))
    assert "'epoch/val_acc'" in run.stdout
    assert_png(run.out / "scalars.png")


def test_transfer_learning_trains_only_the_new_head(runs):
    pytest.importorskip("torchvision")
    run = finished(runs, "transfer_learning")
    assert "training 5,130 of 11,181,642 parameters" in run.stdout
    assert 0 <= run.number("val_acc=") <= 1
    assert_png(run.out / "history.png")


def test_lr_finder_suggests_a_rate_inside_the_sweep(runs):
    run = finished(runs, "lr_finder")
    assert 1e-4 <= run.number("suggested lr =") <= 10
    assert 0 <= run.number("val_acc=") <= 1
    assert_png(run.out / "lr_finder.png")
    assert_png(run.out / "history.png")


def test_mixed_precision_prints_a_row_per_variant(runs):
    run = finished(runs, "mixed_precision")
    for variant in ("fp32", "bf16", "fp16", "bf16 + accumulate 4 + compile + prefetch"):
        match = re.search(rf"^{re.escape(variant)}\s+val_acc={NUMBER}", run.stdout, re.MULTILINE)
        assert match and 0 <= float(match.group(1)) <= 1, f"no result for {variant}:\n{run.stdout}"
    assert_png(run.out / "variants.png")


def test_distributed_runs_as_a_single_process_and_saves(runs):
    run = finished(runs, "distributed")
    assert "1 process(es):" in run.stdout
    assert 0 <= run.number("val_acc=") <= 1
    assert len((run.out / "log.csv").read_text().splitlines()) == 3
    assert len(torch.load(run.out / "model.pt")["history"]) == 2


def test_hyperparameter_search_prunes_trials_and_draws_the_study(runs):
    pytest.importorskip("optuna")
    run = finished(runs, "hyperparameter_search")
    match = re.search(r"^(\d+) trials: (\d+) complete, (\d+) pruned$", run.stdout, re.MULTILINE)
    assert match, run.stdout
    trials, complete, pruned = map(int, match.groups())
    assert trials == 10 and complete + pruned == trials and pruned >= 1
    assert 0.5 <= run.number("val_acc=") <= 1
    assert (run.out / "study.log").is_file()  # the journal other workers can join
    assert_png(run.out / "optimisation_history.png")
    assert_png(run.out / "param_importances.png")


# Draws figures with the examples' own plotting functions, in a child process (importing an example registers
# its state keys), and reports what each figure shows: labels, limits, ticks, lines, bars and legend.
FIGURE_FACTS = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])

def axes_facts(axes):
    low, high = axes.get_xlim()
    legend = axes.get_legend()
    return {
        "xlabel": axes.get_xlabel(),
        "title": axes.get_title(),
        "ylim": [float(limit) for limit in axes.get_ylim()],
        "xticks": [float(tick) for tick in axes.get_xticks() if low <= tick <= high],
        "lines": [
            {"x": [float(x) for x in line.get_xdata()], "marker": str(line.get_marker()),
             "linestyle": line.get_linestyle(), "linewidth": line.get_linewidth(), "markersize": line.get_markersize()}
            for line in axes.get_lines() if line.get_label() != "saved, then resumed"
        ],
        "bars": len(axes.patches),
        "legend": [text.get_text() for text in legend.get_texts()] if legend else [],
    }

results = {}
for name, (module, function, arguments) in json.loads(sys.stdin.read()).items():
    figure = getattr(importlib.import_module(module), function)(*arguments)
    results[name] = [axes_facts(axes) for axes in figure.axes]
print("FACTS" + json.dumps(results))
"""


def _history(epochs: int, **keys: float) -> list:
    return [{key: value + 0.01 * epoch for key, value in keys.items()} for epoch in range(epochs)]


@pytest.fixture(scope="module")
def figures() -> dict:
    same = _history(3, val_acc=0.9)  # four variants with identical results: the worst case for hiding lines
    requests = {
        "mixed_precision": ("mixed_precision", "plot_variants", [{name: same for name in "abcd"}]),
        "regularisers 1": ("regularisers", "plot_test_accuracy", [{name: {"test_acc": 0.97} for name in "abcde"}, 1]),
        "regularisers 30": ("regularisers", "plot_test_accuracy", [{"baseline": {"test_acc": 0.99}}, 30]),
        "gan": ("gan", "plot_losses", [_history(2, g_loss=1.0, d_loss=0.5)]),
        "serialisation": ("serialisation", "plot_resumed_history", [_history(4, val_acc=0.8), 2]),
        "tensorboard_logging": (
            "tensorboard_logging", "plot_scalars",
            [{f"epoch/{prefix}{name}": [[0, 0.5], [1, 0.4]] for prefix in ("", "val_") for name in ("loss", "acc")}],
        ),
    }  # fmt: skip
    completed = subprocess.run(
        [sys.executable, "-c", FIGURE_FACTS, str(EXAMPLES)], input=json.dumps(requests), capture_output=True,
        text=True, timeout=300, env={**os.environ, "MPLBACKEND": "Agg"},
    )  # fmt: skip
    assert "FACTS" in completed.stdout, completed.stderr[-4000:]
    return json.loads(completed.stdout.split("FACTS", 1)[1])


@pytest.mark.parametrize("name", ["mixed_precision", "gan", "serialisation", "tensorboard_logging"])
def test_epoch_axes_count_from_0_with_whole_number_ticks(figures, name):
    for axes in figures[name]:
        assert axes["xlabel"] == "epoch"
        assert all(tick == int(tick) for tick in axes["xticks"]), axes["xticks"]
        assert all(line["x"][0] == 0 for line in axes["lines"])


def test_mixed_precision_lines_all_stay_visible_when_their_values_coincide(figures):
    [axes] = figures["mixed_precision"]
    lines = axes["lines"]
    assert len(lines) == 4 and axes["legend"] == list("abcd")
    assert len({(line["marker"], line["linestyle"]) for line in lines}) == 4
    # each line is drawn narrower than every line under it, so none covers another
    assert all(lower["linewidth"] > upper["linewidth"] for lower, upper in zip(lines, lines[1:]))
    assert all(lower["markersize"] > upper["markersize"] for lower, upper in zip(lines, lines[1:]))


def test_regularisers_bars_start_at_0_and_the_title_counts_epochs_in_good_grammar(figures):
    [one], [thirty] = figures["regularisers 1"], figures["regularisers 30"]
    assert one["bars"] == 5
    assert one["ylim"][0] == 0 and one["ylim"][1] >= 1
    assert one["title"] == "the same CNN after 1 epoch"
    assert thirty["title"] == "the same CNN after 30 epochs"
