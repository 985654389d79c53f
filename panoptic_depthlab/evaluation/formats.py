"""The prediction files of the official ViP-DeepLab DVPS evaluation scripts, and ground truth
read the way those scripts see it.

Prediction files, per frame, in the layout the dataset's metadata declares
(``prediction_files``):

* ``"rgb"`` (Cityscapes-DVPS): one 8-bit RGB PNG, red = class (train id), green = instance id
  (0..255), blue = 0.
* ``"class_instance"`` (SemKITTI-DVPS): a ``*cat.png`` (8-bit class) and a ``*ins.png`` (16-bit
  instance id, 0..65535).
* Depth, both: a 16-bit PNG holding ``round(meters * 256)`` clipped to 0..65535
  (:func:`quantize_depth` gives the meters it stores), in its own directory.

Wide instance ids. Tracked instance ids only grow along a video (track numbers are never
reused, see :mod:`panoptic_depthlab.panoptic_ids`), so a long video outgrows the official
formats. :func:`write_prediction` chooses per frame: the official file wherever the frame's
instance ids fit (always, for the official 6-frame Cityscapes-DVPS sequences), otherwise the
same file name in a wide form that holds instance ids 0..2**32 - 1, told apart by its PNG header:

* ``"rgb"``, wide: a **16-bit** RGB PNG, red = class, green = instance ``& 0xFFFF``, blue =
  instance ``>> 16`` (instance = green + 65536 * blue);
* ``"class_instance"``, wide: the ``*cat.png`` as usual and a **16-bit RGB** ``*ins.png``, red
  = 0, green = instance ``& 0xFFFF``, blue = instance ``>> 16``.

Each frame file describes itself, so one directory may mix both forms; :func:`read_prediction`,
:func:`read_panoptic_prediction` and ``tools/eval_dvpq.py`` read both. The official scripts do
not know the wide form (Pillow reads a 16-bit RGB PNG as 8-bit): use ours for such frames. The
DVPQ evaluation scores instance ids up to 65535 (its segment ids are ``class << 16 |
instance``); a frame with larger ones is reported by name.

:func:`write_prediction` names them after the input image ``<image>`` (e.g.
``000000_000000_munster_000105_000004_leftImg8bit.png``; ``<image_id>`` is that name without
``_leftImg8bit.png``): ``<pred_dir>/<image>``, or ``<pred_dir>/<image_id>_cat.png`` and
``<image_id>_ins.png``; depth ``<depth_dir>/<image>``. The evaluation accepts every name the
official scripts accept (see :mod:`~panoptic_depthlab.evaluation.evaluate_files`).

Classes: predicted class ids are train ids ``0..num_classes - 1``; anything a model marks void
(255, or any id >= ``num_classes``) is written as ``num_classes`` (19), which the official
scripts accept (they fail on 255 and on the label files' void id 32).

Arrays: class maps are ``int32`` (H, W), instance maps ``int32`` (H, W) when read from the official
files and ``int64`` from the wide ones; depth maps are ``float64`` (H, W) in meters, 0 where there
is none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.annotations import read_depth, read_depth_samples, read_labels, read_png
from ..files import write_png_atomic

__all__ = [
    "depth_file_name",
    "frame_id_of",
    "image_id_of",
    "prediction_file_names",
    "quantize_depth",
    "read_depth_prediction",
    "read_ground_truth",
    "read_panoptic_prediction",
    "read_prediction",
    "resize_depth_align_corners",
    "write_prediction",
]

IMAGE_SUFFIX = "_leftImg8bit.png"
_DEPTH_SCALE = 256.0  # depth PNG value per meter, both formats
_UINT16_MAX = np.iinfo(np.uint16).max
_WIDE_MAX = 2**32 - 1  # largest instance id of the wide files: green + 65536 * blue, 16 bits each
RGB = "rgb"  # metadata["prediction_files"] of one RGB PNG per frame; else "class_instance"
_FRAME_ID = re.compile(r"^(\d+_\d+)(?!\d)")


def image_id_of(image_file: str) -> str:
    """The frame's id: the image's base name without ``_leftImg8bit.png``."""
    name = os.path.basename(image_file)
    if not name.endswith(IMAGE_SUFFIX) or len(name) == len(IMAGE_SUFFIX):
        raise ValueError(
            f"{image_file}: the image name does not end with {IMAGE_SUFFIX}; expected a DVPS "
            f"image such as 000000_000000{IMAGE_SUFFIX}."
        )
    return name[: -len(IMAGE_SUFFIX)]


def frame_id_of(name: str) -> str | None:
    """The frame id ``<sequence>_<frame>`` that starts a file name (digits, ``_``, digits, then
    a non-digit or the end), or None; e.g. ``000008_000004`` of ``000008_000004_cat.png``."""
    m = _FRAME_ID.match(name)
    return None if m is None else m[1]


def prediction_file_names(image_file: str, metadata: Mapping[str, Any]) -> list[str]:
    """Base names :func:`write_prediction` gives the panoptic files of one frame, in
    ``pred_dir``: ``[<image>]`` (``"rgb"``) or ``[<image_id>_cat.png, <image_id>_ins.png]``
    (``"class_instance"``). The depth file is :func:`depth_file_name`, in ``depth_dir``."""
    image_id = image_id_of(image_file)
    if metadata["prediction_files"] == RGB:
        return [image_id + IMAGE_SUFFIX]
    return [f"{image_id}_cat.png", f"{image_id}_ins.png"]


def depth_file_name(image_file: str) -> str:
    """Base name of the depth prediction of one frame, in ``depth_dir``: the image's name."""
    return image_id_of(image_file) + IMAGE_SUFFIX


