"""Every config key panoptic_depthlab adds to Detectron2's, with its default.

Call :func:`add_panoptic_depthlab_config` on ``detectron2.config.get_cfg()`` before merging a
YAML file. It includes Detectron2's Panoptic-DeepLab keys (``add_panoptic_deeplab_config``).
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.config import CfgNode as CN
from detectron2.projects.panoptic_deeplab import add_panoptic_deeplab_config

__all__ = ["ConfigValueError", "add_panoptic_depthlab_config"]


class ConfigValueError(ValueError):
    """A config key holds a value the model or trainer cannot use; the message names the key,
    the value and what was expected. The tools report it in one line (exit code 2)."""


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
    cfg.INPUT.CROP.TYPE = "absolute"
    cfg.INPUT.CROP.SIZE = (512, 1024)
    # Center heatmap std in pixels (ViP-DeepLab; Detectron2's Panoptic-DeepLab uses 10).
    cfg.INPUT.GAUSSIAN_SIGMA = 8

    # PanopticDepthLab meta-architecture.
    cfg.MODEL.PANOPTIC_DEPTHLAB = CN()
    # Next-frame instance branch (ViP-DeepLab); False gives the single-frame model.
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME = CN()
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED = True
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.LOSS_WEIGHT = 0.01
    # Learned uncertainty weighting of the task losses (one log-variance per task).
    cfg.MODEL.PANOPTIC_DEPTHLAB.UNCERTAINTY_WEIGHTING = False
    # Image pooling of every ASPP: "crop" averages over a window of the training crop
    # (INPUT.CROP.SIZE / stride) where that window divides the feature map, as Detectron2 and
    # deeplab2 evaluate, else globally (always on training crops and SemKITTI-DVPS's 385x1281);
    # "global" averages over the whole map at every size. The rule:
    # panoptic_depthlab.modeling.aspp_pooling.CropWindowPool2d.
    cfg.MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING = "crop"
    # Class order of MODEL.WEIGHTS' semantic classifier, for checkpoints that do not name their
    # classes (Detectron2 model-zoo files): "cityscapes" (= "cityscapes_dvps", Cityscapes
    # train ids), "semkitti_dvps", or a registered dataset name. Its rows are moved by class
    # name to the order of DATASETS.TRAIN's classes; classes without a counterpart start from
    # initialization. "": the checkpoint's own "class_names" (our checkpoints store them), else
    # the rows are taken as they are. See panoptic_depthlab.checkpoint.
    cfg.MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES = ""

    # Video tracking beyond next-frame links: a memory of ended tracks that lets an object
    # missing for up to MAX_GAP frames (occluded, or without labels) come back with its id,
    # re-identified by its 3-D position (pixel centroid at its median predicted depth, constant
    # velocity); see panoptic_depthlab.runtime.track_memory. MAX_GAP 0 turns the memory off
    # (ViP-DeepLab's tracking: consecutive frames only). A revival is gated at
    # MAX_DISTANCE_PER_FRAME meters from the predicted position per frame since the track was
    # last seen (3 m for an object missing one frame). APPEARANCE_WEIGHT > 0 adds 1 - cosine of
    # backbone features pooled in the masks to the assignment cost. The focal length comes from
    # the dataset's "focal_ratio" metadata (focal length / image width), else
    # runtime.track_memory.DEFAULT_FOCAL_RATIO. Datasets without depth (metadata has_depth
    # False) have no memory.
    cfg.MODEL.TRACKER = CN()
    cfg.MODEL.TRACKER.MAX_GAP = 5
    cfg.MODEL.TRACKER.MAX_DISTANCE_PER_FRAME = 1.5
    cfg.MODEL.TRACKER.APPEARANCE_WEIGHT = 0.0

    # Depth branch. Its ASPP and decoder take their sizes from MODEL.INS_EMBED_HEAD.
    cfg.MODEL.DEPTH_HEAD = CN()
    # "DepthHead": own ASPP + decoder; "SemanticDecoderDepthHead": a light head on the
    # semantic decoder's features (as in ViP-DeepLab).
    cfg.MODEL.DEPTH_HEAD.NAME = "DepthHead"
    cfg.MODEL.DEPTH_HEAD.HEAD_CHANNELS = 32
    # SemanticDecoderDepthHead only: the stride its features run at (the semantic decoder's
    # output, at MODEL.SEM_SEG_HEAD.COMMON_STRIDE, upsampled to it; ViP-DeepLab: 2). Must divide
    # MODEL.SEM_SEG_HEAD.COMMON_STRIDE.
    cfg.MODEL.DEPTH_HEAD.COMMON_STRIDE = 2
    # Output range in meters: MIN_DEPTH + sigmoid(x) * (MAX_DEPTH - MIN_DEPTH).
    cfg.MODEL.DEPTH_HEAD.MIN_DEPTH = 0.0
    cfg.MODEL.DEPTH_HEAD.MAX_DEPTH = 88.0
    # "silog_rel" (ViP-DeepLab) or "l1" (Panoptic-DepthLab).
    cfg.MODEL.DEPTH_HEAD.LOSS_TYPE = "silog_rel"
    cfg.MODEL.DEPTH_HEAD.LOSS_WEIGHT = 0.1
    # MonoDVPS panoptic-guided losses on mean-normalized inverse depth (0 = off).
    cfg.MODEL.DEPTH_HEAD.SMOOTHNESS_WEIGHT = 0.0
    cfg.MODEL.DEPTH_HEAD.EDGE_WEIGHT = 0.0
    cfg.MODEL.DEPTH_HEAD.IMAGE_SMOOTHNESS_WEIGHT = 0.0

    # Periodic checkpoints (model_<iteration>.pth, every SOLVER.CHECKPOINT_PERIOD iterations)
    # kept in OUTPUT_DIR: the last N; 0 keeps all of them (Detectron2's behaviour). The final
    # checkpoint (model_final.pth) is always kept and is not counted.
    cfg.SOLVER.CHECKPOINT_MAX_KEEP = 0
