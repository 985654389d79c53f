"""Safe output files.

* Atomic writes: data goes to a temporary file beside the target, is flushed to disk
  (``fsync``) and renamed, so a reader never sees a half-written file and an interrupted write
  leaves the target as it was.
* One error for every failed write, :class:`OutputError`: one line naming the path and the
  operating system's reason ("No space left on device", "Permission denied", ...), so that the
  tools can report it and exit 2 instead of printing a traceback.
* :func:`check_writable`: the check the tools run on their output folders before any work.
* :func:`remove_stale_temporaries`: removes what a killed process left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from typing import IO, Any

import cv2
import numpy as np

__all__ = [
    "OutputError",
    "check_writable",
    "open_atomic",
    "output_errors",
    "process_is_running",
    "remove_stale_temporaries",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_png_atomic",
]

# Temporary files of open_atomic: ".<target name>.<pid>.tmp" beside the target.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


class OutputError(OSError):
    """An output that cannot be written; the message names the path and the cause."""


def _reason(error: OSError) -> str:
    return error.strerror or str(error) or type(error).__name__


def check_writable(directory: str, what: str = "output folder", keep: bool = False) -> None:
    """Check that files can be created in ``directory``, by creating (and removing) a small
    file there. Folders it creates for the check are removed again, so a run that stops
    later for another reason leaves nothing behind, unless ``keep``: the check of a run about
    to write there, made by several processes at once (a process removing the folder it made
    would pull it from under another one's check).

    Raises:
        OutputError: "``<what> <directory>: cannot write there (<reason>).``" for a read-only,
            unwritable or full file system, or a path that is a file.
    """
    created = []
    parent = os.path.abspath(directory)
    while not keep and not os.path.exists(parent):
        created.append(parent)
        parent = os.path.dirname(parent)
    probe = os.path.join(directory, f".write_check.{os.getpid()}.tmp")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise OutputError(f"{what} {directory}: cannot write there ({_reason(e)}).") from e
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)
        for folder in created:  # deepest first
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def remove_stale_temporaries(directory: str) -> list[str]:
    """Remove the temporary files of :func:`open_atomic` in ``directory`` whose process is no
    longer running (a run killed during a write leaves one, possibly as large as a checkpoint).

    Returns:
        The removed paths.
    """
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        match = _TEMPORARY.match(name)
        if match is None or process_is_running(int(match["pid"])):
            continue
        path = os.path.join(directory, name)
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
            removed.append(path)
    return removed


def process_is_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (this process counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def output_errors(path: str) -> Iterator[None]:
    """Turn an ``OSError`` raised in the block into an :class:`OutputError` naming ``path``
    and the operating system's reason (an ``OutputError`` passes as it is)."""
    try:
        yield
    except OutputError:
        raise
    except OSError as e:
        raise OutputError(f"{path}: cannot write ({_reason(e)}).") from e


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (its directory is created if missing) for writing;
    when the block ends without an error it is flushed, ``fsync``-ed and renamed to ``path``,
    otherwise removed.

    A process killed inside the block leaves ``path`` as it was and a hidden
    ``.<name>.<pid>.tmp`` beside it, which :func:`remove_stale_temporaries` removes.

    Raises:
        OutputError: the file cannot be created, written or renamed (full disk, read-only or
            unwritable folder, a file where a folder should be); nothing is left behind.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        with output_errors(path):
            os.makedirs(directory, exist_ok=True)
            with open(tmp, mode) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`open_atomic`."""
    with open_atomic(path) as f:
        f.write(data)


def write_png_atomic(path: str, array: np.ndarray) -> None:
    """Encode ``array`` (8- or 16-bit; BGR when it has 3 channels) as PNG at ``path``."""
    ok, data = cv2.imencode(".png", array)
    if not ok:
        raise RuntimeError(f"{path}: OpenCV could not encode a {array.dtype} {array.shape} PNG.")
    write_bytes_atomic(path, data.tobytes())


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (NaN is an error)."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, allow_nan=False) + "\n").encode())