def _depth_to_png(depth_m: np.ndarray, what: str) -> np.ndarray:
    """(H, W) meters -> (H, W) uint16 ``round(meters * 256)`` clipped to 0..65535."""
    depth = np.asarray(depth_m, dtype=np.float64)
    nan = np.isnan(depth)
    if nan.any():
        raise ValueError(f"{what}: depth has {int(nan.sum())} NaN pixels; expected meters >= 0.")
    return np.clip(np.round(depth * _DEPTH_SCALE), 0, _UINT16_MAX).astype(np.uint16)


def quantize_depth(depth_m: np.ndarray) -> np.ndarray:
    """The depth a prediction PNG stores, in meters.

    Args:
        depth_m: (H, W) depth in meters (any float dtype; NaN is rejected).

    Returns:
        (H, W) float64 meters: ``clip(round(depth_m * 256), 0, 65535) / 256``, so evaluating
        in-memory predictions through this equals evaluating the written files.
    """
    return _depth_to_png(depth_m, "quantize_depth").astype(np.float64) / _DEPTH_SCALE


def _check_pair_dirs(pred_dir: str, depth_dir: str | None, metadata: Mapping[str, Any]) -> None:
    if (
        metadata["prediction_files"] == RGB
        and depth_dir is not None
        and os.path.realpath(pred_dir) == os.path.realpath(depth_dir)
    ):
        raise ValueError(
            f"pred_dir and depth_dir are both {pred_dir}; {metadata['dataset_format']} panoptic "
            "and depth predictions share their file names, so they need two different "
            "directories."
        )


