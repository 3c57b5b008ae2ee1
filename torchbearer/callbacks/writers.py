"""The writers the TensorBoard callbacks log through, shared per directory: TensorBoard's ``SummaryWriter``, or a
:class:`VisdomWriter` that sends the same calls to a visdom server.

TensorBoard files are written with ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard``
package), or ``tensorboardX.SummaryWriter`` when only tensorboardX is installed. (tensorboardX's own
``VisdomWriter`` is not used: with visdom 0.2.4 its ``add_scalar`` fails on every value, since it sends 0-d
arrays.) Callbacks logging to one directory use one writer, closed when the last of them lets go
(:func:`get_writer` / :func:`close_writer`) or when Python exits. In a ``torch.distributed`` run only rank zero
writes; the other ranks get a writer that discards everything.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from torchbearer.distributed import is_rank_zero


class VisdomParams:
    """Keyword arguments for ``visdom.Visdom``, as upper-case attributes.

    Change the class attributes to set defaults for every visdom callback, or pass an instance with some
    attributes overridden as ``visdom_params``.

    Example:
        >>> VisdomParams.ENV = 'experiment-3'  # doctest: +SKIP
        >>> params = VisdomParams()
        >>> params.PORT = 8098
        >>> TensorBoard(visdom=True, visdom_params=params)  # doctest: +SKIP
    """

    SERVER = "http://localhost"
    ENDPOINT = "events"
    PORT = 8097
    IPV6 = True
    HTTP_PROXY_HOST = None
    HTTP_PROXY_PORT = None
    ENV = "main"
    SEND = True
    RAISE_EXCEPTIONS = None
    USE_INCOMING_SOCKET = True
    LOG_TO_FILENAME = None

    def __to_dict__(self) -> dict[str, Any]:
        """Return the parameters as ``visdom.Visdom`` keyword arguments (lower-case names)."""
        return {name.lower(): getattr(self, name) for name in dir(self) if name.isupper()}


def _summary_writer_class() -> type:
    """The TensorBoard writer class: torch's own when the tensorboard package is present, else tensorboardX's."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ImportError(
                "TensorBoard logging needs the tensorboard package (or tensorboardX); "
                "install it with: pip install torchbearer[tensorboard]"
            ) from None
    return SummaryWriter


def _check_visdom_installed() -> None:
    try:
        import visdom  # noqa: F401
    except ImportError:
        raise ImportError(
            "Visdom logging needs the visdom package; install it with: pip install torchbearer[visdom]"
        ) from None


def require_writer_package(visdom: bool) -> None:
    """Raise now, when a callback is built, if the package its writer needs is missing (not at the first log).

    Raises:
        ImportError: visdom (``visdom=True``), or tensorboard/tensorboardX, is not installed.
    """
    if visdom:
        _check_visdom_installed()
    else:
        _summary_writer_class()


class VisdomWriter:
    """Send scalars (line plots), text and images to a visdom server, with the methods of a TensorBoard writer.

    The ``visdom.Visdom`` client is ``vis``. Each scalar tag gets one line plot titled ``<main_tag>-<tag>``;
    every text and image opens a new window.

    Args:
        **visdom_kwargs: Keyword arguments for ``visdom.Visdom`` (see :meth:`VisdomParams.__to_dict__`).

    Raises:
        ConnectionError: If no visdom server answers within a second.

    Example:
        >>> writer = VisdomWriter(server='http://localhost', port=8097, env='main')  # doctest: +SKIP
        >>> writer.add_scalar('loss', 0.25, 3, main_tag='epoch')  # plot 'epoch-loss' gets the point (3, 0.25)
    """

    def __init__(self, **visdom_kwargs: Any) -> None:
        import visdom

        self.vis = visdom.Visdom(**visdom_kwargs)
        if visdom_kwargs.get("send", True) and not self.vis.check_connection(timeout_seconds=1):
            server, port = self.vis.server, self.vis.port
            raise ConnectionError(
                f"no visdom server answered at {server}:{port}; start one (python -m visdom.server -port {port}) "
                "or point VisdomParams.SERVER / VisdomParams.PORT at a running server"
            )
        self._windows: dict[str, str] = {}
        self._points: dict[str, int] = {}

    def add_scalar(
        self, tag: str, scalar_value: Any, global_step: int | None = None, main_tag: str = "default"
    ) -> None:
        """Append a point to the line plot titled ``<main_tag>-<tag>`` (x is the step, or the point count)."""
        title = f"{main_tag}-{tag}"
        step = self._points.get(title, 0) if global_step is None else global_step
        window = self._windows.get(title)
        self._windows[title] = self.vis.line(
            Y=[float(scalar_value)],
            X=[step],
            win=window,
            update="append" if window is not None else None,
            opts={"title": title, "xlabel": "timestep", "ylabel": tag},
        )
        self._points[title] = self._points.get(title, 0) + 1

    def add_text(self, tag: str, text_string: str, global_step: int | None = None) -> None:
        """Show ``text_string`` (HTML) in a new text window titled ``tag``."""
        self.vis.text(text_string, opts={"title": tag})

    def add_image(self, tag: str, img_tensor: Any, global_step: int | None = None) -> None:
        """Show a ``[C, H, W]`` image (values in [0, 1] or bytes) in a new window titled ``tag``."""
        image = img_tensor.detach().cpu().numpy() if isinstance(img_tensor, torch.Tensor) else img_tensor
        self.vis.image(image, opts={"title": tag})

    def flush(self) -> None:
        """Nothing to do: every value is sent to the server when it is added."""

    def close(self) -> None:
        """Stop using the client: forget the plot windows (the server keeps what was sent)."""
        self.vis.use_socket = False  # visdom's listening thread then ends instead of reconnecting
        self._windows.clear()
        self._points.clear()


