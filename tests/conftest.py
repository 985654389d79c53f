"""Shared fixtures: small synthetic DVPS datasets written to disk by the real generator."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

# Loggers the tools set up with Detectron2's setup_logger.
_TOOL_LOGGERS = ("detectron2", "d2", "fvcore", "panoptic_depthlab")


@pytest.fixture(autouse=True)
def _fresh_tool_loggers():
    """Undo what a tool's ``setup_logger`` did in this process after each test.

    ``setup_logger`` is cached and binds its console handler to the ``sys.stdout`` of the
    first call, which pytest closes at the end of that test: a later test running a tool in
    this process would log "--- Logging error ---" tracebacks to stderr. In a real run a
    process sets its loggers up once, so this concerns tests only.
    """
    yield
    from detectron2.utils.logger import setup_logger

    setup_logger.cache_clear()
    for name in _TOOL_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


@pytest.fixture(scope="module")
def module_tmp_path(request, tmp_path_factory) -> Iterator[Path]:
    """A folder for the module's shared files (checkpoints, exports, training runs), removed
    when the module ends: kept to the end of the session as ``tmp_path_factory``'s folders
    are, the large ones add up to 1.3 GB."""
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


def small_model_cfg(dataset_name: str, crop: tuple[int, int] = (64, 128)):
    """A PanopticDepthLab config small enough for CPU tests: ResNet-18, narrow BN heads."""
    from detectron2.config import get_cfg

    from panoptic_depthlab.config import add_panoptic_depthlab_config

    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.MODEL.META_ARCHITECTURE = "PanopticDepthLab"
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.280, 103.530]
    cfg.MODEL.PIXEL_STD = [58.395, 57.120, 57.375]
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.CROP.SIZE = crop
    cfg.DATASETS.TRAIN = (dataset_name,)
    cfg.DATASETS.TEST = (dataset_name,)
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    cfg.MODEL.RESNETS.DEPTH = 18
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res5"]
    cfg.MODEL.RESNETS.NORM = "BN"
    for head in (cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.INS_EMBED_HEAD):
        head.IN_FEATURES = ["res2", "res3", "res5"]
        head.PROJECT_FEATURES = ["res2", "res3"]
        head.PROJECT_CHANNELS = [16, 16]
        head.ASPP_CHANNELS = 32
        head.ASPP_DILATIONS = [1, 2, 3]
        head.ASPP_DROPOUT = 0.0
        head.CONVS_DIM = 32
        head.COMMON_STRIDE = 4
        head.NORM = "BN"
    cfg.MODEL.SEM_SEG_HEAD.NAME = "PanopticDeepLabSemSegHead"
    cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES = 19
    cfg.MODEL.SEM_SEG_HEAD.HEAD_CHANNELS = 32
    cfg.MODEL.INS_EMBED_HEAD.HEAD_CHANNELS = 16
    cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS = 16
    cfg.MODEL.PANOPTIC_DEEPLAB.STUFF_AREA = 0
    return cfg
