"""Cityscapes with depth from disparity: Detectron2's Cityscapes panoptic records plus, for each
image, its disparity map and camera.

The layout is the real Cityscapes after cityscapesScripts' ``createTrainIdLabelImgs`` and
``createPanopticImgs`` (what Detectron2 registers as ``cityscapes_fine_panoptic_{train,val}``),
with Cityscapes' ``disparity`` and ``camera`` packages unpacked beside it::

    <root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png
    <root>/gtFine/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png
    <root>/gtFine/cityscapes_panoptic_<split>.json
    <root>/disparity/<split>/<city>/<name>_disparity.png
    <root>/camera/<split>/<city>/<name>_camera.json

Records are those of Detectron2's ``load_cityscapes_panoptic`` (``file_name``, ``image_id``,
``sem_seg_file_name``, ``pan_seg_file_name``, ``segments_info`` with contiguous train ids as
``category_id``) with ``disparity_file_name``, ``camera`` (``baseline`` m, ``fx`` px),
``height``, ``width`` and, as every image stands alone, ``sequence_id`` (its index in
``image_id`` order) and ``frame_index`` 0, without ``next_frame``. Depth in meters is computed
from the disparity when a record is read (:func:`~panoptic_depthlab.data.annotations.read_depth`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from detectron2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic
from PIL import Image

from ..disparity import read_camera
from ..errors import DatasetError
from .metadata import CITYSCAPES_DVPS, dvps_metadata

__all__ = [
    "CITYSCAPES",
    "cityscapes_depth_metadata",
    "load_cityscapes_depth",
    "register_cityscapes_depth",
]

logger = logging.getLogger(__name__)

CITYSCAPES = "cityscapes"


def cityscapes_depth_metadata() -> dict[str, Any]:
    """Metadata of Cityscapes with depth from disparity: Cityscapes-DVPS's classes, colors,
    label divisor and prediction files, with these differences:

    * ``dataset_format`` ``"cityscapes"``; unlabelled pixels (segment id 0 of the panoptic PNG)
      read as ``label_void_id`` 255;
    * DVPQ at k = 1 only (``dvpq_window_sizes`` [1]): images are independent, so this is the
      depth-aware PQ of single frames;
    * ``depth_scale`` is unused: depth comes from disparity and the camera of each image;
    * ``thing_dataset_id_to_contiguous_id`` / ``stuff_dataset_id_to_contiguous_id`` map
      Cityscapes label ids to train ids, as Detectron2's Cityscapes panoptic metadata does, and
      the registration adds ``panoptic_json`` / ``panoptic_root``, so that Detectron2's
      ``COCOPanopticEvaluator`` also scores PQ on it.
    """
    meta = dvps_metadata(CITYSCAPES_DVPS)
    meta.update(dataset_format=CITYSCAPES, label_void_id=255, dvpq_window_sizes=[1])
    meta.update(_label_id_maps())  # Detectron2's: its COCOPanopticEvaluator maps back through them
    return meta


def _label_id_maps() -> dict[str, dict[int, int]]:
    """Detectron2's Cityscapes label id -> contiguous (train) id tables, as its loader wants."""
    things = {c["id"]: c["trainId"] for c in CITYSCAPES_CATEGORIES if c["isthing"]}
    stuff = {c["id"]: c["trainId"] for c in CITYSCAPES_CATEGORIES if not c["isthing"]}
    return {
        "thing_dataset_id_to_contiguous_id": things,
        "stuff_dataset_id_to_contiguous_id": stuff,
    }


def _check_disparity_header(path: str, size: tuple[int, int]) -> None:
    """A 16-bit single-channel PNG of the image's (W, H) ``size``, from its header."""
    try:
        with Image.open(path) as disparity:
            mode, found = disparity.mode, disparity.size
    except (OSError, SyntaxError) as error:
        raise DatasetError(
            f"{path}: not a readable PNG ({error}); expected a disparity map."
        ) from None
    if mode not in ("I;16", "I;16B", "I"):
        raise DatasetError(
            f"{path}: PNG mode {mode}; expected a 16-bit single-channel disparity PNG "
            "(Cityscapes' disparity package)."
        )
    if found != size:
        raise DatasetError(
            f"{path}: {found[0]} x {found[1]} pixels (W x H); expected the image's "
            f"{size[0]} x {size[1]}."
        )


def load_cityscapes_depth(root: str, split: str) -> list[dict[str, Any]]:
    """The records of one split (module docstring), every file checked to exist.

    Raises:
        DatasetError: the split's images or panoptic JSON are missing, or disparity / camera
            files are (the first named, with how many are missing); a disparity PNG that is not
            16-bit or not of the image's size (from the PNG headers); a camera file without a
            positive ``extrinsic.baseline`` / ``intrinsic.fx`` (:class:`CameraError`).
    """
    image_dir = os.path.join(root, "leftImg8bit", split)
    gt_json = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}.json")
    for path, what in ((image_dir, "the images (leftImg8bit)"), (gt_json, "the panoptic JSON")):
        if not os.path.exists(path):
            raise DatasetError(
                f"{path}: missing; expected {what} of Cityscapes {split} (see datasets/README.md:"
                " cityscapesScripts' createTrainIdLabelImgs and createPanopticImgs)."
            )
    gt_dir = os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}")
    records = load_cityscapes_panoptic(image_dir, gt_dir, gt_json, _label_id_maps())
    records.sort(key=lambda r: r["image_id"])
    missing: dict[str, list[str]] = {"disparity": [], "camera": []}
    for index, record in enumerate(records):
        city = os.path.basename(os.path.dirname(record["file_name"]))
        name = record["image_id"]
        record["disparity_file_name"] = os.path.join(
            root, "disparity", split, city, f"{name}_disparity.png"
        )
        record["camera_file_name"] = os.path.join(
            root, "camera", split, city, f"{name}_camera.json"
        )
        for kind, key in (("disparity", "disparity_file_name"), ("camera", "camera_file_name")):
            if not os.path.isfile(record[key]):
                missing[kind].append(record[key])
        record["sequence_id"], record["frame_index"] = index, 0
    for kind, paths in missing.items():
        if paths:
            raise DatasetError(
                f"{paths[0]}: missing, and {len(paths)} of the {len(records)} images of "
                f"Cityscapes {split} in {root} have no {kind} file (unpack Cityscapes' "
                f"{kind} package there; see datasets/README.md)."
            )
    for record in records:
        record["camera"] = read_camera(record["camera_file_name"])
        with Image.open(record["file_name"]) as image:
            record["width"], record["height"] = image.size
        _check_disparity_header(record["disparity_file_name"], image.size)
    logger.info(f"Loaded {len(records)} Cityscapes {split} images with disparity from {root}.")
    return records


def register_cityscapes_depth(name: str, root: str, split: str) -> None:
    """Register Cityscapes with depth from disparity (module docstring) under ``name``."""
    DatasetCatalog.register(name, lambda: load_cityscapes_depth(root, split))
    MetadataCatalog.get(name).set(
        name=name,
        dataset_root=root,
        split=split,
        split_dir=os.path.join(root, "leftImg8bit", split),
        panoptic_json=os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}.json"),
        panoptic_root=os.path.join(root, "gtFine", f"cityscapes_panoptic_{split}"),
        **cityscapes_depth_metadata(),
    )
