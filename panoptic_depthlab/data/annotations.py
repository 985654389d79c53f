"""Read the label and depth files of one DVPS frame into arrays, with checks.

Every dataset layout (Cityscapes-DVPS, SemKITTI-DVPS, and Cityscapes with COCO-format panoptic
PNGs and disparity) becomes the same two arrays:

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
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import cv2
import numpy as np

from .disparity import disparity_to_depth

__all__ = [
    "read_depth",
    "read_depth_samples",
    "read_labels",
    "read_panoptic",
    "read_png",
]

logger = logging.getLogger(__name__)
_WARNED_STUFF_INSTANCES: set[str] = set()  # datasets whose stuff instance ids were reported
_SPLIT_ROWS = 32  # rows of a panoptic label PNG split into class and instance ids per step


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


def _check_classes(
    path: str, above: int, void: int, classes: Callable[[], np.ndarray], meta: Mapping[str, Any]
) -> None:
    """Reject class ids that are neither a train id nor the void id of the label files, given
    the number of pixels with ids >= num_classes (``above``) and with the void id (``void``):
    they agree when every id >= num_classes is the void id. Only then are the ids themselves
    (``classes()``, non-negative integers) counted, to name the first bad one."""
    num_classes, void_id = meta["num_classes"], meta["label_void_id"]
    if above == 0 or (void_id >= num_classes and above == void):
        return
    counts = np.bincount(classes().ravel())
    present = np.flatnonzero(counts)
    bad = present[(present >= num_classes) & (present != void_id)]
    raise ValueError(
        f"{path}: class id {int(bad[0])} on {int(counts[bad[0]])} pixels; expected train ids "
        f"0..{num_classes - 1} or the void id {void_id}."
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
    record: Mapping[str, Any],
    meta: Mapping[str, Any],
    size: tuple[int, int] | None = None,
    void_as: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The label files of a frame record as stored: class ids (train ids or the void id
    ``label_void_id``) and instance ids, both ``int32`` (H, W), with class ids and sizes checked.

    Args:
        record: a frame record (or its ``next_frame`` entry) from the DVPS dataset loader.
        meta: the dataset's metadata (``MetadataCatalog.get(name)`` or ``dvps_metadata(fmt)``).
        size: expected (H, W); None skips the size check.
        void_as: class id given to the void pixels instead of ``label_void_id`` (at most
            65535), or None.
    """
    num_classes, void_id = meta["num_classes"], meta["label_void_id"]
    if "panoptic_file_name" in record:  # Cityscapes-DVPS: class * divisor + instance
        path = record["panoptic_file_name"]
        raw = read_png(path, "a 16-bit panoptic label PNG")
        if raw.ndim != 2:
            raise ValueError(f"{path}: has {raw.shape[2]} channels; expected 1 (panoptic ids).")
        _check_size(path, raw, size)
        classes, instances, above, void = _split_label_ids(raw, meta, void_as)
        stored_classes = partial(np.floor_divide, raw, meta["label_divisor"])
    elif "pan_seg_file_name" in record:  # Cityscapes (COCO panoptic PNG + segments_info)
        path = record["pan_seg_file_name"]
        classes, instances = _coco_panoptic_labels(path, record["segments_info"], meta, size)
        is_void = classes == void_id
        void = np.count_nonzero(is_void)
        above = np.count_nonzero(classes >= num_classes)
        if void_as is not None:
            classes[is_void] = void_as
        stored_classes = partial(np.where, is_void, void_id, classes)
    elif "step_panoptic_file_name" in record:  # KITTI-STEP: R class, G * 256 + B instance
        path = record["step_panoptic_file_name"]
        stored, instances = _step_panoptic_labels(path, meta, size)
        above = np.count_nonzero(stored >= num_classes)
        is_void = stored == void_id
        void = np.count_nonzero(is_void)
        classes = stored.astype(np.int32)
        if void_as is not None:
            classes[is_void] = void_as
        stored_classes = partial(np.asarray, stored)
    else:  # SemKITTI-DVPS: a class file and an instance file
        path = record["sem_seg_file_name"]
        stored = read_png(path, "a class label PNG")
        if stored.ndim != 2:
            raise ValueError(f"{path}: has {stored.shape[2]} channels; expected 1 (class ids).")
        _check_size(path, stored, size)
        instance_path = record["instance_file_name"]
        instances = read_png(instance_path, "an instance label PNG")
        if instances.ndim != 2:
            raise ValueError(f"{instance_path}: has {instances.shape[2]} channels; expected 1.")
        _check_size(instance_path, instances, stored.shape)
        above = np.count_nonzero(stored >= num_classes)
        is_void = stored == void_id
        void = np.count_nonzero(is_void)
        classes, instances = stored.astype(np.int32), instances.astype(np.int32)
        if void_as is not None:
            classes[is_void] = void_as
        stored_classes = partial(np.asarray, stored)
    _check_classes(path, above, void, stored_classes, meta)
    return classes, instances


