"""Atomic file writes: data goes to a temporary file beside the target, which is then renamed,
so a reader never sees a half-written file and an interrupted write leaves nothing behind."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import IO, Any

import cv2
import numpy as np

__all__ = ["open_atomic", "write_bytes_atomic", "write_json_atomic", "write_png_atomic"]


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (its directory is created if missing) for writing;
    it is renamed to ``path`` when the block ends without an error, and removed otherwise.

    A process killed inside the block leaves ``path`` as it was (a hidden ``.<name>.<pid>.tmp``
    may remain beside it).
    """
    directory, name = os.path.split(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode) as f:
            yield f
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
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
