"""Pictures of one frame's depth-aware panoptic prediction, for demos and for looking at results.

Everything here works on numpy arrays and draws with OpenCV; nothing needs torch. The inputs:

* ``image``: (H, W, 3) uint8 RGB.
* ``panoptic``: (H, W) integer panoptic ids ``class * label_divisor + instance`` (instance 0 for
  stuff, >= 1 for things); -1 is void. Either divisor of :mod:`panoptic_depthlab.panoptic_ids`
  (single-frame or tracked outputs): nothing here splits an id, a thing's color comes from its
  id and its class from ``category_id``.
* ``segments_info``: one dict per panoptic id other than -1, with ``id``, ``category_id``,
  ``isthing``, ``area``, ``depth_mean`` and ``depth_median`` (meters, NaN when the segment has no
  valid depth) and, for things, ``center`` = [y, x] in pixels (the output of
  :func:`panoptic_depthlab.runtime.post_processing.panoptic_depth_inference`).
* ``depth``: (H, W) float meters; pixels with depth <= 0 or non-finite have no depth.
* ``metadata``: a mapping with ``stuff_classes`` (name of every class, by class id),
  ``stuff_colors`` (RGB of every class) and ``max_depth`` (meters), e.g.
  :func:`panoptic_depthlab.data.datasets.metadata.dvps_metadata`. A Detectron2 ``Metadata``
  (``MetadataCatalog.get(name)``) is accepted as well: it is read through its ``as_dict()``.
  Whether a segment is a thing comes from its ``isthing``, not from the metadata.

Every function returns (rows, columns, 3) uint8 RGB; write it with ``cv2.imwrite(path,
picture[..., ::-1])``.

Colors: depth is red (warm) near and blue (cold) far in both depth pictures, over
[0, max_depth] meters; depths beyond ``max_depth`` take the far color.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

__all__ = [
    "depth_colormap",
    "depth_scale_bar",
    "instance_color",
    "panoptic_depth_view",
    "panoptic_overlay",
    "segment_boundaries",
    "UNTRAINED_OUTPUTS",
    "visualize_frame",
]

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_WHITE = (255, 255, 255)
_OUTLINE = (0, 0, 0)  # dark outline around label text
_BACKGROUND = (0, 0, 0)  # scale bar, titles and panel padding
_NO_DEPTH_GRAY = (64, 64, 64)  # panoptic depth view: void pixels and pixels without depth
_OVERLAY_ALPHA = 0.55  # weight of the segment color when blended over the image
_TICKS = 5  # scale bar tick labels: 0, max/4, ..., max
# Turbo levels used: the far end stops at 24 (a clear blue), as turbo's darker blues below it come
# close to the black of pixels without depth; the near end is 255 (dark red).
_TURBO_FAR, _TURBO_NEAR = 24, 255
# Instance color jitter: per channel, (instance * multiplier) mod 1 spreads consecutive ids apart
# (the multipliers are the fractional parts of the golden ratio, sqrt(2) and sqrt(3)).
_JITTER_MULTIPLIERS = np.array([0.6180339887, 0.4142135624, 0.7320508076])
_JITTER_RANGE = 70  # largest change of one channel, in 8-bit levels
_TITLES = ("input", "panoptic", "depth (m)", "panoptic depth")
# Outputs a model can leave untrained (a branch not loaded from its checkpoint), and per panel of
# visualize_frame the outputs it draws: its title then starts with "UNTRAINED" on a red strip.
UNTRAINED_OUTPUTS = ("panoptic", "depth", "tracking")
_PANEL_OUTPUTS = ((), ("panoptic", "tracking"), ("depth",), ("depth", "panoptic"))
_UNTRAINED_BACKGROUND = (200, 0, 0)  # title strip of a panel showing an untrained output


def _as_mapping(metadata: Any) -> Mapping[str, Any]:
    """A Detectron2 ``Metadata`` as a dict; a mapping as it is."""
    return metadata.as_dict() if hasattr(metadata, "as_dict") else metadata


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image has shape {image.shape} and dtype {image.dtype}; expected (H, W, 3) uint8 RGB."
        )


def _check_size(name: str, array: np.ndarray, size: tuple[int, int]) -> None:
    if array.shape[:2] != size:
        raise ValueError(
            f"{name} has shape {array.shape}; expected (H, W) = {size}, the image's size."
        )


def _font_scale(height: int) -> float:
    """OpenCV font scale for text on a picture ``height`` pixels high.

    ``max(0.35, height / 800)``: grows with the height (scale 1, about 22-pixel capitals, at 800
    rows; 1.28 at 1024) and stays at 0.35 (about 8-pixel capitals, still legible with the outline)
    on small pictures such as 64 x 128.
    """
    return max(0.35, height / 800)


def _thickness(scale: float) -> int:
    """Stroke width in pixels of text drawn at ``scale``."""
    return max(1, round(2 * scale))


def _put_text(
    canvas: np.ndarray,
    text: str,
    origin: tuple[int, int],
    scale: float,
    outline: bool,
) -> None:
    """Draw white ``text`` on ``canvas`` (in place) with its baseline's left end at ``origin``
    (x, y) in pixels; ``outline`` first draws it thicker in black so it reads on any color."""
    thickness = _thickness(scale)
    if outline:
        cv2.putText(canvas, text, origin, _FONT, scale, _OUTLINE, thickness + 2, cv2.LINE_AA)
    cv2.putText(canvas, text, origin, _FONT, scale, _WHITE, thickness, cv2.LINE_AA)


def _text_size(text: str, scale: float, outline: bool) -> tuple[int, int, int]:
    """(width, height above the baseline, depth below it) of drawn ``text``, pixels."""
    thickness = _thickness(scale) + (2 if outline else 0)
    (width, height), baseline = cv2.getTextSize(text, _FONT, scale, thickness)
    return width, height, baseline


def segment_boundaries(panoptic: np.ndarray) -> np.ndarray:
    """Pixels on a segment boundary.

    Args:
        panoptic: (H, W) integer panoptic ids (void, -1, counts as a segment of its own).

    Returns:
        (H, W) bool: True where a pixel's id differs from that of at least one of its 4
        neighbours (up, down, left, right), so each boundary is two pixels wide, one on each side.
        The image border is no boundary.
    """
    boundary = np.zeros(panoptic.shape, dtype=bool)
    vertical = panoptic[1:, :] != panoptic[:-1, :]
    horizontal = panoptic[:, 1:] != panoptic[:, :-1]
    boundary[1:, :] |= vertical
    boundary[:-1, :] |= vertical
    boundary[:, 1:] |= horizontal
    boundary[:, :-1] |= horizontal
    return boundary


def instance_color(class_color: Sequence[int], instance: int) -> tuple[int, int, int]:
    """The color of thing instance ``instance``: its class color shifted by a per-instance offset.

    The offset depends only on the instance id, so a tracked instance keeps its color in every
    frame, and consecutive ids get offsets far apart. Each channel moves by at most 70 levels;
    where the shift would leave 0..255 it goes the other way, so it is never lost to clipping.

    Args:
        class_color: RGB of the class, three ints in 0..255.
        instance: the instance's id, any integer that stays the same along its track; the
            overlay passes the segment's panoptic id, whatever its label divisor.

    Returns:
        RGB, three ints in 0..255.
    """
    fraction = np.mod(instance * _JITTER_MULTIPLIERS, 1.0)
    offset = np.round((2 * fraction - 1) * _JITTER_RANGE).astype(int)
    base = np.asarray(class_color, dtype=int)
    shifted = base + offset
    outside = (shifted < 0) | (shifted > 255)
    shifted[outside] = base[outside] - offset[outside]
    return tuple(int(c) for c in shifted)


def _segment_colors(
    segments_info: Sequence[Mapping[str, Any]], metadata: Mapping[str, Any]
) -> dict[int, tuple[int, int, int]]:
    """RGB per panoptic id: the class color for stuff, :func:`instance_color` for things."""
    colors = {}
    for info in segments_info:
        class_color = metadata["stuff_colors"][info["category_id"]]
        if info["isthing"]:
            # the segment id itself: the same for any label divisor (single-frame or tracked)
            colors[int(info["id"])] = instance_color(class_color, int(info["id"]))
        else:
            colors[int(info["id"])] = tuple(int(c) for c in class_color)
    return colors


def _thing_label(
    info: Mapping[str, Any], class_names: Sequence[str], untrained: Collection[str] = ()
) -> str:
    """``car 12.4 m`` (class name, median depth with one decimal), or ``car`` without depth.

    A thing whose track the tracker revived in this frame (``revived_after`` frames missing)
    says so: ``car 12.4 m (revived, gap 2)``. With an untrained output among ``untrained``:
    ``car (untrained)`` when the depth is untrained (no made-up distance is shown),
    ``car 12.4 m (untrained)`` when only the panoptic output (the class) is.
    """
    name = class_names[info["category_id"]]
    median = float(info["depth_median"])
    label = name if math.isnan(median) or "depth" in untrained else f"{name} {median:.1f} m"
    if "revived_after" in info:
        label += f" (revived, gap {info['revived_after']})"
    return f"{label} (untrained)" if {"depth", "panoptic"} & set(untrained) else label


def _draw_labels(
    canvas: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    class_names: Sequence[str],
    scale: float,
    untrained: Collection[str] = (),
) -> None:
    """Label the things of ``segments_info`` on ``canvas`` (in place), nearest first.

    Each label is centered on its thing's ``center`` = (y, x) pixels, then moved to lie inside the
    canvas (a label wider or taller than the canvas starts at its left or top edge). Things whose
    track was revived in this frame (``revived_after``) go first, then the others, each in order
    of increasing median depth (NaN last); a label whose box would overlap one already drawn is
    left out, so crowded far things lose their labels rather than make them unreadable, and a
    revival is always shown.
    """
    height, width = canvas.shape[:2]
    pad = (_thickness(scale) + 2) // 2 + 1  # the outline's ink reaches beyond getTextSize's box
    things = [info for info in segments_info if info["isthing"]]
    things.sort(
        key=lambda info: (
            "revived_after" not in info,
            np.nan_to_num(float(info["depth_median"]), nan=np.inf),
        )
    )
    boxes: list[tuple[int, int, int, int]] = []  # (left, top, right, bottom), exclusive ends
    for info in things:
        text = _thing_label(info, class_names, untrained)
        text_width, text_height, below = _text_size(text, scale, outline=True)
        x = round(float(info["center"][1]) - text_width / 2)
        baseline = round(float(info["center"][0]) + (text_height - below) / 2)
        x = max(pad, min(x, width - text_width - pad))
        baseline = max(text_height + pad, min(baseline, height - 1 - below))
        box = (x, baseline - text_height, x + text_width, baseline + below + 1)
        if any(
            box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]
            for other in boxes
        ):
            continue
        _put_text(canvas, text, (x, baseline), scale, outline=True)
        boxes.append(box)


def panoptic_overlay(
    image: np.ndarray,
    panoptic: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    metadata: Any,
    untrained: Collection[str] = (),
) -> np.ndarray:
    """The image with its segments colored, their boundaries and a label on every thing.

    Pixels of a segment in ``segments_info`` are blended as ``0.45 * image + 0.55 * color``
    (colors: :func:`instance_color` for things, the class color for stuff); void pixels (-1) and
    ids missing from ``segments_info`` keep the image. :func:`segment_boundaries` pixels are
    white. Each thing is labelled ``<class> <median depth> m`` (one decimal; the class alone when
    the median is NaN) in white with a black outline, centered on its ``center`` and moved inside
    the image; nearer things are labelled first and a label that would overlap one already drawn
    is left out. The font grows with the image height (see ``_font_scale``). A thing whose track
    was revived after a gap says so (``car 12.4 m (revived, gap 2)``), and its label goes before
    all others. Labels of an untrained output end with ``(untrained)`` and show no untrained
    depth (``car (untrained)``).

    Args:
        image: (H, W, 3) uint8 RGB.
        panoptic: (H, W) integer panoptic ids, -1 = void.
        segments_info: segments of ``panoptic`` (module docstring); things need ``center``.
        metadata: uses ``stuff_classes`` and ``stuff_colors``.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    metadata = _as_mapping(metadata)
    _check_image(image)
    size = image.shape[:2]
    _check_size("panoptic", panoptic, size)
    ids, inverse = np.unique(panoptic, return_inverse=True)
    inverse = inverse.reshape(size)
    colors = _segment_colors(segments_info, metadata)
    palette = np.zeros((ids.size, 3), dtype=np.float32)
    weight = np.zeros(ids.size, dtype=np.float32)
    for index, segment_id in enumerate(ids.tolist()):
        if segment_id in colors:
            palette[index] = colors[segment_id]
            weight[index] = _OVERLAY_ALPHA
    alpha = weight[inverse][..., None]
    blended = (1 - alpha) * image.astype(np.float32) + alpha * palette[inverse]
    # C order: OpenCV draws only on contiguous arrays (astype keeps a transposed image's layout)
    canvas = np.round(blended).astype(np.uint8, order="C")
    canvas[segment_boundaries(panoptic)] = _WHITE

    _draw_labels(canvas, segments_info, metadata["stuff_classes"], _font_scale(size[0]), untrained)
    return canvas


