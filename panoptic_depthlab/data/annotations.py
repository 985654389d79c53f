"""Read the label and depth files of one DVPS frame into arrays, with checks.

Both dataset formats become the same two arrays:

* a panoptic map, ``int32`` (H, W): ``class * label_divisor + instance`` with train ids as
  classes; unlabelled pixels (Cityscapes-DVPS class 32, SemKITTI-DVPS 255) become
  ``ignore_label * label_divisor``; crowd regions are thing pixels with instance 0;
* a depth map, ``float32`` (H, W) in meters, 0 where there is no depth.

Every check names the file and the offending value: class ids outside the dataset's range and
label or depth sizes that disagree with the image. Instance ids on stuff pixels (present in the
real SemKITTI-DVPS labels) are dropped by :func:`read_panoptic`, with one warning per dataset;
the evaluation reads them as stored, as the official scripts do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

__all__ = [
    "read_depth",
    "read_depth_samples",
    "read_label_samples",
    "read_labels",
    "read_panoptic",
    "read_png",
]

logger = logging.getLogger(__name__)
_WARNED_STUFF_INSTANCES: set[str] = set()  # datasets whose stuff instance ids were reported


def read_png(path: str, what: str) -> np.ndarray:
    """Decode a PNG as stored (8- or 16-bit, 1 or 3 channels; color comes out BGR).

    Args:
        path: file to read.
        what: what the file should hold, for the error message (e.g. "a depth map").
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; expected {what}.")
    array = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"{path}: not a readable PNG; expected {what}.")
    return array


def _check_size(path: str, array: np.ndarray, size: tuple[int, int] | None) -> None:
    if size is not None and array.shape[:2] != tuple(size):
        raise ValueError(
            f"{path}: size (H, W) = {array.shape[:2]} differs from the image's (H, W) = "
            f"{tuple(size)}; label and depth maps must match the image."
        )


def _check_classes(path: str, classes: np.ndarray, meta: Mapping[str, Any]) -> None:
    """Reject class ids (non-negative integers) that are neither a train id nor the void id of
    the label files."""
    num_classes, void = meta["num_classes"], meta["label_void_id"]
    above = np.count_nonzero(classes >= num_classes)
    if above == 0 or (void >= num_classes and above == np.count_nonzero(classes == void)):
        return  # two counts instead of a histogram: every id >= num_classes is the void id
    counts = np.bincount(classes.ravel())
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != void)]
    raise ValueError(
        f"{path}: class id {int(bad[0])} on {int(counts[bad[0]])} pixels; expected train ids "
        f"0..{num_classes - 1} or the void id {void}."
    )


def _drop_stuff_instances(
    path: str, classes: np.ndarray, instances: np.ndarray, void: np.ndarray, meta: Mapping[str, Any]
) -> np.ndarray:
    """``instances`` with 0 on stuff pixels (void pixels are left as they are).

    Real SemKITTI-DVPS labels carry instance ids on some stuff pixels; training ignores them
    (a stuff class is one segment). The first frame of a dataset where this happens is logged
    once per process with its pixel count.
    """
    is_stuff = np.zeros(max(int(classes.max()) + 1, meta["num_classes"]), bool)
    is_stuff[meta["stuff_ids"]] = True
    wrong = is_stuff[classes] & (instances != 0) & ~void
    count = int(np.count_nonzero(wrong))
    if count:
        dataset = meta.get("name", meta.get("dataset_format", "?"))
        if dataset not in _WARNED_STUFF_INSTANCES:
            _WARNED_STUFF_INSTANCES.add(dataset)
            y, x = np.argwhere(wrong)[0]
            logger.warning(
                "%s: %d pixels of stuff classes carry an instance id (the first: %d on class %d "
                "at (y, x) = (%d, %d)); training ignores instance ids on stuff. Later frames of "
                "%s are not reported.",
                path,
                count,
                int(instances[y, x]),
                int(classes[y, x]),
                y,
                x,
                dataset,
            )
        instances = np.where(wrong, 0, instances)
    return instances


