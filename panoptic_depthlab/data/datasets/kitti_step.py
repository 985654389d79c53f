"""KITTI-STEP: a video panoptic (segmentation and tracking) dataset without depth ground truth,
in the layout DeepLab2 documents (``g3doc/setup/kitti_step.md``)::

    <root>/images/{train,val,test}/<sequence:04d>/<frame:06d>.png          # 8-bit RGB
    <root>/panoptic_maps/{train,val}/<sequence:04d>/<frame:06d>.png   # 8-bit RGB labels

A panoptic map pixel holds R = class (Cityscapes train id 0..18, 255 void), G = instance // 256
and B = instance % 256. Only person (11) and car (13) carry instance (track) ids, constant over
a sequence; person or car pixels with instance 0 are crowd regions, and the other 17 classes,
rider, truck, bus, train, motorcycle and bicycle included, are labelled without instances.

One record per frame (Detectron2 "dataset dict"), with these keys:

* ``file_name``: the RGB image; ``height``, ``width``: its size in pixels (PNG header).
* ``image_id``: ``<sequence>_<frame>`` as the names are written (``0002_000017``).
* ``sequence_id``, ``frame_index``: ints of the sequence folder and frame file names.
* ``step_panoptic_file_name``: the panoptic map (the STEP encoding above, which DeepLab2 also
  uses for MOTChallenge-STEP; read by :func:`~panoptic_depthlab.data.annotations.read_labels`).
* ``next_frame``: the file keys, ``image_id`` and ``frame_index`` of the next frame of the same
  sequence, or None for the last frame, as for the DVPS datasets. Sequences are never crossed.

There is no depth file: the metadata's ``has_depth`` is False, so neither training nor
evaluation reads depth. Loading a split checks every frame from the PNG headers (both files
exist, the image and the panoptic map are 8-bit RGB PNGs of the same size) and reports
problems as :class:`~panoptic_depthlab.data.errors.DatasetError`. The ``test`` split has no
panoptic maps and is not registered.

Facts taken from DeepLab2 (google-research/deeplab2), which defines the dataset's protocol:

* ``data/dataset.py``, ``KITTI_STEP_INFORMATION``: 19 classes, ``ignore_label`` 255,
  ``panoptic_label_divisor`` 1000, ``class_has_instances_list`` (11, 13), a video dataset with
  the Cityscapes colormap; 5027 train, 2981 val and 11095 test frames.
* ``data/build_step_data.py``: panoptic id = class * 1000 + (G * 256 + B), instance ids in
  [1, 1000) on tracked things and 0 on stuff, crowd and void pixels. The instance ids are the
  KITTI-MOTS track ids + 1 (``data/utils/create_step_panoptic_maps.py``), so they stay below
  the divisor; this loader's label reader rejects one that does not.
* ``evaluation/segmentation_and_tracking_quality.py`` with ``trainer/evaluator.py``: STQ over
  the 19 classes with things (11, 13), ``ignore_label`` 255 and 1000 as
  ``max_instances_per_category``; void ground-truth pixels are left out, thing pixels with
  instance 0 (crowd) are left out of the association term, and tubes are matched within a
  sequence. :class:`~panoptic_depthlab.evaluation.stq.STQAccumulator` follows the same rules.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import DatasetError
from .dvps import _link_sequences, _missing_split_message
from .metadata import video_panoptic_metadata

__all__ = [
    "KITTI_STEP",
    "STEP_PANOPTIC_KEY",
    "kitti_step_metadata",
    "load_kitti_step",
    "register_kitti_step",
]

logger = logging.getLogger(__name__)

KITTI_STEP = "kitti_step"
STEP_PANOPTIC_KEY = "step_panoptic_file_name"

_THING_IDS = (11, 13)  # person, car: the classes with track ids
_SEQUENCE = re.compile(r"^\d{4}$")
_FRAME = re.compile(r"^\d{6}\.png$")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PANOPTIC_KIND = (
    "a KITTI-STEP panoptic map: an 8-bit RGB PNG, R = class, G = instance // 256, "
    "B = instance % 256"
)
_PNG_COLOR_TYPES = {0: "gray", 2: "RGB", 3: "palette", 4: "gray + alpha", 6: "RGBA"}


def kitti_step_metadata() -> dict[str, Any]:
    """Metadata of KITTI-STEP: Cityscapes-DVPS's 19 classes, colors and prediction files, with
    DeepLab2's KITTI-STEP protocol (module docstring):

    * ``dataset_format`` ``"kitti_step"``; ``thing_ids`` [11, 13] (person, car): the other
      classes are stuff (a rider or a bus is one segment per class and frame);
    * ``label_void_id`` 255, ``label_divisor`` 1000 (DeepLab2's panoptic label divisor);
    * ``has_depth`` False: no depth ground truth, so no depth targets, losses or metrics;
      ``dvpq_depth_thresholds`` [] leaves lambda = 0 (VPQ) the only level scored;
      ``depth_scale`` and ``max_depth`` are unused;
    * ``dvpq_window_sizes`` [1, 2, 3, 4]: VPQ windows are not standardized for KITTI-STEP, whose
      official metric is STQ; these are Cityscapes-VPS's, with windows inside each sequence and
      a class without segments left out of the means (Cityscapes-DVPS's rules);
    * ``evaluate_stq`` True: STQ with DeepLab2's rules (things 11 and 13, void 255 ignored,
      instance 0 on a thing is crowd).
    """
    meta = video_panoptic_metadata(KITTI_STEP, evaluate_stq=True)
    thing_ids = list(_THING_IDS)
    meta.update(
        thing_ids=thing_ids,
        stuff_ids=[i for i in range(meta["num_classes"]) if i not in thing_ids],
        thing_dataset_id_to_contiguous_id={i: i for i in thing_ids},
    )
    return meta


def _png_header(path: str) -> tuple[int, int, int, int]:
    """``(width, height, bit depth, color type)`` from a PNG's IHDR chunk (33 bytes read).
    Read here rather than through PIL, whose header mode of a 16-bit RGB PNG is "RGB" too."""
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as error:
        raise DatasetError(f"{path}: not readable ({error}).") from None
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DatasetError(f"{path}: not a PNG file; expected an 8-bit RGB PNG.")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25]


def _check_rgb_png(path: str, what: str) -> tuple[int, int]:
    """(H, W) of ``path``, which must be an 8-bit RGB PNG holding ``what``."""
    width, height, depth, color = _png_header(path)
    if depth != 8 or color != 2:
        kind = _PNG_COLOR_TYPES.get(color, f"color type {color}")
        raise DatasetError(f"{path}: a {depth}-bit {kind} PNG; expected {what}.")
    return height, width


def _list_frames(directory: str, split_dir: str) -> dict[str, list[str]]:
    """Sequence folder name -> its frame file names, of ``<directory>/<sequence>/<frame>.png``,
    both sorted; names that do not follow the layout raise (``split_dir`` for the message)."""
    frames: dict[str, list[str]] = {}
    for sequence in sorted(os.listdir(directory)):
        folder = os.path.join(directory, sequence)
        if not os.path.isdir(folder):
            continue
        if _SEQUENCE.match(sequence) is None:
            raise DatasetError(
                f"{folder}: not a sequence folder of {split_dir}; expected four-digit names "
                "(0000, 0001, ...; KITTI-STEP layout, see datasets/README.md)."
            )
        names = []
        for name in sorted(os.listdir(folder)):
            if not name.endswith(".png"):
                continue
            if _FRAME.match(name) is None:
                raise DatasetError(
                    f"{os.path.join(folder, name)}: the name does not match <frame:06d>.png "
                    "(KITTI-STEP layout); rename it or remove it from the split."
                )
            names.append(name)
        frames[sequence] = names
    return frames


def load_kitti_step(root: str, split: str, dataset_name: str = "") -> list[dict[str, Any]]:
    """The records of ``<root>/images/<split>`` with their panoptic maps (module docstring).

    Args:
        root: dataset root holding ``images/`` and ``panoptic_maps/``.
        split: ``train`` or ``val``.
        dataset_name: registered name, for the message of a missing split.

    Returns:
        One record per frame, sorted by (sequence_id, frame_index).

    Raises:
        DatasetError: the split's image folder is missing or holds no frame; a folder or file
            name outside the layout; images without a panoptic map (the first named, with how
            many) or panoptic maps without an image; an image or panoptic map that is not an
            8-bit RGB PNG, or a panoptic map of another size than its image.
    """
    image_dir = os.path.join(root, "images", split)
    panoptic_dir = os.path.join(root, "panoptic_maps", split)
    if not os.path.isdir(image_dir):
        raise DatasetError(_missing_split_message(dataset_name or image_dir, image_dir))
    images = _list_frames(image_dir, image_dir)
    labels = _list_frames(panoptic_dir, panoptic_dir) if os.path.isdir(panoptic_dir) else {}
    records, missing = [], []
    for sequence, names in images.items():
        for name in names:
            record = {
                "file_name": os.path.join(image_dir, sequence, name),
                "image_id": f"{sequence}_{name[:-4]}",
                "sequence_id": int(sequence),
                "frame_index": int(name[:-4]),
                STEP_PANOPTIC_KEY: os.path.join(panoptic_dir, sequence, name),
            }
            if name not in labels.get(sequence, ()):
                missing.append(record[STEP_PANOPTIC_KEY])
            records.append(record)
    if not records:
        raise DatasetError(
            f"{image_dir}: no frames found; expected images <sequence:04d>/<frame:06d>.png "
            "(KITTI-STEP layout, see datasets/README.md)."
        )
    if missing:
        raise DatasetError(
            f"{missing[0]}: missing, and {len(missing)} of the {len(records)} images of "
            f"KITTI-STEP {split} in {root} have no panoptic map (panoptic_maps/{split}/"
            "<sequence>/<frame>.png; see datasets/README.md)."
        )
    for sequence, names in labels.items():
        unmatched = sorted(set(names) - set(images.get(sequence, ())))
        if unmatched:
            raise DatasetError(
                f"{os.path.join(panoptic_dir, sequence, unmatched[0])}: has no image; expected "
                f"{os.path.join(image_dir, sequence, unmatched[0])} (KITTI-STEP layout)."
            )
    for record in records:
        size = _check_rgb_png(record["file_name"], "an 8-bit RGB image")
        record["height"], record["width"] = size
        found = _check_rgb_png(record[STEP_PANOPTIC_KEY], _PANOPTIC_KIND)
        if found != size:
            raise DatasetError(
                f"{record[STEP_PANOPTIC_KEY]}: {found[1]} x {found[0]} pixels (W x H); expected "
                f"the image's {size[1]} x {size[0]}."
            )
    records = _link_sequences(records)
    for record, following in zip(records, records[1:], strict=False):
        if record["next_frame"] is not None:  # _link_sequences copies the DVPS file keys only
            record["next_frame"][STEP_PANOPTIC_KEY] = following[STEP_PANOPTIC_KEY]
    logger.info(
        "Loaded %d KITTI-STEP %s frames in %d sequences from %s",
        len(records),
        split,
        len({r["sequence_id"] for r in records}),
        root,
    )
    return records


def register_kitti_step(name: str, root: str, split: str) -> None:
    """Register KITTI-STEP ``split`` of ``root`` (module docstring) under ``name``; files are
    read when ``DatasetCatalog.get(name)`` is first called."""
    DatasetCatalog.register(name, lambda: load_kitti_step(root, split, name))
    MetadataCatalog.get(name).set(
        name=name,
        dataset_root=root,
        split=split,
        split_dir=os.path.join(root, "images", split),
        **kitti_step_metadata(),
    )