def _step_panoptic_labels(
    path: str, meta: Mapping[str, Any], size: tuple[int, int] | None
) -> tuple[np.ndarray, np.ndarray]:
    """A STEP panoptic PNG (KITTI-STEP: R = class, G = instance // 256, B = instance % 256) ->
    ``(classes, instances)``: uint8 (H, W) class ids as stored and int32 (H, W) instance ids.

    Raises:
        ValueError: not an 8-bit RGB PNG, or an instance id >= ``label_divisor`` (it would
            not fit in a panoptic id ``class * label_divisor + instance``).
    """
    bgr = read_png(path, "an 8-bit RGB KITTI-STEP panoptic map")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(
            f"{path}: {bgr.dtype} with shape {bgr.shape}; expected an 8-bit RGB panoptic map "
            "(R = class, G = instance // 256, B = instance % 256)."
        )
    _check_size(path, bgr, size)
    instances = (bgr[..., 1].astype(np.int32) << 8) | bgr[..., 0]
    divisor = meta["label_divisor"]
    high = int(instances.max())
    if high >= divisor:
        raise ValueError(
            f"{path}: instance id {high} on {int(np.count_nonzero(instances == high))} pixels; "
            f"expected instance ids below the label divisor {divisor}."
        )
    return bgr[..., 2], instances


