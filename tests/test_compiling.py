"""``Trial.with_compile`` (``torchbearer.compiling``): one compiled region for forward, loss and backward.

Compiling dominates these tests' time: the first test compiles with inductor (C++ kernels, about
10 s of CPU on a cold cache); the others test the Trial's logic with the ``aot_eager`` backend,
which traces the same graphs but skips code generation.
"""

import collections
import io

import pytest
import torch
from torch import nn
from torch._dynamo.utils import counters

import torchbearer
from torchbearer import Callback, Trial
from torchbearer.callbacks import on_forward
from torchbearer.compiling import _BACKWARD_IN_THE_GRAPH, CompiledRegion, region_blocker, uses_cuda_graphs
from torchbearer.errors import CriterionError, TorchbearerWarning


@pytest.fixture
def data():
    """50 samples of 4 features, 3 classes: batches of 16 leave a short last batch of 2."""
    x = torch.randn(50, 4)
    return x, x[:, :3].argmax(dim=1)


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _trial(data, compiled=True, callbacks=(), model_class=_mlp, backend="aot_eager", **compile_kwargs) -> Trial:
    torch.manual_seed(0)
    model = model_class()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    trial = Trial(model, optimizer, nn.CrossEntropyLoss(), ["acc", "loss"], list(callbacks), verbose=0)
    trial.with_train_data(*data, batch_size=16, shuffle=False, num_workers=0)
    trial.with_val_data(*data, batch_size=16, num_workers=0)
    return trial.with_compile(backend=backend, **compile_kwargs) if compiled else trial


def _losses(history):
    return [record[key] for record in history for key in ("loss", "val_loss")]


def _graphs_compiled() -> int:
    return counters["stats"]["unique_graphs"]


def test_compiled_losses_match_eager_and_nothing_recompiles_after_the_first_epoch(data):
    eager = _trial(data, compiled=False).run(3)
    trial = _trial(data, backend="inductor")
    compiled_per_epoch = []
    for epoch in range(1, 4):
        before = _graphs_compiled()
        trial.run(epoch)
        compiled_per_epoch.append(_graphs_compiled() - before)
    assert compiled_per_epoch[0] > 0 and compiled_per_epoch[1:] == [0, 0]  # the short last batch compiled once
    assert trial._compilation.region is not None and trial._compilation.region.failure is None
    assert _losses(trial.state[torchbearer.HISTORY]) == pytest.approx(_losses(eager), rel=1e-4)


def test_a_callback_on_forward_splits_the_region_and_still_runs_every_batch(data):
    seen = []

    @on_forward
    def record(state):
        seen.append(state[torchbearer.Y_PRED].shape[0])

    eager = _trial(data, compiled=False).run(2)
    trial = _trial(data, callbacks=[record])
    history = trial.run(2)
    assert seen == [16, 16, 16, 2] * 2
    assert trial._compilation.region is None  # the Trial's closure ran around the compiled model
    assert _losses(history) == pytest.approx(_losses(eager), rel=1e-4)


def test_a_model_returning_a_named_tuple_for_a_criterion_of_several_outputs_compiles_as_one_region(data):
    Outputs = collections.namedtuple("Outputs", "logits norm")

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(4, 3)

        def forward(self, x):
            logits = self.linear(x)
            return Outputs(logits, logits.pow(2).mean())

    def criterion(logits, norm, y_true):
        return nn.functional.cross_entropy(logits, y_true) + 0.01 * norm

    def trial(compiled):
        torch.manual_seed(0)
        model = TwoOutputs()
        trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), criterion, ["loss"], verbose=0)
        trial.with_train_data(*data, batch_size=16, shuffle=False, num_workers=0)
        return trial.with_compile(backend="aot_eager") if compiled else trial

    compiled = trial(compiled=True)
    losses = [record["loss"] for record in compiled.run(2)]
    assert losses == pytest.approx([record["loss"] for record in trial(compiled=False).run(2)], rel=1e-5)
    assert compiled._compilation.region.failure is None


def test_region_blocker_names_the_hook_and_the_callback_inside_the_region(data):
    class ScaleLoss(Callback):
        def on_criterion(self, state):
            state[torchbearer.LOSS] = state[torchbearer.LOSS] * 2

    state = _trial(data, callbacks=[ScaleLoss()]).state
    assert region_blocker(state, default_closure=True) == (
        "on_criterion of ScaleLoss runs inside it (between the forward pass and the backward)"
    )
    assert "with_closure" in region_blocker(state, default_closure=False)


