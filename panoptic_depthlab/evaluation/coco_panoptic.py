"""Panoptic predictions in the COCO panoptic format, as Detectron2's ``COCOPanopticEvaluator``
and panopticapi write them, read as video predictions.

The format: one RGB PNG per frame whose pixels hold segment ids ``R + 256 G + 256**2 B``
(panopticapi's ``id2rgb``; 0 is void), and a JSON whose ``annotations`` list holds, per PNG,
``{"file_name", "segments_info": [{"id", "category_id", ...}, ...]}``. When the JSON carries a
``categories`` list (Detectron2's evaluator copies the ground truth's), categories are matched to
the dataset's classes by name (case, ``-`` and ``_`` ignored), so Cityscapes label ids (7..33, as
in Detectron2's ``cityscapes_fine_panoptic_*``) and train ids both work; without one, category
ids are the dataset's train ids.

For video, a segment id must name the same object in every frame of a sequence (the tracker's
ids); one id used by two classes in one sequence is an error. Each (class, segment id) of the
split becomes one (class, instance) with instances numbered 1, 2, ... per class in the order of
the segment ids: a one-to-one renaming, so every metric is that of the ids as written.

As panopticapi checks, a PNG id missing from its ``segments_info`` and a listed segment absent
from the PNG are errors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.annotations import read_png
from .formats import frame_id_of

__all__ = ["SegmentTable", "load_coco_panoptic", "read_coco_panoptic_png"]

logger = logging.getLogger(__name__)

_MAX_INSTANCES = 1 << 16  # instance ids of the evaluation


@dataclass(frozen=True)
class SegmentTable:
    """The segments of one PNG: ``ids`` (S,) int64 ascending, and per segment its train id
    ``classes`` (S,) int32 and instance ``instances`` (S,) int32; ``json`` the file that lists
    them (for error messages)."""

    ids: np.ndarray
    classes: np.ndarray
    instances: np.ndarray
    json: str


def _norm(name: str) -> str:
    return " ".join(str(name).lower().replace("-", " ").replace("_", " ").split())


def _category_map(
    data: Mapping[str, Any], path: str, metadata: Mapping[str, Any]
) -> dict[Any, int | None] | None:
    """JSON category id -> train id; None when the JSON has no ``categories``."""
    if "categories" not in data:
        return None
    classes = {_norm(name): i for i, name in enumerate(metadata["stuff_classes"])}
    mapping = {}
    for category in data["categories"]:
        if not isinstance(category, Mapping) or "id" not in category or "name" not in category:
            raise ValueError(f"{path}: a category without 'id' and 'name': {category!r}.")
        mapping[category["id"]] = classes.get(_norm(category["name"]))
    return mapping


def _train_id(category_id: Any, categories: dict | None, where: str, num_classes: int) -> int:
    if categories is None:
        if not isinstance(category_id, int) or not 0 <= category_id < num_classes:
            raise ValueError(
                f"{where}: category_id {category_id!r}; without a 'categories' list category "
                f"ids must be the dataset's train ids 0..{num_classes - 1}."
            )
        return category_id
    if category_id not in categories:
        raise ValueError(f"{where}: category_id {category_id!r} is not in the JSON's categories.")
    train_id = categories[category_id]
    if train_id is None:
        raise ValueError(
            f"{where}: category_id {category_id!r} names a class this dataset does not have."
        )
    return train_id


def load_coco_panoptic(
    path: str, metadata: Mapping[str, Any], frame_ids: set[str]
) -> dict[str, SegmentTable]:
    """Read a COCO panoptic JSON.

    Args:
        path: the JSON file.
        metadata: the dataset's metadata (``stuff_classes``, ``num_classes``).
        frame_ids: ids ``<sequence>_<frame>`` of the ground-truth frames; annotations of other
            files are ignored with a warning.

    Returns:
        Per PNG base name (``file_name``), its segment table.

    Raises:
        ValueError: unreadable JSON, a missing key, an unknown category, two annotations of one
            file, a segment id used by two classes in one sequence, more than 65535 segment ids
            of one class. Messages name the JSON and the file.
    """
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a readable JSON file ({e}).") from None
    if not isinstance(data, Mapping) or not isinstance(data.get("annotations"), list):
        raise ValueError(f"{path}: expected a COCO panoptic JSON with an 'annotations' list.")
    num_classes = metadata["num_classes"]
    categories = _category_map(data, path, metadata)
    frames: dict[str, list[tuple[int, int]]] = {}  # file -> [(segment id, train id)]
    owner: dict[tuple[str, int], tuple[int, str]] = {}  # (sequence, id) -> (class, file)
    ignored = []
    frame_of: dict[str, str] = {}  # frame id -> file
    for annotation in data["annotations"]:
        if not isinstance(annotation, Mapping) or "file_name" not in annotation:
            raise ValueError(f"{path}: an annotation without 'file_name'.")
        name = os.path.basename(str(annotation["file_name"]))
        frame_id = frame_id_of(name)
        if frame_id not in frame_ids:
            ignored.append(name)
            continue
        if name in frames:
            raise ValueError(f"{path}: two annotations for {name}; expected one per file.")
        if frame_id in frame_of:
            raise ValueError(
                f"{path}: two annotations for the frame {frame_id}: {frame_of[frame_id]} and "
                f"{name}; expected one per frame."
            )
        frame_of[frame_id] = name
        segments = annotation.get("segments_info")
        if not isinstance(segments, list):
            raise ValueError(f"{path}: the annotation of {name} has no 'segments_info' list.")
        sequence = frame_id.split("_")[0]
        frames[name] = []
        for segment in segments:
            where = f"{path}, {name}"
            if not isinstance(segment, Mapping) or not isinstance(segment.get("id"), int):
                raise ValueError(f"{where}: a segment without an integer 'id': {segment!r}.")
            if not 0 < segment["id"] < 1 << 24:
                raise ValueError(
                    f"{where}: segment id {segment['id']}; expected 1..{(1 << 24) - 1} (0 is void)."
                )
            train_id = _train_id(segment.get("category_id"), categories, where, num_classes)
            seen = owner.setdefault((sequence, segment["id"]), (train_id, name))
            if seen[0] != train_id:
                raise ValueError(
                    f"{where}: segment id {segment['id']} is class {train_id} here and class "
                    f"{seen[0]} in {seen[1]} of the same sequence {sequence}; a segment id must "
                    "name one object (one class) per sequence."
                )
            frames[name].append((segment["id"], train_id))
    if ignored:
        logger.warning(
            "ignoring %d annotations of %s that belong to no ground-truth frame (first: %s)",
            len(ignored),
            path,
            ", ".join(ignored[:5]),
        )
    pairs = np.array(
        sorted({(c, s) for segments in frames.values() for s, c in segments}), np.int64
    ).reshape(-1, 2)
    first = np.searchsorted(pairs[:, 0], pairs[:, 0])
    numbers = np.arange(len(pairs)) - first + 1  # 1, 2, ... per class in segment id order
    if numbers.size and numbers.max() >= _MAX_INSTANCES:
        raise ValueError(f"{path}: more than {_MAX_INSTANCES - 1} segment ids of one class.")
    instance_of = {(int(c), int(s)): int(n) for (c, s), n in zip(pairs, numbers, strict=True)}
    tables = {}
    for name, segments in frames.items():
        segments.sort()
        ids = [s for s, _ in segments]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{path}, {name}: a segment id is listed twice in segments_info.")
        tables[name] = SegmentTable(
            np.array(ids, np.int64),
            np.array([c for _, c in segments], np.int32),
            np.array([instance_of[(c, s)] for s, c in segments], np.int32),
            path,
        )
    return tables


def read_coco_panoptic_png(
    path: str, table: SegmentTable, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read one COCO panoptic PNG into class and instance maps.

    Returns:
        ``(classes, instances)``: int32 (H, W); void (id 0) is ``num_classes`` with instance 0.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: not an 8-bit RGB PNG, an id missing from the segments, or a listed segment
            absent from the PNG.
    """
    what = "an 8-bit RGB COCO panoptic PNG (id = R + 256 G + 256^2 B)"
    bgr = read_png(path, what)
    if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise ValueError(f"{path}: a {bgr.dtype} PNG of shape {bgr.shape}; expected {what}.")
    ids = (
        bgr[..., 2].astype(np.int64)
        + (bgr[..., 1].astype(np.int64) << 8)
        + (bgr[..., 0].astype(np.int64) << 16)
    )
    present = np.unique(ids)
    unknown = present[(present != 0) & ~np.isin(present, table.ids)]
    if unknown.size:
        raise ValueError(
            f"{path}: segment id {int(unknown[0])} is in the PNG but not in its segments_info "
            f"in {table.json}."
        )
    absent = table.ids[~np.isin(table.ids, present)]
    if absent.size:
        raise ValueError(
            f"{path}: segment id {int(absent[0])} is in its segments_info in {table.json} but "
            "not in the PNG."
        )
    ids_ext = np.concatenate([[0], table.ids])
    classes_ext = np.concatenate([[num_classes], table.classes]).astype(np.int32)
    instances_ext = np.concatenate([[0], table.instances]).astype(np.int32)
    order = np.argsort(ids_ext)
    index = order[np.searchsorted(ids_ext[order], ids)]
    return classes_ext[index], instances_ext[index]
