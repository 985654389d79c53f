"""Data loaders for frame-pair and single-frame training."""

from __future__ import annotations

import logging
from collections.abc import Callable

from detectron2.config import CfgNode
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.data.samplers import TrainingSampler

from .dataset_mapper import DVPSDatasetMapper
from .sampler import FramePairTrainingSampler

__all__ = ["build_dvps_train_loader"]

logger = logging.getLogger(__name__)


def build_dvps_train_loader(cfg: CfgNode, mapper: Callable | None = None):
    """Detectron2's training loader over ``DATASETS.TRAIN``: frame pairs or single frames.

    With ``MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED`` (a video model) every sample is a frame
    pair (t, t+1): the last frame of each sequence is skipped by
    :class:`FramePairTrainingSampler`. Without it (a single-frame model) every record is a
    sample, drawn by Detectron2's :class:`TrainingSampler`, so last frames of sequences and
    datasets of independent images (records without ``next_frame``) are trained on too. Both
    samplers are infinite, shuffled with a seed shared by all processes, and give each rank its
    share. Batches hold ``SOLVER.IMS_PER_BATCH`` samples in total across workers, mapped by
    ``mapper`` (default: ``DVPSDatasetMapper(cfg, is_train=True)``, which reads the next frame
    as the same option says).
    """
    dataset = get_detection_dataset_dicts(cfg.DATASETS.TRAIN, filter_empty=False)
    if cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED:
        sampler = FramePairTrainingSampler(dataset)
    else:
        logger.info(
            "Sampling all %d training frames as single frames "
            "(MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED is False).",
            len(dataset),
        )
        sampler = TrainingSampler(len(dataset))
    return build_detection_train_loader(
        dataset=dataset,
        mapper=mapper if mapper is not None else DVPSDatasetMapper(cfg, is_train=True),
        sampler=sampler,
        total_batch_size=cfg.SOLVER.IMS_PER_BATCH,
        aspect_ratio_grouping=False,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