def test_a_custom_closure_runs_eagerly_around_the_compiled_model(data):
    calls = []

    def closure(state):
        calls.append(state[torchbearer.BATCH])
        return torchbearer.bases.standard_closure()(state)

    eager = _trial(data, compiled=False).run(1)
    trial = _trial(data).with_closure(closure)
    assert _losses(trial.run(1)) == pytest.approx(_losses(eager), rel=1e-4)
    assert calls == [0, 1, 2, 3] and trial._compilation.region is None


def test_explain_reports_each_graph_break_with_its_cause_and_the_step_falls_back(data, capsys):
    class Printing(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(4, 8), nn.Linear(8, 3)

        def forward(self, x):
            hidden = self.first(x)
            torch._dynamo.graph_break()  # as a print() or .item() in a forward would
            return self.second(hidden.relu())

    eager = _trial(data, compiled=False, model_class=Printing).run(2)
    with pytest.warns(TorchbearerWarning, match="does not compile as one graph"):
        history = _trial(data, model_class=Printing, explain=True).run(2)
    report = capsys.readouterr().out
    assert "graph break(s)" in report and "0 graph break(s)" not in report
    assert "cause: Call to `torch._dynamo.graph_break()` at " in report and "in forward" in report
    assert _losses(history) == pytest.approx(_losses(eager), rel=1e-4)  # the gradients still flow


def test_explain_reports_one_graph_for_a_plain_model_and_changes_nothing(data, capsys):
    eager = _trial(data, compiled=False).run(1)
    history = _trial(data, explain=True).run(1)
    assert "training step's region: 1 graph(s), 0 graph break(s)." in capsys.readouterr().out
    assert _losses(history) == pytest.approx(_losses(eager), rel=1e-4)


def test_a_mistake_in_the_data_gets_the_trial_s_explained_error(data):
    x, y = data
    trial = _trial((x, y.unsqueeze(1)))
    with pytest.warns(TorchbearerWarning), pytest.raises(CriterionError, match=r"squeeze it"):
        trial.run(1)


def test_a_run_resumed_mid_epoch_with_compile_ends_as_one_never_interrupted(data):
    class SaveAt(Callback):
        def __init__(self):
            self.saved = None

        def on_step_training(self, state):
            if (state[torchbearer.EPOCH], state[torchbearer.BATCH]) == (1, 1):
                buffer = io.BytesIO()
                torch.save(state[torchbearer.SELF].state_dict(), buffer)
                self.saved = buffer.getvalue()

    saver = SaveAt()
    reference = _trial(data, callbacks=[saver]).run(3)
    saved = torch.load(io.BytesIO(saver.saved))
    assert list(saved["model"]) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # plain keys, no "_orig_mod."
    resumed = _trial(data)
    resumed.load_state_dict(saved)
    assert _losses(resumed.run(3)) == pytest.approx(_losses(reference), rel=1e-5)


def test_accumulation_compiled_matches_accumulation_eager(data):
    eager = _trial(data, compiled=False).with_accumulation(2).run(2)
    compiled = _trial(data).with_accumulation(2)
    assert _losses(compiled.run(2)) == pytest.approx(_losses(eager), rel=1e-4)
    assert compiled._compilation.region is not None and compiled._compilation.region.failure is None


def test_cuda_graph_modes_are_recognised():
    assert uses_cuda_graphs({"mode": "reduce-overhead"}) and uses_cuda_graphs({"mode": "max-autotune"})
    assert not uses_cuda_graphs({}) and not uses_cuda_graphs({"mode": "max-autotune-no-cudagraphs"})
    assert not uses_cuda_graphs({"mode": "reduce-overhead", "options": {"triton.cudagraphs": False}})


def test_without_a_traceable_backward_forward_and_criterion_compile_and_autograd_runs_the_backward(data, monkeypatch):
    monkeypatch.setattr(torchbearer.compiling, "BACKWARD_TRACEABLE", False)  # as on a torch without trace_autograd_ops
    eager = _trial(data, compiled=False).run(2)
    trial = _trial(data)
    assert _losses(trial.run(2)) == pytest.approx(_losses(eager), rel=1e-4)
    assert trial._compilation.region.failure is None


def test_each_region_compiles_on_its_own_past_dynamo_s_limit_of_eight_versions():
    compiled = []
    for width in range(4, 14):  # ten models: without isolate_recompiles the ninth would silently run eagerly
        model = nn.Sequential(nn.Linear(4, width), nn.ReLU(), nn.Linear(width, 3))
        region = CompiledRegion(model, nn.CrossEntropyLoss(), None, "cpu", 1, {"backend": "aot_eager"})
        before = _graphs_compiled()
        with _BACKWARD_IN_THE_GRAPH:
            region(torch.randn(8, 4), torch.randint(0, 3, (8,)))
        compiled.append(_graphs_compiled() - before)
    assert compiled == [1] * 10
