import importlib
import subprocess
import sys
import types

import pytest

import torchbearer.magics as magics


class _Shell:
    """Stands in for a running IPython shell: records the magics registered on it."""

    def __init__(self):
        self.magics = {}

    def register_magic_function(self, func, magic_kind, magic_name):
        self.magics[(magic_kind, magic_name)] = func


class ZMQInteractiveShell(_Shell):
    """Named like ipykernel's shell, as in a Jupyter notebook."""


class TerminalInteractiveShell(_Shell):
    """Named like the IPython terminal's shell."""


@pytest.fixture
def import_in_shell(monkeypatch):
    """Re-import torchbearer.magics as if IPython were running the given shell; restore it afterwards."""

    def run(shell):
        monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
        return importlib.reload(magics)

    yield run
    monkeypatch.undo()
    importlib.reload(magics)


def test_set_notebook_switches_the_mode():
    magics.set_notebook(True)
    try:
        assert magics.is_notebook() is True
        assert magics.notebook == {"nb": True}
    finally:
        magics.set_notebook(False)
    assert magics.is_notebook() is False


def test_plain_python_import_is_not_notebook_and_needs_no_ipython():
    code = "import sys, torchbearer.magics as m; print(m.is_notebook(), 'IPython' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]


def test_import_in_a_jupyter_kernel_registers_the_magic_and_turns_notebook_mode_on(import_in_shell):
    shell = ZMQInteractiveShell()

    module = import_in_shell(shell)

    assert module.is_notebook() is True
    assert ("line", "torchbearer") in shell.magics


def test_import_in_the_ipython_terminal_registers_the_magic_but_stays_in_normal_mode(import_in_shell):
    shell = TerminalInteractiveShell()

    module = import_in_shell(shell)

    assert module.is_notebook() is False
    assert ("line", "torchbearer") in shell.magics


def test_shell_with_a_kernel_attribute_counts_as_a_notebook(import_in_shell):
    shell = _Shell()
    shell.kernel = object()

    assert import_in_shell(shell).is_notebook() is True


def test_ipython_imported_but_no_shell_running_changes_nothing(import_in_shell):
    assert import_in_shell(None).is_notebook() is False


def test_magic_switches_between_notebook_and_normal_and_ignores_other_words(import_in_shell):
    shell = TerminalInteractiveShell()
    module = import_in_shell(shell)
    magic = shell.magics[("line", "torchbearer")]

    magic("notebook")
    assert module.is_notebook() is True
    magic("something else")
    assert module.is_notebook() is True
    magic(" normal ")
    assert module.is_notebook() is False
