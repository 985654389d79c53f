"""DVPS datasets in Detectron2's DatasetCatalog and MetadataCatalog."""

from .builtin import (
    BUILTIN_CITYSCAPES_DEPTH_DATASETS,
    BUILTIN_CITYSCAPES_VPS_DATASETS,
    BUILTIN_DVPS_DATASETS,
    BUILTIN_KITTI_STEP_DATASETS,
    register_all_dvps,
)
from .cityscapes_depth import load_cityscapes_depth, register_cityscapes_depth
from .cityscapes_vps import (
    cityscapes_vps_metadata,
    load_cityscapes_vps,
    register_cityscapes_vps,
)
from .dvps import check_dvps_dataset, load_dvps_split, register_dvps_dataset
from .kitti_step import kitti_step_metadata, load_kitti_step, register_kitti_step
from .metadata import DVPS_FORMATS, dvps_metadata

__all__ = [
    "BUILTIN_CITYSCAPES_DEPTH_DATASETS",
    "BUILTIN_CITYSCAPES_VPS_DATASETS",
    "BUILTIN_DVPS_DATASETS",
    "BUILTIN_KITTI_STEP_DATASETS",
    "DVPS_FORMATS",
    "check_dvps_dataset",
    "cityscapes_vps_metadata",
    "dvps_metadata",
    "kitti_step_metadata",
    "load_cityscapes_depth",
    "load_cityscapes_vps",
    "load_dvps_split",
    "load_kitti_step",
    "register_all_dvps",
    "register_cityscapes_depth",
    "register_cityscapes_vps",
    "register_dvps_dataset",
    "register_kitti_step",
]
