"""Cityscapes-VPS: video panoptic segmentation on Cityscapes sequences, without depth, in the
layout of its authors' release (mcahny/vps, ``docs/DATASET.md``)::

    <root>/panoptic_gt_<split>_city_vps.json                         # COCO panoptic, per split
    <root>/<split>/img/<name>_leftImg8bit.png                        # 8-bit RGB image
    <root>/<split>/panoptic_video/<name>_gtFine_color.png            # 8-bit RGB segment ids

``<name>`` is ``<video:04d>_<frame:04d>_<city>_<sequence:06d>_<frame:06d>``: the first two
fields number the video and its frame (the annotated frames are 5 apart; a video has 6), the
rest is the Cityscapes sequence frame it was taken from. A panoptic PNG pixel holds the segment
id R + 256 G + 65536 B (0 unlabelled); the JSON lists ``images`` (``id`` = ``<name>``,
``file_name``, ``width``, ``height``), ``annotations`` (``image_id``, ``file_name``,
``segments_info``: ``id``, ``category_id``, ``iscrowd``, ``area``) and ``categories``. The
category ids are the 19 Cityscapes train ids 0..18 (not label ids); things are 11..18 (person,
rider, car, truck, bus, train, motorcycle, bicycle). A segment id names the same object in every
frame of its video.

One record per annotated frame (Detectron2 "dataset dict"), with these keys:

* ``file_name``: the image; ``height``, ``width``: its size in pixels (PNG header).
* ``image_id``: ``<name>`` (unique in a split); ``sequence_id``, ``frame_index``: the ints of
  its ``<video>`` and first ``<frame>`` fields.
* ``pan_seg_file_name``, ``segments_info``: the panoptic PNG and its segments, read by
  :func:`~panoptic_depthlab.data.annotations.read_labels` (the COCO-PNG branch). Each thing
  segment that is not crowd also gets ``instance_id``: its number among the segments of its
  class in the whole video (1, 2, ... in segment id order), so that an object keeps its
  instance id from frame to frame (the reader's per-frame numbering would not).
* ``next_frame``: the file keys, ``segments_info``, ``image_id`` and ``frame_index`` of the next
  annotated frame of the same video, or None for the last one. Videos are never crossed.

There is no depth: the metadata's ``has_depth`` is False. Loading a split checks every frame
from the PNG headers and the JSON and reports problems as
:class:`~panoptic_depthlab.data.errors.DatasetError`.

Facts taken from the authors' scripts (mcahny/vps):

* ``prepare_city_vps/create_panoptic_labels.py`` turns Cityscapes' color and instance maps into
  ``panoptic_inst/`` (stuff = train id, thing = train id * 1000 + instance; Cityscapes crowd
  groups, instance ids < 1000, become unlabelled) and ``labelmap/`` (train ids, 255 void);
  ``city_default.py`` holds the 19 categories with train ids as ``id``.
* ``prepare_city_vps/create_panoptic_video_labels.py`` writes ``<split>/panoptic_video/`` and
  ``panoptic_gt_<split>_city_vps.json`` (images, annotations, categories; no ``videos`` key):
  segment ids come from panopticapi's ``IdGenerator`` (a stuff class's color, a random color
  near the class color for a thing), kept per video (video = the first 4 characters of the
  name), and ``iscrowd`` 1 for a thing id below 1000.
* ``tools/eval_vpq.py``: reads these PNGs and the JSON, sorts the frames by name, groups them 6
  per video and scores VPQ over windows of ``nframes`` in [1, 2, 3, 4] consecutive annotated
  frames inside a video (reported as k = (nframes - 1) * 5 = 0, 5, 10, 15 frames), crowd
  segments ignored, unlabelled id 0, a class without segments left out of the means.
* The training split is released as ``train/img`` + ``train/labelmap`` with COCO instance
  JSONs; ``prepare_city_vps/prepare_trainval.sh`` runs the same two label scripts for either
  split, so ``train/panoptic_video`` + ``panoptic_gt_train_city_vps.json`` is what they write
  for train. This loader reads that (video panoptic) format for both splits.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import DatasetError
from .dvps import _link_sequences, _missing_split_message
from .kitti_step import _check_rgb_png
from .metadata import video_panoptic_metadata

__all__ = [
    "CITYSCAPES_VPS",
    "cityscapes_vps_json_path",
    "cityscapes_vps_metadata",
    "load_cityscapes_vps",
    "register_cityscapes_vps",
]

logger = logging.getLogger(__name__)

CITYSCAPES_VPS = "cityscapes_vps"
IMAGE_SUFFIX = "_leftImg8bit.png"
PANOPTIC_SUFFIX = "_gtFine_color.png"
_NAME = re.compile(r"^(?P<video>\d{4})_(?P<frame>\d{4})_[a-z_]+_\d{6}_\d{6}$")
_PANOPTIC_KIND = "a Cityscapes-VPS panoptic PNG: 8-bit RGB, segment id = R + 256 G + 65536 B"


def cityscapes_vps_metadata() -> dict[str, Any]:
    """Metadata of Cityscapes-VPS: Cityscapes-DVPS's 19 classes, colors and things (11..18),
    with the authors' VPQ protocol (module docstring):

    * ``dataset_format`` ``"cityscapes_vps"``; ``label_void_id`` 255 (what the COCO-PNG reader
      gives segment id 0); ``label_divisor`` 1000;
    * ``has_depth`` False, ``dvpq_depth_thresholds`` []: VPQ only (lambda = 0);
    * ``dvpq_window_sizes`` [1, 2, 3, 4] annotated frames (k = 0, 5, 10, 15 frames), windows
      inside a video, a class without segments left out of the means;
    * ``evaluate_stq`` False.
    """
    return video_panoptic_metadata(CITYSCAPES_VPS, evaluate_stq=False)


def cityscapes_vps_json_path(root: str, split: str) -> str:
    """The split's panoptic JSON: ``<root>/panoptic_gt_<split>_city_vps.json``."""
    return os.path.join(root, f"panoptic_gt_{split}_city_vps.json")


