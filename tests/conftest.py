"""Shared fixtures: small synthetic DVPS datasets written to disk by the real generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

# (sequences, frames, height, width) of the datasets the tests share.
SMALL = (2, 3, 64, 128)


@pytest.fixture(scope="session")
def dvps_roots(tmp_path_factory) -> dict[str, Path]:
    """Per format, a dataset root holding video_sequence/{train,val}/ with SMALL sequences."""
    roots = {}
    for fmt in ("cityscapes_dvps", "semkitti_dvps"):
        root = tmp_path_factory.mktemp(fmt)
        for seed, split in enumerate(("train", "val")):
            seqs, frames, height, width = SMALL
            generate_synthetic_dvps(str(root), fmt, split, seqs, frames, height, width, seed)
        roots[fmt] = root
    return roots


@pytest.fixture
def dvps_copy(dvps_roots, tmp_path):
    """Return a function giving a private, modifiable copy of a format's dataset root."""

    def copy(fmt: str) -> Path:
        dst = tmp_path / fmt
        shutil.copytree(dvps_roots[fmt], dst)
        return dst

    return copy
