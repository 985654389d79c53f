"""Training augmentation for DVPS frame pairs, as Detectron2 augmentations and transforms.

One sample of :func:`build_dvps_augmentations` is drawn on frame t and replayed, as the returned
``TransformList``, on frame t+1, on both panoptic maps and on the depth map. Besides images
(``apply_image``) and label maps (``apply_segmentation``), every transform used here handles
depth maps (``apply_depth``, float32 meters, 0 = no depth):

* resizing by ``s`` resamples depth by nearest neighbour and divides it by ``s``: an object
  that looks ``s`` times larger is ``s`` times closer;
* padding fills depth with 0 (no depth), images with the mean pixel, labels with ignore;
* cropping and flipping move depth like any label map.
"""

from __future__ import annotations

import cv2
import numpy as np
from detectron2.config import CfgNode
from detectron2.data import transforms as T
from fvcore.transforms.transform import CropTransform, HFlipTransform, PadTransform

__all__ = [
    "DepthResizeTransform",
    "MeanPadTransform",
    "RandomPadCrop",
    "RandomScaleStep",
    "build_dvps_augmentations",
]


class DepthResizeTransform(T.ResizeTransform):
    """Resize images bilinearly and label and depth maps by nearest neighbour (OpenCV).

    Depth values are divided by the vertical magnification ``new_h / h``.
    """

    def _resize(self, array: np.ndarray, flag: int) -> np.ndarray:
        assert array.shape[:2] == (self.h, self.w), (array.shape, self.h, self.w)
        out = cv2.resize(array, (self.new_w, self.new_h), interpolation=flag)
        return out.reshape(out.shape[:2] + array.shape[2:])

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return self._resize(img, cv2.INTER_LINEAR)

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self._resize(segmentation, cv2.INTER_NEAREST)

    def apply_depth(self, depth: np.ndarray) -> np.ndarray:
        resized = self.apply_segmentation(depth)
        return resized / np.float32(self.new_h / self.h)


class MeanPadTransform(PadTransform):
    """Pad an image with a per-channel value (the mean pixel), labels with ``seg_pad_value``."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        out = np.empty((h + self.y0 + self.y1, w + self.x0 + self.x1) + img.shape[2:], img.dtype)
        out[...] = np.asarray(self.pad_value, dtype=np.float64).round().astype(img.dtype)
        out[self.y0 : self.y0 + h, self.x0 : self.x0 + w] = img
        return out


def _pad_depth(transform: PadTransform, depth: np.ndarray) -> np.ndarray:
    pad = ((transform.y0, transform.y1), (transform.x0, transform.x1))
    return np.pad(depth, pad, mode="constant", constant_values=0)


PadTransform.register_type("depth", _pad_depth)
CropTransform.register_type("depth", lambda t, depth: t.apply_image(depth))
HFlipTransform.register_type("depth", lambda t, depth: t.apply_image(depth))


class RandomScaleStep(T.Augmentation):
    """Resize by a factor drawn uniformly from ``min_scale, min_scale + step, ..., max_scale``."""

    def __init__(self, min_scale: float, max_scale: float, step: float):
        super().__init__()
        if not 0 < min_scale <= max_scale or step <= 0:
            raise ValueError(
                f"INPUT.MIN_SCALE={min_scale}, INPUT.MAX_SCALE={max_scale}, "
                f"INPUT.SCALE_STEP={step}: expected 0 < MIN_SCALE <= MAX_SCALE and STEP > 0."
            )
        count = int(round((max_scale - min_scale) / step)) + 1
        self.scales = np.round(min_scale + step * np.arange(count), 6)

    def get_transform(self, image: np.ndarray) -> DepthResizeTransform:
        h, w = image.shape[:2]
        scale = float(self.scales[np.random.randint(len(self.scales))])
        new_h, new_w = max(int(round(h * scale)), 1), max(int(round(w * scale)), 1)
        return DepthResizeTransform(h, w, new_h, new_w)


class RandomPadCrop(T.Augmentation):
    """Pad to at least the crop size (bottom and right), then crop a random window of it.

    Args:
        crop_size: (height, width) in pixels.
        pad_value: per-channel image padding (the mean pixel, in the input format's order).
        seg_pad_value: label-map padding (the ignore label, panoptic-encoded).
    """

    def __init__(self, crop_size: tuple[int, int], pad_value: list[float], seg_pad_value: int):
        super().__init__()
        self.crop_size = tuple(crop_size)
        self.pad_value = tuple(pad_value)
        self.seg_pad_value = seg_pad_value

    def get_transform(self, image: np.ndarray) -> T.Transform:
        h, w = image.shape[:2]
        ch, cw = self.crop_size
        pad_h, pad_w = max(ch - h, 0), max(cw - w, 0)
        y0 = np.random.randint(h + pad_h - ch + 1)
        x0 = np.random.randint(w + pad_w - cw + 1)
        crop = CropTransform(x0, y0, cw, ch)
        if pad_h == 0 and pad_w == 0:
            return crop
        pad = MeanPadTransform(0, 0, pad_w, pad_h, w, h, self.pad_value, self.seg_pad_value)
        return T.TransformList([pad, crop])


def build_dvps_augmentations(cfg: CfgNode, seg_pad_value: int) -> list[T.Augmentation]:
    """The training augmentations: random scale, pad + random crop, horizontal flip.

    Reads ``INPUT.MIN_SCALE``, ``INPUT.MAX_SCALE``, ``INPUT.SCALE_STEP``, ``INPUT.CROP.ENABLED``,
    ``INPUT.CROP.SIZE`` (H, W), ``INPUT.RANDOM_FLIP`` ("horizontal" or "none") and
    ``MODEL.PIXEL_MEAN`` (the image padding).
    """
    augs: list[T.Augmentation] = [
        RandomScaleStep(cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, cfg.INPUT.SCALE_STEP)
    ]
    if cfg.INPUT.CROP.ENABLED:
        augs.append(RandomPadCrop(cfg.INPUT.CROP.SIZE, cfg.MODEL.PIXEL_MEAN, seg_pad_value))
    if cfg.INPUT.RANDOM_FLIP == "horizontal":
        augs.append(T.RandomFlip(prob=0.5, horizontal=True, vertical=False))
    elif cfg.INPUT.RANDOM_FLIP != "none":
        raise ValueError(
            f"INPUT.RANDOM_FLIP={cfg.INPUT.RANDOM_FLIP!r}: expected 'horizontal' or 'none' "
            "(a vertical flip would put the sky under the road)."
        )
    return augs