def _visdom_kwargs(log_dir: str, visdom_params: VisdomParams | None) -> dict[str, Any]:
    """``visdom.Visdom`` kwargs; without explicit params, the events are also logged to ``<log_dir>/log.log``."""
    if visdom_params is None:
        os.makedirs(log_dir, exist_ok=True)
        visdom_params = VisdomParams()
        visdom_params.LOG_TO_FILENAME = os.path.join(log_dir, "log.log")
    return visdom_params.__to_dict__()


def _new_visdom_writer(log_dir: str, visdom_params: VisdomParams | None) -> VisdomWriter:
    _check_visdom_installed()
    return VisdomWriter(**_visdom_kwargs(log_dir, visdom_params))


class _DiscardingWriter:
    """The writer of ranks other than zero: every method accepts anything and does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


@dataclass
class _SharedWriter:
    writer: Any
    users: set = field(default_factory=set)


_writers: dict[tuple[str, bool], _SharedWriter] = {}


def get_writer(log_dir: str, logger: Any, visdom: bool = False, visdom_params: VisdomParams | None = None) -> Any:
    """Return the writer for ``log_dir``, creating it on first use, and register ``logger`` as one of its users.

    Args:
        log_dir: Directory of the event files (for visdom: of the optional event log).
        logger: The object that will release the writer with :func:`close_writer`.
        visdom: If True, a writer that sends to a visdom server instead of writing TensorBoard files.
        visdom_params: The server's :class:`VisdomParams`; None logs the events to ``<log_dir>/log.log`` too.

    Returns:
        A writer with ``add_scalar``, ``add_text``, ``add_image``, ... (``add_graph`` and ``add_embedding`` on
        TensorBoard writers).

    Raises:
        ImportError: If the needed package is not installed.
        ConnectionError: In visdom mode, if no server answers.
    """
    if not is_rank_zero():
        return _DiscardingWriter()
    key = (log_dir, visdom)
    shared = _writers.get(key)
    if shared is None:
        writer = _new_visdom_writer(log_dir, visdom_params) if visdom else _summary_writer_class()(log_dir=log_dir)
        shared = _writers[key] = _SharedWriter(writer)
    shared.users.add(logger)
    return shared.writer


def close_writer(log_dir: str, logger: Any) -> None:
    """Release ``logger``'s use of the writers for ``log_dir``; a writer nobody uses any more is closed."""
    for key in ((log_dir, False), (log_dir, True)):
        shared = _writers.get(key)
        if shared is not None and logger in shared.users:
            shared.users.discard(logger)
            if not shared.users:
                del _writers[key]
                shared.writer.close()


@atexit.register
def _close_open_writers() -> None:
    """Close the writers still in use when Python exits (TensorBoard callbacks keep theirs between calls)."""
    for shared in list(_writers.values()):
        shared.writer.close()
    _writers.clear()
