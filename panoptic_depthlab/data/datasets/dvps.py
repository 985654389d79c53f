"""Turn a DVPS split directory in the official layout into Detectron2 dataset dicts.

One record per frame (Detectron2 "dataset dict"), with these keys:

* ``file_name``: RGB image; ``height``, ``width``: its size in pixels.
* ``image_id``: the frame's file-name prefix, unique within a split.
* ``sequence_id``, ``frame_index``: ints parsed from ``<seq:06d>_<frame:06d>_...``.
* ``depth_file_name``: 16-bit PNG, meters * ``depth_scale``, 0 = no depth.
* Labels: Cityscapes-DVPS ``panoptic_file_name`` (class * 1000 + instance);
  SemKITTI-DVPS ``sem_seg_file_name`` (class, 255 = unlabelled) and ``instance_file_name``.
* ``focal_length`` (SemKITTI-DVPS only): pixels, parsed from ``..._depth_<focal>.png``.
* ``next_frame``: the file keys, ``image_id`` and ``frame_index`` of the next frame of the
  same sequence, or None for the last frame. Sequences are never crossed.

Every file is checked when the split is loaded (exists, is a PNG of the expected kind, has the
image's size); a problem raises an error naming the file and what was expected. Only PNG headers
are read, so loading a split costs about a millisecond per frame.
"""

from __future__ import annotations

import logging
import os
import re
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image, UnidentifiedImageError

from .metadata import (
    CITYSCAPES_DVPS,
    SEMKITTI_DVPS,
    check_dvps_format,
    custom_metadata,
    dvps_metadata,
)

__all__ = ["SEMKITTI_DEPTH_NAME", "check_dvps_dataset", "load_dvps_split", "register_dvps_dataset"]

logger = logging.getLogger(__name__)

_MODES_RGB = ("RGB",)
_MODES_16BIT = ("I;16", "I;16B", "I")
_MODES_LABEL = ("L",) + _MODES_16BIT

_CITYSCAPES_IMAGE = re.compile(
    r"^(?P<prefix>(?P<seq>\d{6})_(?P<frame>\d{6})_[^_]+_\d+_\d+)_leftImg8bit\.png$"
)
_CITYSCAPES_LABEL = re.compile(r"^(?P<prefix>.+)_(gtFine_instanceTrainIds|depth)\.png$")
_SEMKITTI_IMAGE = re.compile(r"^(?P<prefix>(?P<seq>\d{6})_(?P<frame>\d{6}))_leftImg8bit\.png$")
_SEMKITTI_LABEL = re.compile(r"^(?P<prefix>.+)_(gtFine_class|gtFine_instance|depth_[^_]*)\.png$")
SEMKITTI_DEPTH_NAME = re.compile(r"^(?P<prefix>\d{6}_\d{6})_depth_(?P<focal>\d+(\.\d+)?)\.png$")

# Per label key: the PIL modes accepted and what to call them in an error message.
_LABEL_KINDS = {
    "depth_file_name": (_MODES_16BIT, "a 16-bit single-channel depth PNG"),
    "panoptic_file_name": (_MODES_16BIT, "a 16-bit single-channel panoptic PNG"),
    "sem_seg_file_name": (_MODES_LABEL, "an 8- or 16-bit single-channel class PNG"),
    "instance_file_name": (_MODES_LABEL, "an 8- or 16-bit single-channel instance PNG"),
}
_FILE_KEYS = ("file_name",) + tuple(_LABEL_KINDS)


def _cityscapes_frames(split_dir: str, names: list[str]) -> list[dict[str, Any]]:
    """Records (without next-frame links) of a Cityscapes-DVPS split directory."""
    records = []
    for name in names:
        m = _CITYSCAPES_IMAGE.match(name)
        if m is None:
            continue
        prefix = os.path.join(split_dir, m["prefix"])
        records.append(
            {
                "file_name": os.path.join(split_dir, name),
                "image_id": m["prefix"],
                "sequence_id": int(m["seq"]),
                "frame_index": int(m["frame"]),
                "panoptic_file_name": prefix + "_gtFine_instanceTrainIds.png",
                "depth_file_name": prefix + "_depth.png",
            }
        )
    return records


