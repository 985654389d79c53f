"""Fixtures of the reliability suite: real faults (full disks, read-only folders) and the tools
run as a user runs them, in a subprocess.

A full disk is a small tmpfs and a read-only folder a tmpfs mounted read-only; both need the
permission to mount (root, as in the project's containers). Where that is missing, a
read-only folder falls back to ``chmod 555`` (which binds every user but root) and the
full-disk tests are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _mount_tmpfs(target: Path, options: str) -> bool:
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
        capture_output=True,
        check=False,
    )
    return result.returncode == 0


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path) -> Iterator:
    """A function ``small_disk(kib)`` giving a folder on a file system of ``kib`` KiB, which
    fills up ("No space left on device"); unmounted after the test."""
    mounted: list[Path] = []

    def make(kib: int) -> Path:
        target = tmp_path / f"disk{len(mounted)}"
        if not _mount_tmpfs(target, f"size={kib}k"):
            pytest.skip("cannot mount a small tmpfs here (needs root) to fill a disk")
        mounted.append(target)
        return target

    yield make
    for target in mounted:
        _unmount(target)


@pytest.fixture
def read_only_dir(tmp_path) -> Iterator[Path]:
    """An existing folder in which nothing can be created (a read-only file system where
    mounting is allowed, else ``chmod 555``)."""
    target = tmp_path / "read_only"
    if _mount_tmpfs(target, "ro,size=64k"):
        yield target
        _unmount(target)
        return
    if os.geteuid() == 0:
        pytest.skip("running as root without the permission to mount: chmod binds nothing")
    target.chmod(0o555)
    yield target
    target.chmod(0o755)


def run_tool(
    script: str, *args: str, timeout: float = 600, **kwargs
) -> subprocess.CompletedProcess:
    """Run ``tools/<script>`` with this Python, as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / script), *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def assert_user_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    """A user's mistake, reported as the tools promise: exit code 2, no traceback, and the
    last line of stderr (the message) holding every fragment. Returns that line."""
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message
