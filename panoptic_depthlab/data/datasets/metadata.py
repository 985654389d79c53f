"""Class lists, colors and protocol constants of the DVPS datasets.

Everything here reaches the rest of the code through Detectron2's MetadataCatalog
(``MetadataCatalog.get(name)``); no other module hard-codes these values.

Both datasets use 19 contiguous train ids (0..18), so a dataset id equals its contiguous id.
Label files mark unlabelled pixels with ``label_void_id`` (Cityscapes-DVPS: class 32,
SemKITTI-DVPS: 255); loaders map them to ``ignore_label`` (255).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES

__all__ = [
    "CUSTOM_METADATA_KEYS",
    "DVPS_FORMATS",
    "check_dvps_format",
    "custom_metadata",
    "dvps_metadata",
    "video_panoptic_metadata",
]

CITYSCAPES_DVPS = "cityscapes_dvps"
SEMKITTI_DVPS = "semkitti_dvps"
DVPS_FORMATS = (CITYSCAPES_DVPS, SEMKITTI_DVPS)

# SemKITTI-DVPS train ids 0..18 with the RGB colors of the SemanticKITTI color map.
_SEMKITTI_CATEGORIES = [
    ("car", (100, 150, 245)),
    ("bicycle", (100, 230, 245)),
    ("motorcycle", (30, 60, 150)),
    ("truck", (80, 30, 180)),
    ("other-vehicle", (0, 0, 255)),
    ("person", (255, 30, 30)),
    ("bicyclist", (255, 40, 200)),
    ("motorcyclist", (150, 30, 90)),
    ("road", (255, 0, 255)),
    ("parking", (255, 150, 255)),
    ("sidewalk", (75, 0, 75)),
    ("other-ground", (175, 0, 75)),
    ("building", (255, 200, 0)),
    ("fence", (255, 120, 50)),
    ("vegetation", (0, 175, 0)),
    ("trunk", (135, 60, 0)),
    ("terrain", (150, 240, 80)),
    ("pole", (255, 240, 150)),
    ("traffic-sign", (255, 0, 0)),
]


def check_dvps_format(dataset_format: str) -> None:
    """Raise ``ValueError`` naming the known formats unless ``dataset_format`` is one of them."""
    if dataset_format not in DVPS_FORMATS:
        raise ValueError(
            f"Unknown DVPS dataset format {dataset_format!r}; expected one of {DVPS_FORMATS}."
        )


def _categories(dataset_format: str) -> tuple[list[str], list[tuple[int, int, int]], list[int]]:
    """Return (class names, RGB colors, thing train ids) of a format, in train-id order."""
    if dataset_format == CITYSCAPES_DVPS:
        cats = sorted(CITYSCAPES_CATEGORIES, key=lambda c: c["trainId"])
        names = [c["name"] for c in cats]
        colors = [tuple(c["color"]) for c in cats]
        thing_ids = [c["trainId"] for c in cats if c["isthing"]]
        return names, colors, thing_ids
    names = [n for n, _ in _SEMKITTI_CATEGORIES]
    colors = [c for _, c in _SEMKITTI_CATEGORIES]
    return names, colors, list(range(8))


def dvps_metadata(dataset_format: str) -> dict[str, Any]:
    """Metadata of one DVPS format, in the key names Detectron2's Panoptic-DeepLab reads.

    ``thing_classes`` / ``thing_colors`` and ``stuff_classes`` / ``stuff_colors`` each hold all
    19 classes, indexed by train id (= contiguous id = the ``category_id`` of a segment), as in
    Detectron2's Cityscapes panoptic metadata, so that ``Visualizer.draw_panoptic_seg`` draws
    our outputs; the thing classes are ``thing_ids`` (= the keys of
    ``thing_dataset_id_to_contiguous_id``).

    Keys beyond Detectron2's: ``dataset_format``, ``num_classes``, ``thing_ids``, ``stuff_ids``,
    ``label_void_id`` (raw class of unlabelled pixels in the label files), ``label_divisor``
    (panoptic id = class * label_divisor + instance), ``has_depth`` (the dataset has depth
    ground truth; without it the depth loss and the depth metrics are off and only lambda = 0,
    VPQ, is scored), ``depth_scale`` (depth PNG value per meter),
    ``max_depth`` (meters), and the evaluation protocol of the official ViP-DeepLab scripts:

    * ``dvpq_window_sizes`` (k, in frames) and ``dvpq_depth_thresholds`` (lambda, relative depth
      error);
    * ``dvpq_absent_class_is_zero``: a class without TP, FP or FN scores 0 and stays in the means
      (SemKITTI-DVPS's script adds 1e-10 to its denominators) instead of being left out
      (Cityscapes-DVPS's prints nan for it);
    * ``dvpq_windows_cross_sequences``: windows slide over all frames sorted by name
      (SemKITTI-DVPS's script) instead of within each sequence (Cityscapes-DVPS's);
    * ``evaluate_stq``: STQ/DSTQ are part of the protocol (SemKITTI-DVPS, ``eval_dstq.py``);
    * ``prediction_files``: ``"rgb"`` (one 8-bit RGB PNG per frame, red = class, green =
      instance: Cityscapes-DVPS) or ``"class_instance"`` (``*cat.png`` 8-bit class and
      ``*ins.png`` 16-bit instance: SemKITTI-DVPS), and ``max_prediction_instance`` (255 or
      65535), the largest instance id those files hold;
    * ``resize_depth_prediction``: a depth prediction of another size than the ground truth is
      resized to it (bilinear, corners aligned, as ``eval_dstq.py`` does) instead of rejected.
    """
    check_dvps_format(dataset_format)
    names, colors, thing_ids = _categories(dataset_format)
    is_cityscapes = dataset_format == CITYSCAPES_DVPS
    return {
        "dataset_format": dataset_format,
        "evaluator_type": "dvps",
        "num_classes": len(names),
        # Detectron2's Cityscapes panoptic convention (data/datasets/cityscapes_panoptic.py):
        # thing_* and stuff_* both list every class, indexed by contiguous id, because its
        # Visualizer looks up a segment's category_id in thing_classes / thing_colors for things
        # and in stuff_classes / stuff_colors for stuff. Which classes are things is said by
        # thing_dataset_id_to_contiguous_id (things only) and thing_ids.
        "stuff_classes": names,
        "stuff_colors": colors,
        "thing_classes": list(names),
        "thing_colors": list(colors),
        "thing_ids": thing_ids,
        "stuff_ids": [i for i in range(len(names)) if i not in thing_ids],
        "thing_dataset_id_to_contiguous_id": {i: i for i in thing_ids},
        # every class: the semantic head predicts all of them (Detectron2's SemSegEvaluator
        # maps each predicted class back through this dict)
        "stuff_dataset_id_to_contiguous_id": {i: i for i in range(len(names))},
        "ignore_label": 255,
        "label_void_id": 32 if is_cityscapes else 255,
        "label_divisor": 1000 if is_cityscapes else 65536,
        "has_depth": True,
        "depth_scale": 256.0,
        "max_depth": 88.0,
        "dvpq_window_sizes": [1, 2, 3, 4] if is_cityscapes else [1, 5, 10, 20],
        "dvpq_depth_thresholds": [0.5, 0.25, 0.1],
        "dvpq_absent_class_is_zero": not is_cityscapes,
        "dvpq_windows_cross_sequences": not is_cityscapes,
        "evaluate_stq": not is_cityscapes,
        "prediction_files": "rgb" if is_cityscapes else "class_instance",
        "max_prediction_instance": 255 if is_cityscapes else 65535,
        "resize_depth_prediction": not is_cityscapes,
        # the camera's horizontal focal length / image width, for the tracker's 3-D positions
        # (Cityscapes: fx 2262.52 at 2048 px; KITTI odometry: 718.856 at 1242 px)
        "focal_ratio": 2262.52 / 2048 if is_cityscapes else 718.856 / 1242,
    }


def video_panoptic_metadata(dataset_format: str, evaluate_stq: bool) -> dict[str, Any]:
    """Metadata of a video panoptic dataset with Cityscapes' 19 classes and no depth
    (KITTI-STEP, Cityscapes-VPS): :func:`dvps_metadata` of Cityscapes-DVPS with
    ``dataset_format``, ``label_void_id`` 255, ``label_divisor`` 1000, ``has_depth`` False and
    ``dvpq_depth_thresholds`` [] (VPQ, lambda = 0, only), ``dvpq_window_sizes`` [1, 2, 3, 4]
    inside each sequence with a class without segments left out of the means (Cityscapes-DVPS's
    rules), ``evaluate_stq`` as given, and no ``focal_ratio`` (no depth to place tracks in 3-D).
    """
    meta = dvps_metadata(CITYSCAPES_DVPS)
    del meta["focal_ratio"]
    meta.update(
        dataset_format=dataset_format,
        label_void_id=255,
        label_divisor=1000,
        has_depth=False,
        dvpq_window_sizes=[1, 2, 3, 4],
        dvpq_depth_thresholds=[],
        dvpq_absent_class_is_zero=False,
        dvpq_windows_cross_sequences=False,
        evaluate_stq=evaluate_stq,
    )
    return meta


# What a user's own dataset may declare (register_dvps_dataset(..., metadata=...)): its classes
# and the protocol values that depend on them; everything else comes from its file layout.
CUSTOM_METADATA_KEYS = (
    "classes",
    "colors",
    "thing_ids",
    "label_void_id",
    "label_divisor",
    "depth_scale",
    "max_depth",
    "dvpq_window_sizes",
    "dvpq_depth_thresholds",
    "focal_ratio",
)


def custom_metadata(dataset_format: str, declared: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata of a user's dataset in the file layout ``dataset_format``, with its own
    classes: :func:`dvps_metadata` of the layout with the declared values in place.

    Args:
        dataset_format: the file layout, ``cityscapes_dvps`` or ``semkitti_dvps``.
        declared: ``classes`` (names, by train id 0..C-1), ``colors`` (one RGB triple per
            class) and ``thing_ids`` (train ids of the classes with instances) are required;
            ``label_void_id`` (class id of unlabelled pixels in the label files, >= C),
            ``label_divisor``, ``depth_scale``, ``max_depth``, ``dvpq_window_sizes`` and
            ``dvpq_depth_thresholds`` are optional (default: the layout's), and so is
            ``focal_ratio`` (the camera's focal length / image width, for the tracker; default:
            :data:`~panoptic_depthlab.runtime.track_memory.DEFAULT_FOCAL_RATIO`, not the
            layout's camera).

    Raises:
        ValueError: an unknown or missing key, colors that do not match the classes, thing ids
            that are not among the classes, a void id that is a class, a label divisor that
            does not hold the void id's panoptic ids.
    """
    unknown = sorted(set(declared) - set(CUSTOM_METADATA_KEYS))
    missing = [key for key in ("classes", "colors", "thing_ids") if key not in declared]
    if unknown or missing:
        raise ValueError(
            f"dataset metadata: unknown keys {unknown} / missing keys {missing}; expected "
            f"classes, colors, thing_ids and optionally {list(CUSTOM_METADATA_KEYS[3:])}."
        )
    names = [str(name) for name in declared["classes"]]
    colors = [tuple(int(v) for v in color) for color in declared["colors"]]
    thing_ids = sorted(int(i) for i in declared["thing_ids"])
    if len(colors) != len(names) or any(
        len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors
    ):
        raise ValueError(
            f"dataset metadata: {len(colors)} colors for {len(names)} classes; expected one RGB "
            "triple (0..255) per class."
        )
    outside = [i for i in thing_ids if not 0 <= i < len(names)]
    if outside or len(set(thing_ids)) != len(thing_ids):
        raise ValueError(
            f"dataset metadata: thing_ids {declared['thing_ids']} are not distinct ids of its "
            f"classes 0..{len(names) - 1} ({', '.join(names)})."
        )
    meta = dvps_metadata(dataset_format)
    del meta["focal_ratio"]  # another camera than the layout's dataset
    meta.update({k: declared[k] for k in CUSTOM_METADATA_KEYS[3:] if k in declared})
    if meta["label_void_id"] < len(names):
        raise ValueError(
            f"dataset metadata: label_void_id {meta['label_void_id']} is a class id (classes "
            f"0..{len(names) - 1}); expected the id of unlabelled pixels, >= {len(names)}."
        )
    if dataset_format == CITYSCAPES_DVPS and meta["label_void_id"] * meta["label_divisor"] > 65535:
        raise ValueError(
            f"dataset metadata: label_void_id {meta['label_void_id']} x label_divisor "
            f"{meta['label_divisor']} does not fit the 16-bit panoptic labels of the "
            "cityscapes_dvps layout (at most 65535); use a smaller void id (Cityscapes-DVPS: 32)."
        )
    meta.update(
        num_classes=len(names),
        stuff_classes=names,
        stuff_colors=colors,
        thing_classes=list(names),
        thing_colors=list(colors),
        thing_ids=thing_ids,
        stuff_ids=[i for i in range(len(names)) if i not in thing_ids],
        thing_dataset_id_to_contiguous_id={i: i for i in thing_ids},
        stuff_dataset_id_to_contiguous_id={i: i for i in range(len(names))},
    )
    return meta
