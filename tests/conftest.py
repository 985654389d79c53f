"""Shared fixtures: small synthetic DVPS datasets written to disk by the real generator."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
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


def write_cityscapes_dvps_frame(
    split_dir: Path,
    seq: int,
    frame: int,
    image: np.ndarray,
    panoptic: np.ndarray,
    depth_m: np.ndarray,
) -> None:
    """Write one hand-built frame in the Cityscapes-DVPS layout.

    Args:
        image: (H, W, 3) uint8 RGB.
        panoptic: (H, W) ``class * 1000 + instance``, void = 32000.
        depth_m: (H, W) meters, 0 = no depth.
    """
    split_dir.mkdir(parents=True, exist_ok=True)
    prefix = split_dir / f"{seq:06d}_{frame:06d}_hand_{seq:06d}_{frame:06d}"
    cv2.imwrite(f"{prefix}_leftImg8bit.png", image[..., ::-1])
    cv2.imwrite(f"{prefix}_gtFine_instanceTrainIds.png", panoptic.astype(np.uint16))
    cv2.imwrite(f"{prefix}_depth.png", np.round(depth_m * 256).astype(np.uint16))