def write_prediction(
    pred_dir: str,
    depth_dir: str | None,
    image_file: str,
    metadata: Mapping[str, Any],
    pred_class: np.ndarray,
    pred_instance: np.ndarray,
    depth_m: np.ndarray | None,
) -> list[str]:
    """Write one frame's prediction: the official format where its instance ids fit, else the
    wide one (see the module docstring).

    Args:
        pred_dir: directory of panoptic predictions (created if missing).
        depth_dir: directory of depth predictions (created if missing); None writes no depth.
        image_file: the input image (only its base name is used).
        metadata: the dataset's metadata (``prediction_files``, ``max_prediction_instance``,
            ``num_classes``).
        pred_class: (H, W) integer train ids; 255 or any id >= num_classes is void, written as
            num_classes (19).
        pred_instance: (H, W) integer instance ids, 0..2**32 - 1; 0 for stuff. Ids up to
            ``max_prediction_instance`` (255 for Cityscapes-DVPS, 65535 for SemKITTI-DVPS) give
            the official files, larger ones the wide files.
        depth_m: (H, W) depth in meters, or None (only with ``depth_dir`` None).

    Returns:
        The written paths. Each file is written to a temporary name and renamed.

    Raises:
        ValueError: sizes differ, negative ids, instance ids above 2**32 - 1, NaN depth.
    """
    _check_pair_dirs(pred_dir, depth_dir, metadata)
    num_classes = metadata["num_classes"]
    name = os.path.basename(image_file)
    classes = np.asarray(pred_class)
    instances = np.asarray(pred_instance)
    arrays = {"pred_class": classes, "pred_instance": instances}
    if depth_dir is not None:
        if depth_m is None:
            raise ValueError(f"{name}: depth_dir is {depth_dir} but depth_m is None.")
        arrays["depth_m"] = np.asarray(depth_m)
    for key, array in arrays.items():
        if array.ndim != 2 or array.shape != classes.shape:
            raise ValueError(
                f"{name}: {key} has shape {array.shape}; expected (H, W) = {classes.shape[:2]}, "
                "the same 2-D size for pred_class, pred_instance and depth_m."
            )
        if key != "depth_m" and not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"{name}: {key} has dtype {array.dtype}; expected integers.")
    if classes.size and int(classes.min()) < 0:
        raise ValueError(f"{name}: pred_class holds {int(classes.min())}; expected ids >= 0.")
    low, high = (int(instances.min()), int(instances.max())) if instances.size else (0, 0)
    if low < 0 or high > _WIDE_MAX:
        raise ValueError(
            f"{name}: pred_instance holds {low if low < 0 else high}; the "
            f"{metadata['dataset_format']} prediction files store instance ids 0..{_WIDE_MAX} "
            "(2**32 - 1). Renumber the instances of each sequence consistently (e.g. in order "
            "of appearance) before writing."
        )
    wide = high > metadata["max_prediction_instance"]
    classes = np.where(classes >= num_classes, num_classes, classes)
    depth_path = None if depth_dir is None else os.path.join(depth_dir, depth_file_name(name))
    depth_png = None if depth_path is None else _depth_to_png(arrays["depth_m"], depth_path)
    written = []
    os.makedirs(pred_dir, exist_ok=True)
    if metadata["prediction_files"] == RGB:
        (pan_name,) = prediction_file_names(image_file, metadata)
        if wide:
            bgr = _wide_instance_png(instances, classes)
        else:
            bgr = np.stack([np.zeros_like(classes), instances, classes], axis=-1).astype(np.uint8)
        written.append(os.path.join(pred_dir, pan_name))
        write_png_atomic(written[-1], bgr)
    else:
        cat_name, ins_name = prediction_file_names(image_file, metadata)
        written.append(os.path.join(pred_dir, cat_name))
        write_png_atomic(written[-1], classes.astype(np.uint8))
        written.append(os.path.join(pred_dir, ins_name))
        ins = _wide_instance_png(instances, None) if wide else instances.astype(np.uint16)
        write_png_atomic(written[-1], ins)
    if depth_path is not None:
        os.makedirs(depth_dir, exist_ok=True)
        write_png_atomic(depth_path, depth_png)
        written.append(depth_path)
    return written