def _dense_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(ids, return_inverse=True)`` of non-negative int32 ids: ``(present, inverse)``.

    For ids below 2**20 (Cityscapes' go to 33999) by counting, about 8x faster than sorting."""
    if int(ids.max(initial=0)) >= 1 << 20:
        return np.unique(ids, return_inverse=True)
    present = np.flatnonzero(np.bincount(ids.ravel()))
    index = np.zeros(int(present[-1]) + 1, np.int64)
    index[present] = np.arange(present.size)
    return present, index[ids]


def _coco_panoptic_labels(
    path: str,
    segments_info: list[dict[str, Any]],
    meta: Mapping[str, Any],
    size: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray]:
    """A COCO-format panoptic PNG (segment id = R + 256 G + 65536 B, 0 unlabelled) with its
    segments (``id``, ``category_id`` as a contiguous train id, ``iscrowd``) -> int32 (H, W)
    ``(classes, instances)``: unlabelled pixels get ``label_void_id``; stuff and crowd segments
    instance 0; the other thing segments of a class are numbered 1, 2, ... in segment id order,
    unless the segment carries an ``instance_id`` (video datasets such as Cityscapes-VPS, whose
    loader numbers the instances once per video so that an object keeps its instance id over
    the frames; a per-frame numbering would change it when another object appears or leaves).

    Raises:
        ValueError: not an 8-bit RGB PNG, a pixel whose segment id has no entry in
            ``segments_info``, or a category outside the train ids.
    """
    bgr = read_png(path, "an 8-bit RGB panoptic PNG (COCO panoptic format)")
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(
            f"{path}: {bgr.dtype} with shape {bgr.shape}; expected an 8-bit RGB panoptic PNG."
        )
    _check_size(path, bgr, size)
    ids = bgr[..., 2].astype(np.int32)
    ids += bgr[..., 1].astype(np.int32) << 8
    ids += bgr[..., 0].astype(np.int32) << 16
    present, inverse = _dense_ids(ids)
    by_id = {int(s["id"]): s for s in segments_info}
    things = set(meta["thing_ids"])
    table_class = np.full(present.size, meta["label_void_id"], np.int32)
    table_instance = np.zeros(present.size, np.int32)
    counts: dict[int, int] = {}
    for index, segment_id in enumerate(present.tolist()):
        if segment_id == 0:
            continue
        segment = by_id.get(segment_id)
        if segment is None:
            raise ValueError(
                f"{path}: segment id {segment_id} is on {int(np.count_nonzero(inverse == index))}"
                " pixels but has no entry in the annotation's segments_info."
            )
        category = int(segment["category_id"])
        if not 0 <= category < meta["num_classes"]:
            raise ValueError(
                f"{path}: segment {segment_id} has category {category}; expected train ids "
                f"0..{meta['num_classes'] - 1}."
            )
        table_class[index] = category
        if category in things and not segment.get("iscrowd", 0):
            if "instance_id" in segment:  # numbered by the loader, stable over a video
                table_instance[index] = int(segment["instance_id"])
                continue
            counts[category] = counts.get(category, 0) + 1
            table_instance[index] = counts[category]
    inverse = inverse.reshape(ids.shape)
    return table_class[inverse], table_instance[inverse]


def _split_label_ids(
    raw: np.ndarray, meta: Mapping[str, Any], void_as: int | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Cityscapes-DVPS panoptic samples (H, W) -> ``(classes, instances, above, void)``: int32
    (H, W) ``raw // label_divisor`` (void pixels ``void_as`` unless None) and
    ``raw % label_divisor``, and the numbers of pixels with a class >= num_classes and with
    the void class. Done ``_SPLIT_ROWS`` rows at a time in uint16 (the samples' type, which the
    divisor 1000 fits), so that the temporaries stay in cache."""
    divisor, num_classes, void_id = (
        meta["label_divisor"],
        meta["num_classes"],
        meta["label_void_id"],
    )
    classes = np.empty(raw.shape, np.int32)
    instances = np.empty(raw.shape, np.int32)
    above = void = 0
    for top in range(0, raw.shape[0], _SPLIT_ROWS):
        rows = slice(top, top + _SPLIT_ROWS)
        samples = raw[rows].astype(np.uint16, copy=False)
        class_rows = samples // divisor
        instance_rows = class_rows * divisor
        np.subtract(samples, instance_rows, out=instance_rows)
        above += np.count_nonzero(class_rows >= num_classes)
        is_void = class_rows == void_id
        void += np.count_nonzero(is_void)
        if void_as is not None:
            class_rows[is_void] = void_as
        classes[rows] = class_rows
        instances[rows] = instance_rows
    return classes, instances, above, void


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
    path = (
        record.get("panoptic_file_name")
        or record.get("pan_seg_file_name")
        or record.get("step_panoptic_file_name")
        or record["sem_seg_file_name"]
    )
    void_mask = classes == meta["label_void_id"]
    instances = _drop_stuff_instances(path, classes, instances, void_mask, meta)
    divisor = meta["label_divisor"]
    panoptic = classes * divisor + instances
    panoptic[void_mask] = meta["ignore_label"] * divisor
    return panoptic


def read_depth(
    record: Mapping[str, Any], meta: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The depth map of a frame record: ``float32`` (H, W) in meters, 0 = no depth.

    From ``depth_file_name`` (samples / ``depth_scale``), or for Cityscapes images from
    ``disparity_file_name`` and the record's ``camera`` (:mod:`panoptic_depthlab.data.disparity`).
    """
    if "disparity_file_name" in record:
        path = record["disparity_file_name"]
        samples = read_png(path, "a 16-bit disparity PNG")
        if samples.ndim != 2 or samples.dtype != np.uint16:
            raise ValueError(
                f"{path}: {samples.dtype} with shape {samples.shape}; expected a 16-bit "
                "single-channel disparity PNG (Cityscapes' disparity/ folder)."
            )
        _check_size(path, samples, size)
        camera = record["camera"]
        return disparity_to_depth(samples, camera["baseline"], camera["fx"])
    raw = read_depth_samples(record, size)
    return raw.astype(np.float32) / np.float32(meta["depth_scale"])


def read_depth_samples(
    record: Mapping[str, Any], size: tuple[int, int] | None = None
) -> np.ndarray:
    """The depth PNG of a frame record as stored, (H, W), its size checked; meters are these
    samples divided by the metadata's ``depth_scale``.

    Raises:
        ValueError: the record has no depth file (a dataset without depth ground truth, such as
            KITTI-STEP, whose metadata ``has_depth`` is False: its depth must not be read).
    """
    if "depth_file_name" not in record:
        raise ValueError(
            f"{record.get('file_name', record.get('image_id', '?'))}: the frame record has "
            "neither a depth file (depth_file_name) nor a disparity file; its dataset has no "
            "depth ground truth (metadata has_depth False), so no depth can be read for it."
        )
    path = record["depth_file_name"]
    raw = read_png(path, "a 16-bit depth PNG")
    if raw.ndim != 2:
        raise ValueError(f"{path}: has {raw.shape[2]} channels; expected 1 (depth).")
    _check_size(path, raw, size)
    return raw
