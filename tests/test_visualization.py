"""Tests of panoptic_depthlab.visualization on small hand-built frames."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from detectron2.data.catalog import Metadata

from panoptic_depthlab.visualization import (
    _draw_labels,
    _thing_label,
    depth_colormap,
    depth_scale_bar,
    instance_color,
    panoptic_depth_view,
    panoptic_overlay,
    segment_boundaries,
    visualize_frame,
)

H, W = 64, 128
DIVISOR = 1000
ROAD, SKY, CAR = 0, 1, 2
META = {
    "stuff_classes": ["road", "sky", "car"],
    "stuff_colors": [(128, 64, 128), (70, 130, 180), (0, 0, 142)],
    "thing_ids": [CAR],
    "label_divisor": DIVISOR,
    "max_depth": 88.0,
}
CAR_1, CAR_2 = CAR * DIVISOR + 1, CAR * DIVISOR + 2
GRAY = 128  # value of every channel of the test image


def make_frame() -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Gray image; sky on rows 0-9, road below, two touching cars (rows 16-47, columns 8-47
    and 48-87), void on rows 56-63. Returns (image, panoptic, segments_info)."""
    image = np.full((H, W, 3), GRAY, np.uint8)
    panoptic = np.full((H, W), ROAD * DIVISOR, np.int64)
    panoptic[:10] = SKY * DIVISOR
    panoptic[16:48, 8:48] = CAR_1
    panoptic[16:48, 48:88] = CAR_2
    panoptic[56:] = -1
    segments_info = [
        segment(ROAD * DIVISOR, ROAD, False, 20.0),
        segment(SKY * DIVISOR, SKY, False, float("nan")),
        segment(CAR_1, CAR, True, 12.4, center=[31.5, 27.5]),
        segment(CAR_2, CAR, True, 30.0, center=[31.5, 67.5]),
    ]
    return image, panoptic, segments_info


def segment(segment_id: int, category_id: int, isthing: bool, median: float, center=None) -> dict:
    info = {
        "id": segment_id,
        "category_id": category_id,
        "isthing": isthing,
        "area": 1,
        "depth_mean": median,
        "depth_median": median,
    }
    if center is not None:
        info["center"] = center
    return info


def blended(color) -> np.ndarray:
    """The overlay's documented color of a segment pixel over the gray image."""
    return np.round(0.45 * np.float32(GRAY) + 0.55 * np.float32(color)).astype(np.uint8)


def brute_force_boundaries(panoptic: np.ndarray) -> np.ndarray:
    rows, cols = panoptic.shape
    out = np.zeros((rows, cols), bool)
    for y in range(rows):
        for x in range(cols):
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                ny, nx = y + dy, x + dx
                if 0 <= ny < rows and 0 <= nx < cols and panoptic[ny, nx] != panoptic[y, x]:
                    out[y, x] = True
    return out


def test_segment_boundaries_are_exactly_the_id_changes():
    _, panoptic, _ = make_frame()
    boundaries = segment_boundaries(panoptic)
    assert boundaries.dtype == bool and boundaries.shape == (H, W)
    np.testing.assert_array_equal(boundaries, brute_force_boundaries(panoptic))
    # The car-car edge between columns 47 and 48 marks both sides; car interiors are clear.
    assert boundaries[30, 47] and boundaries[30, 48] and not boundaries[30, 46]
    assert not boundaries[30, 20] and not boundaries[0, 0]


def test_instance_color_deterministic_and_distinct():
    colors = [instance_color((0, 0, 142), n) for n in range(1, 51)]
    assert len(set(colors)) == 50  # even on a class color at the edge of the RGB cube
    assert all(0 <= c <= 255 for color in colors for c in color)
    assert instance_color((0, 0, 142), 7) == colors[6]
    # Consecutive ids differ clearly, not by a level or two.
    assert all(
        np.abs(np.subtract(a, b)).max() >= 30 for a, b in zip(colors, colors[1:], strict=False)
    )


