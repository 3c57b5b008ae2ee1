"""What a notebook user sees: progress bars as tqdm's notebook widget in Jupyter, and the magic."""

import json

import pytest

nbformat = pytest.importorskip("nbformat")
NotebookClient = pytest.importorskip("nbclient").NotebookClient
pytest.importorskip("ipykernel")
pytest.importorskip("ipywidgets")

TRAIN = """
import torch, torchbearer
from torchbearer import Trial
model = torch.nn.Linear(4, 2)
trial = Trial(model, torch.optim.SGD(model.parameters(), lr=0.1), torch.nn.CrossEntropyLoss(), metrics=['acc', 'loss'])
trial.with_train_data(torch.randn(32, 4), torch.randint(0, 2, (32,)), batch_size=8, num_workers=0)
history = trial.run(2)
print(sorted(history[-1]))
"""


def _execute(*cells):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    return notebook.cells


def _output_kinds(cell):
    kinds = set()
    for output in cell.outputs:
        kinds.update(output.get("data", {}).keys())
        if output.output_type == "stream":
            kinds.add(output.name)
    return kinds


def test_progress_bars_are_notebook_widgets_in_jupyter():
    cells = _execute("import torchbearer\nprint(torchbearer.magics.is_notebook())", TRAIN)
    assert cells[0].outputs[0].text.strip() == "True"
    assert "application/vnd.jupyter.widget-view+json" in _output_kinds(cells[1])
    assert "'acc', 'loss'" in "".join(output.get("text", "") for output in cells[1].outputs)


def test_magic_switches_back_to_text_bars():
    cells = _execute("import torchbearer\n%torchbearer normal", TRAIN)
    kinds = _output_kinds(cells[1])
    assert "application/vnd.jupyter.widget-view+json" not in kinds
    assert "stderr" in kinds
    assert json.dumps([o.get("text", "") for o in cells[1].outputs]).count("0/2(t)") >= 1