def _semkitti_frames(split_dir: str, names: list[str]) -> list[dict[str, Any]]:
    """Records (without next-frame links) of a SemKITTI-DVPS split directory."""
    depth_files = defaultdict(list)
    for name in names:
        m = SEMKITTI_DEPTH_NAME.match(name)
        if m is not None:
            depth_files[m["prefix"]].append((name, float(m["focal"])))
    records = []
    for name in names:
        m = _SEMKITTI_IMAGE.match(name)
        if m is None:
            continue
        image = os.path.join(split_dir, name)
        depths = depth_files.get(m["prefix"], [])
        if len(depths) != 1:
            found = ", ".join(n for n, _ in depths) or "none"
            raise FileNotFoundError(
                f"{image}: expected exactly one depth file {m['prefix']}_depth_<focal>.png "
                f"(focal length in pixels, e.g. 718.856) beside it; found {found}."
            )
        depth_name, focal = depths[0]
        prefix = os.path.join(split_dir, m["prefix"])
        records.append(
            {
                "file_name": image,
                "image_id": m["prefix"],
                "sequence_id": int(m["seq"]),
                "frame_index": int(m["frame"]),
                "sem_seg_file_name": prefix + "_gtFine_class.png",
                "instance_file_name": prefix + "_gtFine_instance.png",
                "depth_file_name": os.path.join(split_dir, depth_name),
                "focal_length": focal,
            }
        )
    return records


# Per format: the record builder, the image pattern, and the pattern of label/depth files.
_FORMATS: dict[str, tuple[Callable, str, re.Pattern]] = {
    CITYSCAPES_DVPS: (
        _cityscapes_frames,
        "<seq:06d>_<frame:06d>_<city>_<n>_<n>_leftImg8bit.png",
        _CITYSCAPES_LABEL,
    ),
    SEMKITTI_DVPS: (
        _semkitti_frames,
        "<seq:06d>_<frame:06d>_leftImg8bit.png",
        _SEMKITTI_LABEL,
    ),
}


def _check_png(path: str, modes: tuple[str, ...], kind: str, image: str) -> tuple[int, int]:
    """Check that ``path`` is a PNG of one of ``modes``; return its (height, width)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing; expected {kind} for the image {image}.")
    try:
        with Image.open(path) as im:
            fmt, mode, (width, height) = im.format, im.mode, im.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable PNG ({e}); expected {kind}.") from e
    if fmt != "PNG" or mode not in modes:
        raise ValueError(
            f"{path}: is a {fmt} image of mode {mode!r}; expected {kind} (PIL mode in {modes})."
        )
    return height, width


def _check_frame_files(record: dict[str, Any]) -> None:
    """Fill ``height``/``width`` of a record and check each of its files."""
    image = record["file_name"]
    height, width = _check_png(image, _MODES_RGB, "an 8-bit RGB PNG image", image)
    record["height"], record["width"] = height, width
    for key, (modes, kind) in _LABEL_KINDS.items():
        if key not in record:
            continue
        size = _check_png(record[key], modes, kind, image)
        if size != (height, width):
            raise ValueError(
                f"{record[key]}: size (H, W) = {size} differs from its image {image}, "
                f"(H, W) = {(height, width)}; label and depth maps must match the image."
            )


def _link_sequences(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort records by (sequence, frame) and point each at the next frame of its sequence."""
    records = sorted(records, key=lambda r: (r["sequence_id"], r["frame_index"]))
    for i, cur in enumerate(records):
        nxt = records[i + 1] if i + 1 < len(records) else None
        if nxt is None or nxt["sequence_id"] != cur["sequence_id"]:
            cur["next_frame"] = None
            continue
        if nxt["frame_index"] == cur["frame_index"]:
            raise ValueError(
                f"{cur['file_name']} and {nxt['file_name']}: two frames with sequence "
                f"{cur['sequence_id']} and frame index {cur['frame_index']}; expected one."
            )
        cur["next_frame"] = {
            k: nxt[k] for k in _FILE_KEYS + ("image_id", "frame_index") if k in nxt
        }
    return records


def _missing_split_message(dataset_name: str, split_dir: str) -> str:
    env = os.environ.get("DETECTRON2_DATASETS")
    where = f"$DETECTRON2_DATASETS={env}" if env else "./datasets, as $DETECTRON2_DATASETS is unset"
    return (
        f"Dataset '{dataset_name}' not found: expected the directory {os.path.abspath(split_dir)}. "
        f"Built-in dataset names look under {where}; datasets/README.md explains how to "
        "prepare the data and where to put it."
    )