def test_panoptic_overlay_colors_and_boundaries():
    image, panoptic, segments_info = make_frame()
    overlay = panoptic_overlay(image, panoptic, segments_info, META)
    assert overlay.shape == (H, W, 3) and overlay.dtype == np.uint8

    # Away from the labels (rows 40-45): exact documented blend; the two cars differ.
    car_1 = blended(instance_color(META["stuff_colors"][CAR], CAR_1))  # colored by segment id
    car_2 = blended(instance_color(META["stuff_colors"][CAR], CAR_2))
    np.testing.assert_array_equal(overlay[40:46, 10:46], np.broadcast_to(car_1, (6, 36, 3)))
    np.testing.assert_array_equal(overlay[40:46, 50:86], np.broadcast_to(car_2, (6, 36, 3)))
    assert not np.array_equal(car_1, car_2)
    np.testing.assert_array_equal(overlay[12, 100], blended(META["stuff_colors"][ROAD]))
    np.testing.assert_array_equal(overlay[3, 100], blended(META["stuff_colors"][SKY]))
    np.testing.assert_array_equal(overlay[60, 100], image[60, 100])  # void keeps the image

    # Boundary pixels (outside the label area) are white, exactly on the id changes.
    rows = np.r_[0:24, 40:H]
    boundaries = segment_boundaries(panoptic)[rows]
    white = (overlay[rows] == 255).all(axis=2)
    np.testing.assert_array_equal(white, boundaries)


def test_panoptic_overlay_instance_color_is_stable_across_frames():
    image, panoptic, segments_info = make_frame()
    first = panoptic_overlay(image, panoptic, segments_info, META)
    np.testing.assert_array_equal(first, panoptic_overlay(image, panoptic, segments_info, META))
    # Next frame: car 1 left, car 2 moved left; car 2 keeps its color.
    moved = np.where(panoptic == CAR_1, ROAD * DIVISOR, panoptic)
    moved[moved == CAR_2] = ROAD * DIVISOR
    moved[16:48, 20:60] = CAR_2
    info = [s for s in segments_info if s["id"] != CAR_1]
    info[-1] = dict(info[-1], center=[31.5, 39.5])
    second = panoptic_overlay(image, moved, info, META)
    np.testing.assert_array_equal(second[42, 30], first[42, 60])


def single_thing_frame(median: float, center) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """The whole image is one car: no boundaries, so only the label changes pixels."""
    image = np.full((H, W, 3), GRAY, np.uint8)
    panoptic = np.full((H, W), CAR_1, np.int64)
    return image, panoptic, [segment(CAR_1, CAR, True, median, center=center)]