def _read_json(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise DatasetError(
            f"{path}: missing; expected the split's panoptic JSON (Cityscapes-VPS layout, see "
            "datasets/README.md)."
        )
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable JSON file ({error}).") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DatasetError(f"{path}: has no 'annotations' list; expected a COCO panoptic JSON.")
    return data


def _annotations(path: str, data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``image_id`` -> annotation of the JSON at ``path``, each checked for its keys."""
    by_id: dict[str, dict[str, Any]] = {}
    for annotation in data["annotations"]:
        if not isinstance(annotation, dict) or not {"image_id", "file_name"} <= set(annotation):
            raise DatasetError(
                f"{path}: an annotation without 'image_id' or 'file_name': {annotation!r:.200}"
            )
        segments = annotation.get("segments_info")
        if not isinstance(segments, list) or not all(
            isinstance(s, dict) and "id" in s and "category_id" in s for s in segments
        ):
            raise DatasetError(
                f"{path}: the annotation of {annotation['image_id']} has no 'segments_info' "
                "list of segments with 'id' and 'category_id'."
            )
        image_id = str(annotation["image_id"])
        if image_id in by_id:
            raise DatasetError(f"{path}: two annotations of image {image_id}; expected one.")
        by_id[image_id] = annotation
    return by_id


def _number_instances(records: list[dict[str, Any]], thing_ids: list[int], json_path: str) -> None:
    """Give every non-crowd thing segment ``instance_id``: its rank (from 1) among the segment
    ids of its class in its video, so that ids are stable over the video's frames."""
    things = set(thing_ids)
    ids: dict[tuple[int, int], set[int]] = {}
    for record in records:
        for segment in record["segments_info"]:
            category = int(segment["category_id"])
            if category in things and not segment.get("iscrowd", 0):
                ids.setdefault((record["sequence_id"], category), set()).add(int(segment["id"]))
    rank = {}
    for (video, category), segment_ids in ids.items():
        if len(segment_ids) >= 1000:
            raise DatasetError(
                f"{json_path}: video {video:04d} has {len(segment_ids)} segments of class "
                f"{category}; expected at most 999 (instance ids stay below the divisor 1000)."
            )
        for number, segment_id in enumerate(sorted(segment_ids), 1):
            rank[video, category, segment_id] = number
    for record in records:
        segments = []
        for segment in record["segments_info"]:
            segment = dict(segment)
            key = (record["sequence_id"], int(segment["category_id"]), int(segment["id"]))
            if key in rank and not segment.get("iscrowd", 0):
                segment["instance_id"] = rank[key]
            segments.append(segment)
        record["segments_info"] = segments


def load_cityscapes_vps(root: str, split: str, dataset_name: str = "") -> list[dict[str, Any]]:
    """The records of ``<root>/<split>/img`` with their video panoptic labels (module docstring).

    Args:
        root: dataset root holding ``<split>/`` and ``panoptic_gt_<split>_city_vps.json``.
        split: ``train`` or ``val``.
        dataset_name: registered name, for the message of a missing split.

    Returns:
        One record per annotated frame, sorted by (sequence_id, frame_index).

    Raises:
        DatasetError: the split's image folder or JSON is missing or holds no frame; an image
            name outside the layout; images without a panoptic PNG or without an annotation
            (the first named, with how many), panoptic PNGs or annotations without an image; an
            image or panoptic PNG that is not an 8-bit RGB PNG, or of another size than its
            image; more than 999 instances of a class in a video.
    """
    image_dir = os.path.join(root, split, "img")
    panoptic_dir = os.path.join(root, split, "panoptic_video")
    json_path = cityscapes_vps_json_path(root, split)
    if not os.path.isdir(image_dir):
        raise DatasetError(_missing_split_message(dataset_name or image_dir, image_dir))
    annotations = _annotations(json_path, _read_json(json_path))
    names = sorted(n for n in os.listdir(image_dir) if n.endswith(IMAGE_SUFFIX))
    records, no_label, no_annotation = [], [], []
    for file_name in names:
        name = file_name[: -len(IMAGE_SUFFIX)]
        match = _NAME.match(name)
        if match is None:
            raise DatasetError(
                f"{os.path.join(image_dir, file_name)}: the name does not match "
                f"<video:04d>_<frame:04d>_<city>_<sequence:06d>_<frame:06d>{IMAGE_SUFFIX} "
                "(Cityscapes-VPS layout); rename it or remove it from the split."
            )
        annotation = annotations.get(name)
        label = os.path.join(
            panoptic_dir, annotation["file_name"] if annotation else name + PANOPTIC_SUFFIX
        )
        record = {
            "file_name": os.path.join(image_dir, file_name),
            "image_id": name,
            "sequence_id": int(match["video"]),
            "frame_index": int(match["frame"]),
            "pan_seg_file_name": label,
            "segments_info": annotation["segments_info"] if annotation else [],
        }
        if annotation is None:
            no_annotation.append(record["file_name"])
        if not os.path.isfile(label):
            no_label.append(label)
        records.append(record)
    if not records:
        raise DatasetError(
            f"{image_dir}: no frames found; expected images <video:04d>_<frame:04d>_<city>_"
            f"<sequence:06d>_<frame:06d>{IMAGE_SUFFIX} (Cityscapes-VPS layout, see "
            "datasets/README.md)."
        )
    if no_label:
        raise DatasetError(
            f"{no_label[0]}: missing, and {len(no_label)} of the {len(records)} images of "
            f"Cityscapes-VPS {split} in {root} have no panoptic PNG ({split}/panoptic_video/"
            f"<name>{PANOPTIC_SUFFIX}; see datasets/README.md)."
        )
    if no_annotation:
        raise DatasetError(
            f"{no_annotation[0]}: has no annotation in {json_path}, and neither have "
            f"{len(no_annotation) - 1} more of the {len(records)} images of Cityscapes-VPS "
            f"{split}."
        )
    image_ids = {r["image_id"] for r in records}
    extra = sorted(set(annotations) - image_ids)
    if extra:
        raise DatasetError(
            f"{json_path}: {len(extra)} annotations have no image in {image_dir}, the first "
            f"{extra[0]}; expected {extra[0]}{IMAGE_SUFFIX} (Cityscapes-VPS layout)."
        )
    if os.path.isdir(panoptic_dir):
        used = {os.path.basename(r["pan_seg_file_name"]) for r in records}
        unmatched = sorted(
            n for n in os.listdir(panoptic_dir) if n.endswith(".png") and n not in used
        )
        if unmatched:
            raise DatasetError(
                f"{os.path.join(panoptic_dir, unmatched[0])}: has no image or annotation, and "
                f"neither have {len(unmatched) - 1} more panoptic PNGs (Cityscapes-VPS layout)."
            )
    for record in records:
        size = _check_rgb_png(record["file_name"], "an 8-bit RGB image")
        record["height"], record["width"] = size
        found = _check_rgb_png(record["pan_seg_file_name"], _PANOPTIC_KIND)
        if found != size:
            raise DatasetError(
                f"{record['pan_seg_file_name']}: {found[1]} x {found[0]} pixels (W x H); "
                f"expected the image's {size[1]} x {size[0]}."
            )
    _number_instances(records, cityscapes_vps_metadata()["thing_ids"], json_path)
    records = _link_sequences(records)
    for record, following in zip(records, records[1:], strict=False):
        if record["next_frame"] is not None:  # _link_sequences copies the DVPS file keys only
            record["next_frame"]["pan_seg_file_name"] = following["pan_seg_file_name"]
            record["next_frame"]["segments_info"] = following["segments_info"]
    logger.info(
        "Loaded %d Cityscapes-VPS %s frames in %d videos from %s",
        len(records),
        split,
        len({r["sequence_id"] for r in records}),
        root,
    )
    return records


def register_cityscapes_vps(name: str, root: str, split: str) -> None:
    """Register Cityscapes-VPS ``split`` of ``root`` (module docstring) under ``name``; files
    are read when ``DatasetCatalog.get(name)`` is first called."""
    DatasetCatalog.register(name, lambda: load_cityscapes_vps(root, split, name))
    MetadataCatalog.get(name).set(
        name=name,
        dataset_root=root,
        split=split,
        split_dir=os.path.join(root, split, "img"),
        **cityscapes_vps_metadata(),
    )
