"""The error of a dataset on disk that cannot be used as it is."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A dataset's files are missing or not what its layout expects. The message names the
    file (and how many others share the problem) and what was expected; the tools print it as
    one line and exit with code 2."""