def load_dvps_split(
    root: str, split: str, dataset_format: str, dataset_name: str = ""
) -> list[dict[str, Any]]:
    """Load ``<root>/video_sequence/<split>/`` of a DVPS dataset as Detectron2 dataset dicts.

    Args:
        root: dataset root, e.g. ``datasets/cityscapes-dvps``.
        split: split folder name, e.g. ``train`` or ``val``.
        dataset_format: ``cityscapes_dvps`` or ``semkitti_dvps``.
        dataset_name: registered name, used in error messages.

    Returns:
        One record per frame, sorted by (sequence_id, frame_index); keys in the module docstring.
    """
    check_dvps_format(dataset_format)
    build, image_pattern, label_pattern = _FORMATS[dataset_format]
    split_dir = os.path.join(root, "video_sequence", split)
    if not os.path.isdir(split_dir):
        raise FileNotFoundError(_missing_split_message(dataset_name or split_dir, split_dir))
    names = sorted(os.listdir(split_dir))
    records = build(split_dir, names)
    if not records:
        raise FileNotFoundError(
            f"{split_dir}: no frames found; expected images named {image_pattern} "
            f"({dataset_format} layout, see datasets/README.md)."
        )
    prefixes = {r["image_id"] for r in records}
    for name in names:
        if name.endswith("_leftImg8bit.png") and name[: -len("_leftImg8bit.png")] not in prefixes:
            raise ValueError(
                f"{os.path.join(split_dir, name)}: the name does not match {image_pattern} "
                f"({dataset_format} layout); rename it or remove it from the split."
            )
        m = label_pattern.match(name)
        if m is not None and m["prefix"] not in prefixes:
            raise FileNotFoundError(
                f"{os.path.join(split_dir, name)}: has no image; expected "
                f"{m['prefix']}_leftImg8bit.png beside it ({dataset_format} layout)."
            )
    for record in records:
        _check_frame_files(record)
    records = _link_sequences(records)
    logger.info(
        "Loaded %d frames in %d sequences from %s",
        len(records),
        len({r["sequence_id"] for r in records}),
        split_dir,
    )
    return records


def check_dvps_dataset(name: str) -> None:
    """Raise ``FileNotFoundError`` (the expected path, ``DETECTRON2_DATASETS`` and
    datasets/README.md) if the split directory (metadata ``split_dir``) of the registered
    dataset ``name`` is missing; a cheap check that reads no file. Datasets registered
    otherwise are not checked."""
    split_dir = getattr(MetadataCatalog.get(name), "split_dir", None)
    if split_dir is not None and not os.path.isdir(split_dir):
        raise FileNotFoundError(_missing_split_message(name, split_dir))


def register_dvps_dataset(
    name: str,
    root: str,
    split: str,
    dataset_format: str,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Register ``<root>/video_sequence/<split>`` under ``name`` in Detectron2's catalogs.

    The one public way to register DVPS data in any place: the built-in names
    (:mod:`panoptic_depthlab.data.datasets.builtin`) use it too. Files are read lazily, when
    ``DatasetCatalog.get(name)`` is first called; the metadata is checked here.

    Args:
        name: dataset name for ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
        root: dataset root that holds ``video_sequence/<split>/``.
        split: split folder name.
        dataset_format: ``cityscapes_dvps`` or ``semkitti_dvps``: the file layout (and, without
            ``metadata``, that dataset's classes and protocol).
        metadata: a dataset of your own in that layout: its ``classes``, ``colors``,
            ``thing_ids`` and optionally ``label_void_id``, ``label_divisor``,
            ``depth_scale``, ``max_depth``, ``dvpq_window_sizes``, ``dvpq_depth_thresholds``
            (:func:`~panoptic_depthlab.data.datasets.metadata.custom_metadata`). A model trained
            on it gets ``len(classes)`` semantic classes.

    Raises:
        ValueError: metadata that does not describe the classes (see ``custom_metadata``).
    """
    check_dvps_format(dataset_format)
    metadata = (
        dvps_metadata(dataset_format)
        if metadata is None
        else custom_metadata(dataset_format, metadata)
    )
    DatasetCatalog.register(name, lambda: load_dvps_split(root, split, dataset_format, name))
    split_dir = os.path.join(root, "video_sequence", split)
    MetadataCatalog.get(name).set(dataset_root=root, split=split, split_dir=split_dir, **metadata)
