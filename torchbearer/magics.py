"""Notebook detection, which picks the progress bar style (``tqdm.notebook`` or plain ``tqdm``).

Importing this module inside an IPython shell registers the line magic ``%torchbearer``:
``%torchbearer notebook`` switches notebook mode on and ``%torchbearer normal`` switches it off.
Notebook mode starts on when the shell is a Jupyter kernel (notebooks, JupyterLab, Colab, VS Code)
and off in the IPython terminal, where notebook widgets cannot be drawn. In plain Python nothing
is registered and IPython is never imported.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

notebook: dict[str, bool] = {"nb": False}
"""The current mode, as ``{'nb': bool}``; read it with :func:`is_notebook`."""


def set_notebook(is_notebook: bool) -> None:
    """Switch notebook mode on or off for progress bars created from now on."""
    notebook["nb"] = is_notebook


def is_notebook() -> bool:
    """Return whether progress bars should use the notebook widget style."""
    return notebook["nb"]


def torchbearer_magic(line: str) -> None:
    """The ``%torchbearer`` line magic: ``notebook`` or ``normal`` sets the mode; other text is ignored."""
    argument = line.strip()
    if argument == "notebook":
        set_notebook(True)
    elif argument == "normal":
        set_notebook(False)


def _running_shell() -> Optional[Any]:
    """The running IPython shell, or ``None``; only looks when IPython is already imported."""
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    return get_ipython() if get_ipython is not None else None


def _is_kernel(shell: Any) -> bool:
    """True for a shell that runs in a Jupyter kernel (ipykernel's ``ZMQInteractiveShell`` or a subclass)."""
    if getattr(shell, "kernel", None) is not None:
        return True
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def _register(shell: Any) -> None:
    shell.register_magic_function(torchbearer_magic, magic_kind="line", magic_name="torchbearer")
    set_notebook(_is_kernel(shell))


_shell = _running_shell()
if _shell is not None:
    _register(_shell)
del _shell
