"""Every config key panoptic_depthlab adds to Detectron2's, with its default.

Call :func:`add_panoptic_depthlab_config` on ``detectron2.config.get_cfg()`` before merging a
YAML file. It includes Detectron2's Panoptic-DeepLab keys (``add_panoptic_deeplab_config``).
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.projects.panoptic_deeplab import add_panoptic_deeplab_config

__all__ = ["add_panoptic_depthlab_config"]


def add_panoptic_depthlab_config(cfg: CfgNode) -> None:
    """Add panoptic_depthlab's keys (and Detectron2's Panoptic-DeepLab keys) to ``cfg``."""
    add_panoptic_deeplab_config(cfg)
    # Training augmentation (one sample shared by frames t and t+1, their labels and depth):
    # a scale factor drawn from MIN_SCALE, MIN_SCALE + SCALE_STEP, ..., MAX_SCALE, then padding
    # and a random crop of INPUT.CROP.SIZE (H, W) pixels, then a horizontal flip (RANDOM_FLIP).
    cfg.INPUT.MIN_SCALE = 0.5
    cfg.INPUT.MAX_SCALE = 2.0
    cfg.INPUT.SCALE_STEP = 0.1
    cfg.INPUT.CROP.ENABLED = True
    cfg.INPUT.CROP.SIZE = (512, 1024)
    # Center heatmap std in pixels (ViP-DeepLab; Detectron2's Panoptic-DeepLab uses 10).
    cfg.INPUT.GAUSSIAN_SIGMA = 8