def read_labels(
    record: Mapping[str, Any], meta: Mapping[str, Any], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The label files of a frame record as stored: class ids (train ids or the void id
    ``label_void_id``) and instance ids, both ``int32`` (H, W), with class ids and sizes checked.

    Args:
        record: a frame record (or its ``next_frame`` entry) from the DVPS dataset loader.
        meta: the dataset's metadata (``MetadataCatalog.get(name)`` or ``dvps_metadata(fmt)``).
        size: expected (H, W); None skips the size check.
    """
    classes, instances = read_label_samples(record, meta, size)
    return classes.astype(np.int32), instances.astype(np.int32)


def read_label_samples(
    record: Mapping[str, Any], meta: Mapping[str, Any], size: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`read_labels` without the conversion to ``int32``: class and instance ids (H, W) in
    the unsigned dtype of the PNG samples (uint8 or uint16; Cityscapes-DVPS: both uint16)."""
    if "panoptic_file_name" in record:  # Cityscapes-DVPS: class * divisor + instance
        path = record["panoptic_file_name"]
        raw = read_png(path, "a 16-bit panoptic label PNG")
        if raw.ndim != 2:
            raise ValueError(f"{path}: has {raw.shape[2]} channels; expected 1 (panoptic ids).")
        _check_size(path, raw, size)
        # In uint16, the samples' type (the divisor, 1000, fits): exact and faster than int32.
        raw = raw.astype(np.uint16, copy=False)
        classes = raw // meta["label_divisor"]
        instances = classes * meta["label_divisor"]
        np.subtract(raw, instances, out=instances)
    else:  # SemKITTI-DVPS: a class file and an instance file
        path = record["sem_seg_file_name"]
        classes = read_png(path, "a class label PNG")
        if classes.ndim != 2:
            raise ValueError(f"{path}: has {classes.shape[2]} channels; expected 1 (class ids).")
        _check_size(path, classes, size)
        instance_path = record["instance_file_name"]
        instances = read_png(instance_path, "an instance label PNG")
        if instances.ndim != 2:
            raise ValueError(f"{instance_path}: has {instances.shape[2]} channels; expected 1.")
        _check_size(instance_path, instances, classes.shape)
    _check_classes(path, classes, meta)
    return classes, instances


def read_panoptic(
    record: Mapping[str, Any], meta: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The panoptic map of a frame record, in train ids (see the module docstring).

    Args:
        record: a frame record (or its ``next_frame`` entry) from the DVPS dataset loader.
        meta: the dataset's metadata (``MetadataCatalog.get(name)`` or ``dvps_metadata(fmt)``).
        size: expected (H, W); None skips the size check.

    Returns:
        ``int32`` array (H, W).
    """
    classes, instances = read_labels(record, meta, size)
    path = record.get("panoptic_file_name") or record["sem_seg_file_name"]
    void_mask = classes == meta["label_void_id"]
    instances = _drop_stuff_instances(path, classes, instances, void_mask, meta)
    divisor = meta["label_divisor"]
    panoptic = classes * divisor + instances
    panoptic[void_mask] = meta["ignore_label"] * divisor
    return panoptic


def read_depth(
    record: Mapping[str, Any], meta: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The depth map of a frame record: ``float32`` (H, W) in meters, 0 = no depth."""
    raw = read_depth_samples(record, size)
    return raw.astype(np.float32) / np.float32(meta["depth_scale"])


def read_depth_samples(
    record: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The depth PNG of a frame record as stored, (H, W), its size checked; meters are these
    samples divided by the metadata's ``depth_scale``."""
    path = record["depth_file_name"]
    raw = read_png(path, "a 16-bit depth PNG")
    if raw.ndim != 2:
        raise ValueError(f"{path}: has {raw.shape[2]} channels; expected 1 (depth).")
    _check_size(path, raw, size)
    return raw
