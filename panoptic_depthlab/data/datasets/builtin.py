"""Register the built-in DVPS dataset names under ``$DETECTRON2_DATASETS`` (default ``./datasets``).

===============================  ==========================================================
name                             directory (relative to ``$DETECTRON2_DATASETS``)
===============================  ==========================================================
cityscapes_dvps_{train,val}      cityscapes-dvps/video_sequence/{train,val}/
semkitti_dvps_{train,val}        semkitti-dvps/video_sequence/{train,val}/
synthetic_cityscapes_dvps_{..}   synthetic-cityscapes-dvps/video_sequence/{train,val}/
synthetic_semkitti_dvps_{..}     synthetic-semkitti-dvps/video_sequence/{train,val}/
cityscapes_panoptic_depth_{..}   cityscapes/ (Detectron2's Cityscapes layout, with the
                                 disparity/ and camera/ packages; see cityscapes_depth.py)
synthetic_cityscapes_panoptic_   synthetic-cityscapes/ (the same layout)
depth_{train,val}
kitti_step_{train,val}           kitti-step/ (DeepLab2's KITTI-STEP layout: images/ and
                                 panoptic_maps/; see kitti_step.py)
synthetic_kitti_step_{..}        synthetic-kitti-step/ (the same layout)
cityscapes_vps_{train,val}       cityscapes_vps/ (the authors' Cityscapes-VPS layout:
                                 <split>/img/, <split>/panoptic_video/ and
                                 panoptic_gt_<split>_city_vps.json; see cityscapes_vps.py)
synthetic_cityscapes_vps_{..}    synthetic-cityscapes-vps/ (the same layout)
===============================  ==========================================================

The synthetic sets are written by ``tools/make_synthetic_dvps.py``. Like Detectron2's own
built-in datasets, the root is read once, when this module is imported.
"""

from __future__ import annotations

import os

from .cityscapes_depth import register_cityscapes_depth
from .cityscapes_vps import register_cityscapes_vps
from .dvps import register_dvps_dataset
from .kitti_step import register_kitti_step
from .metadata import CITYSCAPES_DVPS, SEMKITTI_DVPS

__all__ = [
    "BUILTIN_CITYSCAPES_DEPTH_DATASETS",
    "BUILTIN_CITYSCAPES_VPS_DATASETS",
    "BUILTIN_DVPS_DATASETS",
    "BUILTIN_KITTI_STEP_DATASETS",
    "register_all_dvps",
]

# name prefix -> (directory under the datasets root, format)
BUILTIN_DVPS_DATASETS = {
    "cityscapes_dvps": ("cityscapes-dvps", CITYSCAPES_DVPS),
    "semkitti_dvps": ("semkitti-dvps", SEMKITTI_DVPS),
    "synthetic_cityscapes_dvps": ("synthetic-cityscapes-dvps", CITYSCAPES_DVPS),
    "synthetic_semkitti_dvps": ("synthetic-semkitti-dvps", SEMKITTI_DVPS),
}

# name prefix -> directory under the datasets root, for Cityscapes with depth from disparity
BUILTIN_CITYSCAPES_DEPTH_DATASETS = {
    "cityscapes_panoptic_depth": "cityscapes",
    "synthetic_cityscapes_panoptic_depth": "synthetic-cityscapes",
}

# name prefix -> directory under the datasets root, for KITTI-STEP (no depth ground truth)
BUILTIN_KITTI_STEP_DATASETS = {
    "kitti_step": "kitti-step",
    "synthetic_kitti_step": "synthetic-kitti-step",
}

# name prefix -> directory under the datasets root, for Cityscapes-VPS (no depth ground truth)
BUILTIN_CITYSCAPES_VPS_DATASETS = {
    "cityscapes_vps": "cityscapes_vps",
    "synthetic_cityscapes_vps": "synthetic-cityscapes-vps",
}


def register_all_dvps(datasets_root: str) -> None:
    """Register ``<prefix>_train`` and ``<prefix>_val`` for every built-in dataset."""
    for prefix, (directory, dataset_format) in BUILTIN_DVPS_DATASETS.items():
        for split in ("train", "val"):
            root = os.path.join(datasets_root, directory)
            register_dvps_dataset(f"{prefix}_{split}", root, split, dataset_format)
    for prefix, directory in BUILTIN_CITYSCAPES_DEPTH_DATASETS.items():
        for split in ("train", "val"):
            register_cityscapes_depth(
                f"{prefix}_{split}", os.path.join(datasets_root, directory), split
            )
    for prefix, directory in BUILTIN_KITTI_STEP_DATASETS.items():
        for split in ("train", "val"):
            register_kitti_step(f"{prefix}_{split}", os.path.join(datasets_root, directory), split)
    for prefix, directory in BUILTIN_CITYSCAPES_VPS_DATASETS.items():
        for split in ("train", "val"):
            root = os.path.join(datasets_root, directory)
            register_cityscapes_vps(f"{prefix}_{split}", root, split)


register_all_dvps(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