def _depth_fraction(depth: np.ndarray, max_depth: float) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) float32 ``depth / max_depth`` clipped to [0, 1], and (H, W) bool valid depth."""
    if not max_depth > 0:
        raise ValueError(f"max_depth is {max_depth}; expected a positive depth in meters.")
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    fraction = np.clip(np.where(valid, depth, 0) / np.float32(max_depth), 0, 1)
    return fraction.astype(np.float32), valid


def _turbo(near_fraction: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB of OpenCV's turbo colormap at level
    ``24 + round(231 * near_fraction)``: ``near_fraction`` 1 is the red end, 0 the blue end."""
    levels = _TURBO_FAR + np.round(near_fraction * (_TURBO_NEAR - _TURBO_FAR))
    levels = levels.astype(np.uint8)
    flat = levels.reshape(-1, 1)
    rgb = cv2.applyColorMap(flat, cv2.COLORMAP_TURBO)[:, 0, ::-1]
    return rgb.reshape(*levels.shape, 3)


def depth_scale_bar(height: int, max_depth: float) -> np.ndarray:
    """The scale bar :func:`depth_colormap` puts right of the depth map.

    A vertical strip of the colormap, 0 m at the bottom and ``max_depth`` at the top (as in a road
    scene: near at the bottom), with tick marks and labels at 0, 1/4, 1/2, 3/4 and all of
    ``max_depth`` (``0 m``, ``22 m``, ... for 88 m) on a black background. Its width depends on the
    font size (from ``height``) and on the widest label.

    Args:
        height: H, rows of the depth map, pixels.
        max_depth: meters at the far (top) end, > 0.

    Returns:
        (H, B, 3) uint8 RGB, B = the bar's width in pixels.
    """
    if not max_depth > 0:
        raise ValueError(f"max_depth is {max_depth}; expected a positive depth in meters.")
    scale = _font_scale(height)
    labels = [f"{max_depth * k / (_TICKS - 1):.4g} m" for k in range(_TICKS)]
    sizes = [_text_size(label, scale, outline=False) for label in labels]
    text_height = max(size[1] for size in sizes)
    margin = max(2, round(height / 80))  # space around the strip and the labels
    strip = max(4, round(height / 40))
    tick = max(2, strip // 2)
    strip_left = margin
    text_left = strip_left + strip + tick + margin
    width = text_left + max(size[0] for size in sizes) + margin
    bar = np.zeros((height, width, 3), dtype=np.uint8)
    bar[:] = _BACKGROUND

    # Strip rows from top + half a text height to bottom - half a text height, so labels fit.
    top = text_height // 2 + margin
    bottom = height - 1 - text_height // 2 - margin
    bottom = max(bottom, top)
    rows = np.arange(height)
    near = np.clip((rows - top) / max(bottom - top, 1), 0, 1)  # 0 at the top (far), 1 at bottom
    inside = (rows >= top) & (rows <= bottom)
    bar[inside, strip_left : strip_left + strip] = _turbo(near[inside])[:, None, :]
    for k, (label, (_, label_height, _)) in enumerate(zip(labels, sizes, strict=True)):
        row = round(bottom - (bottom - top) * k / (_TICKS - 1))
        bar[row, strip_left + strip : strip_left + strip + tick] = _WHITE
        baseline = min(max(row + label_height // 2, label_height), height - 1)
        _put_text(bar, label, (text_left, baseline), scale, outline=False)
    return bar


def depth_colormap(depth: np.ndarray, max_depth: float) -> np.ndarray:
    """Depth as OpenCV's turbo colormap, near = red, far = blue, with a scale bar.

    Depth ``d`` meters takes turbo level ``24 + round(231 * (1 - min(d, max_depth) / max_depth))``:
    255 (dark red) at 0 m through orange, yellow, green and cyan to 24 (blue) at ``max_depth``.
    Turbo is a smooth rainbow with perceptually ordered lightness steps; its darkest blues (levels
    0-23) are left out so that far depth stays apart from the black of pixels without depth
    (<= 0 or non-finite).

    Args:
        depth: (H, W) float depth, meters.
        max_depth: meters drawn at the far end, > 0.

    Returns:
        (H, W + B, 3) uint8 RGB: the map in columns 0..W-1, then the
        :func:`depth_scale_bar` ``(H, max_depth)`` of width B (the map is not covered).
    """
    fraction, valid = _depth_fraction(depth, max_depth)
    colored = _turbo(1 - fraction)
    colored[~valid] = 0
    return np.concatenate([colored, depth_scale_bar(depth.shape[0], max_depth)], axis=1)


def panoptic_depth_view(
    panoptic: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    depth: np.ndarray,
    max_depth: float,
) -> np.ndarray:
    """Segments shaded by distance: near red, medium green, far blue, with white boundaries.

    Every pixel takes the color of its own depth (not its segment's median, so the shading shows
    depth changes inside a segment): the HSV color of hue ``240 * min(d, max_depth) / max_depth``
    degrees at full saturation and value, i.e. red (0 degrees) at 0 m, yellow, green (120) at
    ``max_depth / 2``, cyan, blue (240) at ``max_depth``. Void pixels (-1), ids missing from
    ``segments_info`` and pixels without depth (<= 0 or non-finite) are dark gray (64, 64, 64).
    :func:`segment_boundaries` pixels are white.

    Args:
        panoptic: (H, W) integer panoptic ids, -1 = void.
        segments_info: segments of ``panoptic`` (only ``id`` is read).
        depth: (H, W) float depth, meters.
        max_depth: meters at the blue end, > 0.

    Returns:
        (H, W, 3) uint8 RGB.
    """
    _check_size("depth", depth, panoptic.shape[:2])
    fraction, valid = _depth_fraction(depth, max_depth)
    hsv = np.stack([240 * fraction, np.ones_like(fraction), np.ones_like(fraction)], axis=-1)
    canvas = np.round(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255).astype(np.uint8)
    known = np.array([int(info["id"]) for info in segments_info], dtype=np.int64)
    in_segment = np.isin(panoptic, known)
    canvas[~(valid & in_segment)] = _NO_DEPTH_GRAY
    canvas[segment_boundaries(panoptic)] = _WHITE
    return canvas


def _titled_panel(
    panel: np.ndarray, title: str, width: int, title_height: int, untrained: bool = False
) -> np.ndarray:
    """``panel`` under a black (red when ``untrained``) strip ``title_height`` rows high holding
    ``title``, padded with black on the right to ``width`` columns."""
    height = panel.shape[0]
    out = np.zeros((title_height + height, width, 3), dtype=np.uint8)
    out[:] = _BACKGROUND
    if untrained:
        out[:title_height] = _UNTRAINED_BACKGROUND
    out[title_height:, : panel.shape[1]] = panel
    scale = _font_scale(height)
    _, text_height, below = _text_size(title, scale, outline=False)
    baseline = (title_height + text_height - below) // 2
    _put_text(out, title, (max(2, round(height / 100)), baseline), scale, outline=False)
    return out


def visualize_frame(
    image: np.ndarray,
    panoptic: np.ndarray,
    segments_info: Sequence[Mapping[str, Any]],
    depth: np.ndarray,
    metadata: Any,
    untrained: Collection[str] = (),
) -> np.ndarray:
    """One picture of a frame's prediction: a 2 x 2 grid of titled panels.

    ======================  ======================================
    ``input``: the image    ``panoptic``: :func:`panoptic_overlay`
    ``depth (m)``:          ``panoptic depth``:
    :func:`depth_colormap`  :func:`panoptic_depth_view`
    ======================  ======================================

    Each panel sits under a black title strip T rows high and is padded with black on the right
    to the depth panel's width W + B (B: the :func:`depth_scale_bar` width).

    Outputs of a model branch that was not trained (``untrained``, a subset of
    ``UNTRAINED_OUTPUTS``: ``"panoptic"``, ``"depth"``, ``"tracking"``) are marked: each panel
    drawing one gets a red title strip whose title starts with ``UNTRAINED`` and names them
    (``UNTRAINED depth: depth (m)``; the panoptic panel shows panoptic and tracking, the depth
    panels depth, the panoptic depth panel also panoptic), and the thing labels end with
    ``(untrained)`` (see :func:`panoptic_overlay`).

    Args:
        image: (H, W, 3) uint8 RGB.
        panoptic: (H, W) integer panoptic ids, -1 = void.
        segments_info: segments of ``panoptic`` (module docstring).
        depth: (H, W) float depth, meters.
        metadata: uses ``stuff_classes``, ``stuff_colors``, ``max_depth``.
        untrained: the untrained outputs, among ``UNTRAINED_OUTPUTS``.

    Returns:
        (2 * (T + H), 2 * (W + B), 3) uint8 RGB, with T = text height + descent of the title font
        (which grows with H) plus 2 * max(2, round(H / 100)) rows of margin.
    """
    metadata = _as_mapping(metadata)
    _check_image(image)
    _check_size("panoptic", panoptic, image.shape[:2])
    _check_size("depth", depth, image.shape[:2])
    unknown = sorted(set(untrained) - set(UNTRAINED_OUTPUTS))
    if unknown:
        raise ValueError(f"untrained = {unknown}: expected outputs among {UNTRAINED_OUTPUTS}.")
    size = image.shape[:2]
    max_depth = float(metadata["max_depth"])
    panels = [
        image,
        panoptic_overlay(image, panoptic, segments_info, metadata, untrained),
        depth_colormap(depth, max_depth),
        panoptic_depth_view(panoptic, segments_info, depth, max_depth),
    ]
    width = max(panel.shape[1] for panel in panels)
    scale = _font_scale(size[0])
    marks = [[o for o in outputs if o in untrained] for outputs in _PANEL_OUTPUTS]
    titles = [
        f"UNTRAINED {'+'.join(mark)}: {title}" if mark else title
        for mark, title in zip(marks, _TITLES, strict=True)
    ]
    # the strip's height does not depend on the marks: a picture keeps its size
    sizes = [_text_size(title, scale, outline=False) for title in _TITLES]
    title_height = max(s[1] for s in sizes) + max(s[2] for s in sizes)
    title_height += 2 * max(2, round(size[0] / 100))
    titled = [
        _titled_panel(panel, title, width, title_height, bool(mark))
        for panel, title, mark in zip(panels, titles, marks, strict=True)
    ]
    return np.concatenate(
        [np.concatenate(titled[:2], axis=1), np.concatenate(titled[2:], axis=1)], axis=0
    )
