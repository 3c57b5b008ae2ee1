"""Checkpoint files that survive crashes and cannot run code when read back.

:func:`atomic_save` writes a complete file or nothing: the object goes to a temporary file in the
destination folder, is flushed to disk, and is renamed over the final name in one step. A process
killed mid-write leaves the previous file untouched (and at most a hidden temporary file beside it).

:func:`safe_load` reads with ``weights_only=True``: tensors, numbers, strings, lists, tuples and
dicts load; anything whose unpickling would call arbitrary code is refused before it runs. A file
that is truncated or whose bytes were altered is reported as damaged, naming the file.

Stale temporary files: each temporary name records the writing process's id and host
(``.<name>.<pid>@<host>.<random>.tmp``). Every :func:`atomic_save` first removes the temporary
files in its folder that were left by a dead process on this host. Files written from other hosts
(shared file systems) are left alone, since their writers may still be running.
"""

from __future__ import annotations

import os
import pickle
import re
import secrets
import socket
import zipfile
from collections.abc import Callable
from typing import Any, BinaryIO, Union

import torch

from torchbearer.errors import TorchbearerError

PathLike = Union[str, "os.PathLike[str]"]

_TEMPORARY_SUFFIX = ".tmp"
_WRITER_TAG = re.compile(r"\.(?P<pid>\d+)@(?P<host>[A-Za-z0-9-]*)\.[0-9a-f]{8}\.tmp$")


class CheckpointError(TorchbearerError, RuntimeError):
    """A checkpoint file could not be read back; the message names the file."""


class DamagedCheckpointError(CheckpointError):
    """The file is truncated or corrupt (for example a copy that was cut short)."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds objects whose unpickling could run arbitrary code, so it was not loaded."""


def atomic_save(
    obj: Any,
    path: PathLike,
    pickle_module: Any = torch.serialization.pickle,
    pickle_protocol: int = torch.serialization.DEFAULT_PROTOCOL,
) -> None:
    """Save ``obj`` with :func:`torch.save` so that ``path`` always holds a complete file.

    The data is written to a temporary file in the same folder, flushed and synced to disk, then
    renamed onto ``path`` (an atomic replace), and the folder itself is synced so the rename
    survives a power cut. If writing fails the temporary file is removed and the error re-raised;
    an existing file at ``path`` is left as it was.

    Args:
        obj: What to save (anything :func:`torch.save` accepts).
        path: The destination file. Its folder must exist.
        pickle_module: Passed to :func:`torch.save`.
        pickle_protocol: Passed to :func:`torch.save`.

    Example:
        >>> atomic_save({'weights': model.state_dict()}, 'checkpoints/model.pt')  # doctest: +SKIP
    """

    def write(file: BinaryIO) -> None:
        torch.save(obj, file, pickle_module=pickle_module, pickle_protocol=pickle_protocol)

    _atomic_write(path, write)


def atomic_write_text(text: str, path: PathLike) -> None:
    """Write ``text`` (UTF-8) so that ``path`` always holds either its old content or all of ``text``.

    As :func:`atomic_save`: a temporary file in the same folder, synced, then renamed onto ``path``.
    """
    _atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def _atomic_write(path: PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, sync it, and rename it onto ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    _remove_stale_temporaries(folder)
    temporary = os.path.join(folder, f".{os.path.basename(path)}.{_writer_tag()}{_TEMPORARY_SUFFIX}")
    try:
        with open(temporary, "xb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _sync_folder(folder)


def safe_load(path: PathLike, map_location: Any = None) -> Any:
    """Load a file written by :func:`torch.save` without allowing it to run code.

    The file's checksums are verified first (files in PyTorch's zip format), then it is read with
    ``torch.load(path, weights_only=True, map_location=map_location)``.

    Args:
        path: The file to read.
        map_location: Passed to :func:`torch.load` (for example ``'cpu'``).

    Returns:
        The saved object.

    Raises:
        DamagedCheckpointError: The file is truncated or corrupt.
        UnsafeCheckpointError: Loading the file would need unrestricted unpickling; the original
            refusal is the error's ``__cause__``. Load it with ``torch.load(path, weights_only=False)``
            only if you trust where it came from.
        FileNotFoundError: There is no file at ``path``.

    Example:
        >>> trial.load_state_dict(safe_load('model.03-0.42.pt', map_location='cpu'))  # doctest: +SKIP
    """
    path = os.fspath(path)
    with open(path, "rb") as file:  # a missing or unreadable file raises here, as usual
        is_zip = zipfile.is_zipfile(file)
    if is_zip:
        _verify_checksums(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "Weights only load failed" in str(error):
            raise UnsafeCheckpointError(
                f"checkpoint {path!r} was refused: loading it would run arbitrary code (it holds objects that "
                "torch.load(weights_only=True) does not allow). If you trust its source, load it with "
                f"torch.load({path!r}, weights_only=False)"
            ) from error
        raise _damaged(path, error) from error
    except Exception as error:
        if is_zip:  # checksums passed: the failure is not damage (e.g. a bad map_location)
            raise
        # Not a zip archive: a truncated or foreign file, or a pre-1.6 torch.save file that failed to parse.
        raise _damaged(path, error) from error


def _damaged(path: str, error: BaseException) -> DamagedCheckpointError:
    return DamagedCheckpointError(
        f"checkpoint {path!r} is damaged (truncated or corrupt) and cannot be loaded: {error}. "
        "Use an earlier checkpoint or save it again."
    )


def _verify_checksums(path: str) -> None:
    """Raise :class:`DamagedCheckpointError` if any member of the zip file fails its CRC check."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise _damaged(path, error) from error
    if bad_member is not None:
        raise DamagedCheckpointError(
            f"checkpoint {path!r} is damaged: its part {bad_member!r} fails its checksum. "
            "Use an earlier checkpoint or save it again."
        )


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())


def _writer_tag() -> str:
    """``<pid>@<host>.<random>``: who writes a temporary file, so stale ones can be recognised."""
    return f"{os.getpid()}@{_host()}.{secrets.token_hex(4)}"


def _remove_stale_temporaries(folder: str) -> None:
    """Delete temporary files in ``folder`` left by processes of this host that no longer run."""
    if os.name != "posix":  # no safe way to probe a process id elsewhere; leave the files
        return
    host, own_pid = _host(), os.getpid()
    with os.scandir(folder) as entries:
        for entry in entries:
            match = _WRITER_TAG.search(entry.name)
            if match is None or not entry.name.startswith(".") or match["host"] != host:
                continue
            pid = int(match["pid"])
            if pid != own_pid and not _process_exists(pid):
                try:
                    os.remove(entry.path)
                except FileNotFoundError:  # another process cleaned it up first
                    pass


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _sync_folder(folder: str) -> None:
    """Flush the folder entry so the rename is durable (POSIX; Windows cannot open folders)."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems (e.g. certain network mounts) refuse to sync folders
        pass
    finally:
        os.close(descriptor)