def label_pixels(overlay: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that differ from the plain blend of car 1."""
    return (overlay != blended(instance_color(META["stuff_colors"][CAR], CAR_1))).any(axis=2)


def test_thing_label_is_drawn_readably_at_its_center():
    overlay = panoptic_overlay(*single_thing_frame(12.4, [32, 64]), META)
    changed = label_pixels(overlay)
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100
    assert ys.min() <= 32 <= ys.max() and xs.min() <= 64 <= xs.max()
    assert abs((xs.min() + xs.max()) / 2 - 64) <= 4 and abs((ys.min() + ys.max()) / 2 - 32) <= 4
    # White text (anti-aliased) with a black outline around it.
    assert (overlay[changed] > 200).all(axis=1).sum() > 20
    assert (overlay[changed] < 30).all(axis=1).sum() > 20


def test_thing_label_without_depth_is_the_class_name_only():
    with_depth = label_pixels(panoptic_overlay(*single_thing_frame(12.4, [32, 64]), META))
    without = label_pixels(panoptic_overlay(*single_thing_frame(float("nan"), [32, 64]), META))
    assert 0 < without.sum() < with_depth.sum()
    width = np.ptp(np.nonzero(without)[1])
    assert width < np.ptp(np.nonzero(with_depth)[1]) / 2  # "car" vs "car 12.4 m"


@pytest.mark.parametrize(
    "revived_after, untrained, label",
    [
        (None, (), "car 12.4 m"),
        (2, (), "car 12.4 m (revived, gap 2)"),
        (1, ("panoptic",), "car 12.4 m (revived, gap 1) (untrained)"),
        (3, ("depth",), "car (revived, gap 3) (untrained)"),
    ],
)
def test_thing_label_says_when_the_tracker_revived_its_track(revived_after, untrained, label):
    info = {"category_id": CAR, "depth_median": 12.4}
    if revived_after is not None:
        info["revived_after"] = revived_after
    assert _thing_label(info, META["stuff_classes"], untrained) == label


@pytest.mark.parametrize("center", [[0, 0], [H - 1, W - 1], [-20, 500]])
def test_thing_label_is_moved_inside_the_image(center):
    middle = label_pixels(panoptic_overlay(*single_thing_frame(12.4, [32, 64]), META))
    edge = label_pixels(panoptic_overlay(*single_thing_frame(12.4, center), META))
    assert edge.sum() == middle.sum()  # the whole label is drawn, none of it cut off


def test_overlapping_labels_keep_the_nearest():
    image = np.full((H, W, 3), GRAY, np.uint8)
    panoptic = np.full((H, W), CAR_1, np.int64)
    panoptic[:, 64:] = CAR_2

    def render(far_depth: float) -> np.ndarray:
        info = [
            segment(CAR_1, CAR, True, 10.0, center=[32, 64]),
            segment(CAR_2, CAR, True, far_depth, center=[34, 66]),
        ]
        return panoptic_overlay(image, panoptic, info, META)

    # The far car's label would overlap the near car's: it is left out, whatever its text.
    np.testing.assert_array_equal(render(30.0), render(55.5))
    # The near car's label is on top even when listed second.
    info = [
        segment(CAR_2, CAR, True, 30.0, center=[34, 66]),
        segment(CAR_1, CAR, True, 10.0, center=[32, 64]),
    ]
    np.testing.assert_array_equal(panoptic_overlay(image, panoptic, info, META), render(30.0))


def test_a_revived_track_keeps_its_label_among_overlapping_ones():
    near = segment(CAR_1, CAR, True, 10.0, center=[32, 64])
    far = {**segment(CAR_2, CAR, True, 30.0, center=[34, 66]), "revived_after": 1}

    def labels(info: list[dict]) -> np.ndarray:
        canvas = np.zeros((H, W, 3), np.uint8)
        _draw_labels(canvas, info, META["stuff_classes"], 0.4)
        return canvas

    # the far car's label (its track revived) is drawn, the near car's overlaps it: left out
    np.testing.assert_array_equal(labels([near, far]), labels([far]))
    assert labels([far]).any() and not np.array_equal(labels([far]), labels([near]))
    # without the revival, nearest first as before
    plain = {k: v for k, v in far.items() if k != "revived_after"}
    np.testing.assert_array_equal(labels([plain, near]), labels([near]))


def turbo(level: int) -> np.ndarray:
    return cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_TURBO)[0, 0, ::-1]


def test_depth_colormap():
    depth = np.full((H, W), 44.0, np.float32)
    depth[0, :4] = [0.0, -1.0, np.nan, np.inf]
    depth[10, 10] = 1e-3  # near
    depth[10, 20] = 88.0  # far
    depth[10, 30] = 300.0  # beyond max_depth: drawn as far
    out = depth_colormap(depth, 88.0)
    bar = depth_scale_bar(H, 88.0)
    assert out.dtype == np.uint8 and out.shape == (H, W + bar.shape[1], 3)
    assert bar.shape[1] > 0
    np.testing.assert_array_equal(out[:, W:], bar)  # the bar is beside the map, not over it

    np.testing.assert_array_equal(out[0, :4], np.zeros((4, 3), np.uint8))  # no depth: black
    near, far = out[10, 10], out[10, 20]
    np.testing.assert_array_equal(near, turbo(255))  # turbo's warm end
    np.testing.assert_array_equal(far, turbo(24))  # a clear blue, apart from black
    np.testing.assert_array_equal(out[10, 30], far)
    assert near[0] > near[2] + 50 and far[2] > far[0] + 50  # near red, far blue
    assert not (out[20, 20] == 0).all()  # valid mid depth is not black


@pytest.mark.parametrize("height", [64, 1024])
def test_depth_scale_bar_has_colors_and_tick_labels(height):
    bar = depth_scale_bar(height, 88.0)
    assert bar.dtype == np.uint8 and bar.shape[0] == height
    # The color strip is the column with the most colored pixels.
    colored = ~(bar == 0).all(axis=2)
    column = bar[:, colored.sum(axis=0).argmax()]
    rows = np.nonzero(colored[:, colored.sum(axis=0).argmax()])[0]
    assert rows.size > height / 2
    bottom, top = column[rows.max()], column[rows.min()]
    assert bottom[0] > bottom[2] + 50 and top[2] > top[0] + 50  # 0 m red at the bottom, far blue
    # White tick labels right of the strip, near the top and near the bottom.
    text = (bar[:, bar.shape[1] // 3 :] > 200).all(axis=2)
    assert text[: height // 4].any() and text[-height // 4 :].any()
    assert bar.shape[1] < 2 * depth_scale_bar(1024, 88.0).shape[1]  # sized to its labels


def test_depth_scale_bar_widens_with_the_image():
    assert depth_scale_bar(1024, 88.0).shape[1] > 3 * depth_scale_bar(64, 88.0).shape[1]


def test_panoptic_depth_view_red_green_blue():
    panoptic = np.zeros((H, W), np.int64)
    panoptic[:, 40:80] = 1000
    panoptic[:, 80:] = 2000
    panoptic[:8] = -1
    depth = np.full((H, W), 2.0, np.float32)
    depth[:, 40:80] = 44.0
    depth[:, 80:] = 88.0
    depth[20:24, :] = 0.0  # no depth
    info = [segment(k * 1000, k, False, 0.0) for k in range(3)]
    view = panoptic_depth_view(panoptic, info, depth, 88.0)
    assert view.shape == (H, W, 3) and view.dtype == np.uint8

    inside = ~segment_boundaries(panoptic)
    inside[:8] = inside[20:24] = False
    for columns, channel in ((slice(0, 40), 0), (slice(40, 80), 1), (slice(80, W), 2)):
        pixels = view[:, columns][inside[:, columns]]
        assert (pixels.argmax(axis=1) == channel).mean() > 0.99
    np.testing.assert_array_equal(view[40, 60], [0, 255, 0])
    np.testing.assert_array_equal(view[40, 100], [0, 0, 255])
    assert view[40, 20, 0] == 255 and view[40, 20, 2] == 0  # 2 m: red, a little orange
    # Per-pixel depth: shading changes inside a segment.
    depth[30, 100] = 66.0
    assert (
        view[30, 100].tolist() != panoptic_depth_view(panoptic, info, depth, 88.0)[30, 100].tolist()
    )

    np.testing.assert_array_equal(view[3, 20], [64, 64, 64])  # void
    np.testing.assert_array_equal(view[21, 20], [64, 64, 64])  # no depth
    np.testing.assert_array_equal(
        (view == 255).all(axis=2), segment_boundaries(panoptic)
    )  # white exactly on boundaries (no segment color is white)


def test_visualize_frame_layout():
    image, panoptic, segments_info = make_frame()
    image[..., 0] = np.arange(W, dtype=np.uint8)  # not uniform, to locate the panel
    depth = np.linspace(1.0, 90.0, H * W, dtype=np.float32).reshape(H, W)
    out = visualize_frame(image, panoptic, segments_info, depth, META)
    bar = depth_scale_bar(H, 88.0).shape[1]
    assert out.dtype == np.uint8 and out.shape[1] == 2 * (W + bar)
    assert out.shape[0] % 2 == 0
    title = out.shape[0] // 2 - H
    assert title > 0

    np.testing.assert_array_equal(out[title : title + H, :W], image)
    overlay = panoptic_overlay(image, panoptic, segments_info, META)
    np.testing.assert_array_equal(out[title : title + H, W + bar : 2 * W + bar], overlay)
    colormap = depth_colormap(depth, 88.0)
    np.testing.assert_array_equal(out[2 * title + H :, : W + bar], colormap)
    view = panoptic_depth_view(panoptic, segments_info, depth, 88.0)
    np.testing.assert_array_equal(out[2 * title + H :, W + bar : 2 * W + bar], view)
    # Titles: white text in each title strip; padding right of narrower panels is black.
    for top in (0, title + H):
        for left in (0, W + bar):
            assert (out[top : top + title, left : left + W] > 200).all(axis=2).any()
    assert (out[title : title + H, W : W + bar] == 0).all()
    assert (out[title : title + H, 2 * W + bar :] == 0).all()

    # A Detectron2 Metadata gives the same picture as the dict.
    metadata = Metadata(name="visualization_test", **META)
    np.testing.assert_array_equal(
        visualize_frame(image, panoptic, segments_info, depth, metadata), out
    )


def test_shape_mismatch_raises():
    image, panoptic, segments_info = make_frame()
    with pytest.raises(ValueError, match=r"panoptic has shape \(64, 127\)"):
        panoptic_overlay(image, panoptic[:, :-1], segments_info, META)
    with pytest.raises(ValueError, match=r"depth has shape \(63, 128\)"):
        visualize_frame(image, panoptic, segments_info, np.ones((H - 1, W), np.float32), META)
    with pytest.raises(ValueError, match=r"image has shape \(64, 128\)"):
        panoptic_overlay(image[..., 0], panoptic, segments_info, META)
    with pytest.raises(ValueError, match="max_depth is 0.0"):
        depth_colormap(np.ones((H, W), np.float32), 0.0)


def test_labels_drawn_on_a_transposed_image_view():
    # A (3, H, W) model input seen as (H, W, 3) is not C-contiguous; OpenCV refuses such arrays.
    image, panoptic, segments = single_thing_frame(12.4, [32, 64])
    view = np.ascontiguousarray(image.transpose(2, 0, 1)).transpose(1, 2, 0)
    assert not view.flags.c_contiguous
    overlay = panoptic_overlay(view, panoptic, segments, META)
    np.testing.assert_array_equal(overlay, panoptic_overlay(image, panoptic, segments, META))