def _wide_instance_png(instances: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """(H, W, 3) uint16 BGR of a wide file: blue = instance >> 16, green = instance & 0xFFFF,
    red = class (``"rgb"``) or 0 (``classes`` None: ``*ins.png``)."""
    ids = instances.astype(np.int64)
    red = np.zeros_like(ids) if classes is None else classes
    return np.stack([ids >> 16, ids & 0xFFFF, red], axis=-1).astype(np.uint16)


def _wide_instances(bgr: np.ndarray) -> np.ndarray:
    """(H, W) int64 instance ids of a wide file's (H, W, 3) uint16 BGR: green + 65536 * blue."""
    instances = bgr[..., 0].astype(np.int64) << 16
    instances |= bgr[..., 1]
    return instances


def _read_single_channel(path: str, what: str, dtypes: tuple[type, ...]) -> np.ndarray:
    array = read_png(path, what)
    if array.ndim != 2 or array.dtype not in dtypes:
        channels = 1 if array.ndim == 2 else array.shape[2]
        raise ValueError(
            f"{path}: a {array.dtype} PNG with {channels} channel(s); expected {what} "
            f"(single channel, {' or '.join(np.dtype(d).name for d in dtypes)})."
        )
    return array


def _check_same_size(path: str, array: np.ndarray, ref_path: str, ref_shape: tuple) -> None:
    if array.shape[:2] != tuple(ref_shape[:2]):
        raise ValueError(
            f"{path}: size (H, W) = {array.shape[:2]} differs from {ref_path}, (H, W) = "
            f"{tuple(ref_shape[:2])}; the files of one frame must have one size."
        )


def read_panoptic_prediction(
    paths: Sequence[str], metadata: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Read one frame's panoptic prediction files.

    Args:
        paths: ``[rgb]`` (``"rgb"`` layout) or ``[cat, ins]`` (``"class_instance"``).
        metadata: the dataset's metadata (``prediction_files``, ``num_classes``).

    Returns:
        ``(pred_class, pred_instance)``: int32 (H, W) class ids in 0..num_classes
        (num_classes = void) and (H, W) instance ids: int32 from the official files, int64 from
        the wide ones (module docstring).

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: unreadable file, wrong channels or bit depth, sizes that differ (class and
            instance files), class ids above num_classes, a wide ``*ins.png`` with a red
            channel other than 0. Messages name the file.
    """
    num_classes = metadata["num_classes"]
    class_path = paths[0]
    if metadata["prediction_files"] == RGB:
        what = (
            "an 8-bit RGB panoptic prediction (red = class, green = instance) or a 16-bit "
            "one (red = class, green + 65536 * blue = instance)"
        )
        bgr = read_png(class_path, what)
        if bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype not in (np.uint8, np.uint16):
            channels = 1 if bgr.ndim == 2 else bgr.shape[2]
            raise ValueError(
                f"{class_path}: a {bgr.dtype} PNG with {channels} channel(s); expected {what}."
            )
        classes = bgr[..., 2].astype(np.int32)
        if bgr.dtype == np.uint8:  # the official file
            instances = bgr[..., 1].astype(np.int32)
        else:
            instances = _wide_instances(bgr)
    else:
        classes = _read_single_channel(
            class_path, "an 8-bit class prediction", (np.uint8, np.uint16)
        ).astype(np.int32)
        instances = _read_instance_file(paths[1])
        _check_same_size(paths[1], instances, class_path, classes.shape)
    high = int(classes.max()) if classes.size else 0
    if high > num_classes:
        count = int((classes > num_classes).sum())
        raise ValueError(
            f"{class_path}: predicted class id {high} ({count} pixels above {num_classes}); "
            f"expected train ids 0..{num_classes - 1} or {num_classes} for void."
        )
    return classes, instances


def _read_instance_file(path: str) -> np.ndarray:
    """A ``*ins.png``: int32 (H, W) ids of the official single-channel 16-bit (or 8-bit) file,
    int64 (H, W) ids of the wide 16-bit RGB one (red 0, green + 65536 * blue)."""
    what = (
        "a 16-bit instance prediction (single channel, or RGB with red = 0 and instance = "
        "green + 65536 * blue)"
    )
    array = read_png(path, what)
    if array.ndim == 2 and array.dtype in (np.uint16, np.uint8):  # the official file
        return array.astype(np.int32)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint16:
        channels = 1 if array.ndim == 2 else array.shape[2]
        raise ValueError(
            f"{path}: a {array.dtype} PNG with {channels} channel(s); expected {what}."
        )
    red = array[..., 2]
    if red.any():
        raise ValueError(
            f"{path}: a 16-bit RGB instance prediction whose red channel holds "
            f"{int(red.max())}; expected red = 0 (instance = green + 65536 * blue)."
        )
    return _wide_instances(array)


def read_depth_prediction(path: str) -> np.ndarray:
    """Read one frame's depth prediction: float64 (H, W) meters (16-bit PNG / 256).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: unreadable file, or not a single-channel 16-bit PNG.
    """
    raw = _read_single_channel(path, "a 16-bit depth prediction", (np.uint16,))
    return np.divide(raw, _DEPTH_SCALE, dtype=np.float64)  # one pass, no float copy first


def resize_depth_align_corners(depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a depth map as the official SemKITTI-DVPS DSTQ script does: TensorFlow 1's
    ``resize_bilinear(..., align_corners=True)``, in float32.

    Source rows ``y * (in_h - 1) / (out_h - 1)`` (the scale in float32), ``lerp = src -
    floor(src)``, ``top = tl + (tr - tl) * x_lerp``, ``out = top + (bottom - top) * y_lerp``,
    each step rounded to float32. Meters and PNG units give the same result up to the factor
    256 (a power of two).

    Args:
        depth: (h, w) depth.
        height, width: the output size.

    Returns:
        (height, width) float32.
    """
    image = np.asarray(depth, dtype=np.float32)

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0)
        src = np.arange(n_out, dtype=np.float32) * scale
        low = np.floor(src).astype(np.int64)
        high = np.minimum(np.ceil(src).astype(np.int64), n_in - 1)
        return low, high, (src - low.astype(np.float32)).astype(np.float32)

    y0, y1, y_lerp = axis(image.shape[0], height)
    x0, x1, x_lerp = axis(image.shape[1], width)
    top_left, top_right = image[y0][:, x0], image[y0][:, x1]
    bottom_left, bottom_right = image[y1][:, x0], image[y1][:, x1]
    top = top_left + (top_right - top_left) * x_lerp
    bottom = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top + (bottom - top) * y_lerp[:, None]


def read_prediction(
    pred_dir: str, depth_dir: str | None, image_file: str, metadata: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read the files :func:`write_prediction` wrote for one frame (its inverse).

    Args:
        pred_dir: directory of panoptic predictions.
        depth_dir: directory of depth predictions; None reads no depth.
        image_file: the input image (only its base name is used).
        metadata: the dataset's metadata.

    Returns:
        ``(pred_class, pred_instance, depth_m)``: int32 (H, W) class ids in 0..num_classes
        (num_classes = void), (H, W) instance ids (int32 from the official files, int64 from
        the wide ones), float64 (H, W) meters or None.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: unreadable file, wrong channels or bit depth, sizes that differ, class ids
            above num_classes. Messages name the file.
    """
    _check_pair_dirs(pred_dir, depth_dir, metadata)
    paths = [os.path.join(pred_dir, n) for n in prediction_file_names(image_file, metadata)]
    classes, instances = read_panoptic_prediction(paths, metadata)
    depth = None
    if depth_dir is not None:
        depth_path = os.path.join(depth_dir, depth_file_name(image_file))
        depth = read_depth_prediction(depth_path)
        _check_same_size(depth_path, depth, paths[0], classes.shape)
    return classes, instances, depth


def read_ground_truth(
    record: Mapping[str, Any], metadata: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The raw ground truth of one frame record, as the official scripts compare it.

    Unlike :func:`panoptic_depthlab.data.annotations.read_panoptic`, void pixels keep their
    instance id: the label files' void class (Cityscapes-DVPS 32, SemKITTI-DVPS 255) becomes
    ``ignore_label`` (255) and the instance is left as stored.

    Args:
        record: a frame record of :func:`panoptic_depthlab.data.datasets.load_dvps_split`.
        metadata: the dataset's metadata (``dvps_metadata(fmt)`` or the MetadataCatalog entry).

    Returns:
        ``(gt_class, gt_instance, gt_depth)``: int32 (H, W) train ids or ``ignore_label``,
        int32 (H, W) instance ids, float64 (H, W) meters with 0 where there is no depth (every
        pixel for a dataset without depth, metadata ``has_depth`` False).

    Raises:
        FileNotFoundError, ValueError: missing or unreadable files, class ids that are neither
            train ids nor the void id, sizes that differ from each other or from the record's.
    """
    size = (record["height"], record["width"]) if "height" in record else None
    classes, instances = read_labels(record, metadata, size, void_as=metadata["ignore_label"])
    if not metadata.get("has_depth", True):  # no depth ground truth: no pixel has depth
        return classes, instances, np.zeros(classes.shape, np.float64)
    if "depth_file_name" not in record:  # depth from disparity (Cityscapes)
        return classes, instances, read_depth(record, metadata, classes.shape).astype(np.float64)
    depth = np.divide(
        read_depth_samples(record, classes.shape), metadata["depth_scale"], dtype=np.float64
    )
    return classes, instances, depth
