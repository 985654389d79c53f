"""Panoptic-DeepLab post-processing with per-segment depth statistics.

:func:`panoptic_depth_inference` gives exactly the panoptic map of Detectron2's
``get_panoptic_segmentation`` (same id at every pixel), without its slow parts: the distance from
every pixel of the image to every center, and the Python loops over instances (one ``torch.mode``
each) and over stuff classes. It also returns the segments with their mean and median predicted
depth.

Detectron2's rules, all kept here:

* Centers are found by Detectron2's rule (``find_instance_center``), computed here by
  :func:`find_centers` so that this module needs no Detectron2: threshold, max-pool NMS, top-k
  (only scores strictly above the k-th largest score are kept, in raster order).
* Every thing pixel (its predicted class is in ``thing_ids``) goes to the center nearest to its
  predicted center location ``(y, x) + offset``; on a tie, to the first center in raster order.
  Ties are those of Detectron2's rounded ``torch.norm`` distances: only thing pixels are
  grouped, by fast squared distances, and those with a near tie are settled by Detectron2's
  own ``torch.norm`` computation.
* Each instance takes the most frequent class of its pixels, the smallest class on a tie (what
  ``torch.mode`` returns), and has id ``class * label_divisor + n`` where ``n`` counts 1, 2, ...
  the instances of that class in center order. Centers that get no pixel are skipped.
* Each thing segment records its center ``(y, x)``, in pixels; video stitching groups the
  next frame's pixels to these centers.
* Each stuff class covering at least ``stuff_area`` pixels has id ``class * label_divisor``. All
  other pixels (small stuff regions, thing pixels when no center is found) get ``void_label``.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F

# Largest (centers x thing pixels) block of distances computed at once: bounds memory on large
# images with many centers.
_MAX_DISTANCE_ELEMENTS = 2**24


def find_centers(
    center_heatmap: torch.Tensor, threshold: float, nms_kernel: int, top_k: int
) -> torch.Tensor:
    """Instance centers of a heatmap, by the rule of Detectron2's ``find_instance_center``.

    A pixel is a center when its score is above ``threshold``, equals the maximum of its
    ``nms_kernel`` x ``nms_kernel`` neighbourhood (a plateau keeps all its pixels), and is
    strictly above both 0 and the ``top_k``-th largest of the scores left after these two rules
    (suppressed pixels count as -1 there).

    Args:
        center_heatmap: (1, H, W) center scores.
        threshold: scores at or below it are not centers.
        nms_kernel: odd window size of the non-maximum suppression.
        top_k: at most this many centers (more on ties at the k-th score); clipped to H x W.

    Returns:
        (K, 2) int64 (y, x) of the centers, in raster order.
    """
    scores = torch.where(center_heatmap > threshold, center_heatmap, -1.0)
    pooled = F.max_pool2d(scores, kernel_size=nms_kernel, stride=1, padding=(nms_kernel - 1) // 2)
    scores = torch.where(scores == pooled, scores, -1.0)[0]
    k = min(top_k, scores.numel())
    floor = torch.topk(scores.flatten(), k).values[-1].clamp(min=0)
    return torch.nonzero(scores > floor)


def _class_index(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted candidate classes and the index of each pixel's class among them.

    Args:
        labels: (N,) int64 class per pixel, N >= 1.

    Returns:
        classes: (C,) int64 ascending; every class of ``labels`` is there, others may be too.
        index: (N,) int64 in [0, C), ``classes[index] == labels``.
    """
    low, high = (int(v) for v in labels.aminmax())
    if high - low < labels.numel():  # a dense range of labels: no sort needed
        return torch.arange(low, high + 1, device=labels.device), labels - low
    return torch.unique(labels, return_inverse=True)


def nearest_center(
    centers: torch.Tensor, offsets: torch.Tensor, pixel_y: torch.Tensor, pixel_x: torch.Tensor
) -> torch.Tensor:
    """Index of the center nearest to each pixel's predicted center location, as Detectron2.

    Args:
        centers: (K, 2) int64 center positions (y, x) in pixels, K >= 1.
        offsets: (2, H, W) float predicted offsets (y, x) from each pixel to its center, pixels.
        pixel_y: (N,) int64 rows of the pixels to group, N >= 1.
        pixel_x: (N,) int64 columns of the pixels to group.

    Returns:
        (N,) int64 index in [0, K) of the nearest center, equal to Detectron2's ``group_pixels``.
    """
    height, width = offsets.shape[1:]
    rows = torch.arange(height, dtype=offsets.dtype, device=offsets.device)
    cols = torch.arange(width, dtype=offsets.dtype, device=offsets.device)
    coords = torch.stack((rows[pixel_y], cols[pixel_x]))
    locations = coords + offsets[:, pixel_y, pixel_x]  # (2, N), as Detectron2's center_loc
    num_chunks = -(-centers.shape[0] * pixel_y.numel() // _MAX_DISTANCE_ELEMENTS)
    return torch.cat(
        [_nearest_in_chunk(centers, chunk) for chunk in locations.tensor_split(num_chunks, 1)]
    )


def _nearest_in_chunk(centers: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
    """:func:`nearest_center` for the predicted center locations of some pixels.

    Detectron2 takes the argmin (first index on ties) of ``torch.norm`` over the (y, x) axis of
    the (K, H * W, 2) differences, a slow strided reduction whose rounding of the last bit no
    other formula reproduces. Squared distances computed fast in the same dtype are within a few
    units in the last place of the squares of those norms, so a center clearly nearer than all
    others by them is Detectron2's choice too; only the pixels with a runner-up within that
    margin, or with non-finite or huge distances, go through Detectron2's exact computation.

    Args:
        centers: (K, 2) int64 center positions (y, x) in pixels.
        locations: (2, n) float predicted center locations (y, x) in pixels.

    Returns:
        (n,) int64 index in [0, K) of the nearest center.
    """
    diff_y = centers[:, 0, None] - locations[0]  # (K, n), rounded as Detectron2's differences
    diff_x = centers[:, 1, None] - locations[1]
    squared = diff_y.square_().add_(diff_x.square_())
    closest, nearest = squared.min(dim=0)
    runner_up = squared.scatter_(0, nearest[None], float("inf")).amin(dim=0)
    finfo = torch.finfo(squared.dtype)
    # Relative margin: rounding of both computations. Absolute margin: their underflow.
    margin = closest * (64 * finfo.eps) + finfo.tiny**0.5
    sure = (runner_up > closest + margin) & (closest < finfo.max / 4)  # False for NaN
    unsure = (~sure).nonzero().squeeze(1)
    if unsure.numel() > 0:
        exact = locations[:, unsure]
        # With one column, torch.norm would reduce over a contiguous dimension, another kernel.
        exact = exact.repeat(1, 2) if unsure.numel() == 1 else exact
        distances = torch.norm(centers[:, None, :] - exact.T[None], dim=-1)
        nearest[unsure] = distances.argmin(dim=0)[: unsure.numel()]
    return nearest


def _instance_ids(
    nearest: torch.Tensor,
    thing_rank: torch.Tensor,
    thing_classes: torch.Tensor,
    num_centers: int,
    label_divisor: int,
    void_label: int,
) -> torch.Tensor:
    """Panoptic id of each center's instance, by majority vote of its pixels' classes.

    Args:
        nearest: (N,) int64 center index in [0, K) of each thing pixel.
        thing_rank: (N,) int64 index in [0, T) of each thing pixel's class in ``thing_classes``.
        thing_classes: (T,) int64 thing classes, ascending.
        num_centers: K.
        label_divisor: id = class * label_divisor + instance number (1, 2, ... per class).
        void_label: id of centers without pixels.

    Returns:
        (K,) int64 panoptic id per center.
    """
    num_things = thing_classes.numel()
    votes = torch.bincount(nearest * num_things + thing_rank, minlength=num_centers * num_things)
    votes = votes.view(num_centers, num_things)
    # argmax takes the first maximum, i.e. the smallest class as torch.mode does.
    winner = votes.argmax(dim=1)
    present = votes.sum(dim=1) > 0
    one_hot = F.one_hot(winner, num_things) * present[:, None]
    number = one_hot.cumsum(dim=0).gather(1, winner[:, None]).squeeze(1)
    ids = thing_classes[winner] * label_divisor + number
    return torch.where(present, ids, void_label)


def _depth_statistics(
    depth: torch.Tensor, pixel_segment: torch.Tensor, num_segments: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Count, mean and median of the valid depths (finite, > 0) of each segment.

    Args:
        depth: (N,) float depth per pixel, meters.
        pixel_segment: (N,) int64 segment in [0, S) of each pixel, -1 for none.
        num_segments: S.

    Returns:
        count: (S,) int64 valid pixels per segment.
        mean: (S,) float64 mean valid depth, meters; NaN where count is 0.
        median: (S,) median valid depth in ``depth``'s dtype, meters (mean of the two middle
            values for even counts, as ``numpy.median``); NaN where count is 0.
    """
    valid = (torch.isfinite(depth) & (depth > 0) & (pixel_segment >= 0)).nonzero().squeeze(1)
    segment, values = pixel_segment[valid], depth[valid]
    count = torch.bincount(segment, minlength=num_segments)
    total = torch.zeros(num_segments, dtype=torch.float64, device=depth.device)
    mean = total.index_add_(0, segment, values.double()) / count

    values, order = values.sort()
    # The narrowest integer type makes this stable sort the fastest.
    narrow = torch.int16 if num_segments <= torch.iinfo(torch.int16).max else torch.int32
    order = segment.to(narrow)[order].argsort(stable=True)  # by segment, by depth within each
    nan = values.new_full((1,), float("nan"))
    values = torch.cat((values[order], nan))  # a segment without valid pixel reads the NaN
    start = count.cumsum(dim=0) - count
    empty = count == 0
    lower = torch.where(empty, values.numel() - 1, start + (count - 1) // 2)
    upper = torch.where(empty, values.numel() - 1, start + count // 2)
    return count, mean, (values[lower] + values[upper]) / 2


@torch.no_grad()
def panoptic_depth_inference(
    sem_seg: torch.Tensor,
    center_heatmap: torch.Tensor,
    offsets: torch.Tensor,
    depth: torch.Tensor | None,
    *,
    thing_ids: Collection[int],
    label_divisor: int,
    stuff_area: int,
    void_label: int,
    threshold: float,
    nms_kernel: int,
    top_k: int,
) -> tuple[torch.Tensor, list[dict]]:
    """Panoptic segmentation of one image, as Detectron2's Panoptic-DeepLab, with segment depths.

    Args:
        sem_seg: (1, H, W) int64 predicted class per pixel.
        center_heatmap: (1, H, W) float predicted center heatmap.
        offsets: (2, H, W) float predicted offsets (y, x) from each pixel to its center, pixels.
        depth: (H, W) float predicted depth, meters; None for no depth statistics.
        thing_ids: classes that are things; all others are stuff.
        label_divisor: panoptic id = class * label_divisor + instance number (0 for stuff).
        stuff_area: stuff classes covering fewer pixels become void.
        void_label: panoptic id of unlabeled pixels.
        threshold: center heatmap scores must be above it.
        nms_kernel: size of the max-pooling window of center NMS, odd.
        top_k: at most this many centers, ``1 <= top_k <= H * W``.

    Returns:
        panoptic: (H, W) int64 panoptic id per pixel, equal to Detectron2's
            ``get_panoptic_segmentation`` (squeezed) for the same arguments.
        segments_info: one dict per panoptic id other than ``void_label``, ascending by id:
            ``id``, ``category_id`` (id // label_divisor), ``isthing``, ``area`` (pixels), for
            things ``center`` ([y, x] pixels, the instance's center), and, with depth,
            ``depth_valid_pixels`` (pixels with finite depth > 0), ``depth_mean`` and
            ``depth_median`` (meters, over the valid pixels; NaN when there are none).
    """
    if sem_seg.dim() != 3 or sem_seg.shape[0] != 1:
        raise ValueError(f"sem_seg must be (1, H, W), got {tuple(sem_seg.shape)}")
    height, width = sem_seg.shape[1:]
    if center_heatmap.shape != sem_seg.shape:
        raise ValueError(f"center_heatmap must be (1, H, W), got {tuple(center_heatmap.shape)}")
    if offsets.shape != (2, height, width):
        raise ValueError(f"offsets must be (2, H, W), got {tuple(offsets.shape)}")
    if depth is not None and depth.shape != (height, width):
        raise ValueError(f"depth must be (H, W), got {tuple(depth.shape)}")

    classes, class_index = _class_index(sem_seg.flatten().long())
    class_area = torch.bincount(class_index, minlength=classes.numel())
    class_index = class_index.view(height, width)
    thing_list = torch.tensor(list(thing_ids), dtype=torch.int64, device=classes.device)
    is_thing_class = torch.isin(classes, thing_list)
    kept_stuff = ~is_thing_class & (class_area > 0) & (class_area >= stuff_area)
    # Panoptic id per table entry: one entry per class, then one per center. Each pixel points to
    # its class's entry (void for thing classes) or, for thing pixels, to its center's entry.
    table = torch.where(kept_stuff, classes * label_divisor, void_label)
    table_index = class_index
    center_of: dict[int, list[int]] = {}

    centers = find_centers(center_heatmap, threshold, nms_kernel, top_k)
    thing_y, thing_x = is_thing_class[class_index].nonzero().unbind(1)
    if centers.shape[0] > 0 and thing_y.numel() > 0:
        nearest = nearest_center(centers, offsets, thing_y, thing_x)
        thing_rank = (is_thing_class.cumsum(dim=0) - 1)[class_index[thing_y, thing_x]]
        instance_ids = _instance_ids(
            nearest,
            thing_rank,
            classes[is_thing_class],
            centers.shape[0],
            label_divisor,
            void_label,
        )
        table = torch.cat((table, instance_ids))
        present = instance_ids != void_label
        center_of = dict(
            zip(instance_ids[present].tolist(), centers[present].tolist(), strict=True)
        )
        table_index = class_index.index_put((thing_y, thing_x), nearest + classes.numel())
    panoptic = table[table_index]

    segment_ids = torch.unique(table[table != void_label])
    entry_segment = torch.where(table == void_label, -1, torch.searchsorted(segment_ids, table))
    pixel_segment = entry_segment[table_index].flatten()
    area = torch.bincount(pixel_segment + 1, minlength=segment_ids.numel() + 1)[1:]
    columns = [segment_ids.tolist(), area.tolist()]
    if depth is not None:
        stats = _depth_statistics(depth.flatten(), pixel_segment, segment_ids.numel())
        columns += [stat.tolist() for stat in stats]

    segments_info = []
    for segment_id, segment_area, *depth_stats in zip(*columns, strict=True):
        category_id = segment_id // label_divisor
        info = {
            "id": segment_id,
            "category_id": category_id,
            "isthing": category_id in thing_ids,
            "area": segment_area,
        }
        if segment_id in center_of:
            info["center"] = center_of[segment_id]
        if depth_stats:
            count, mean, median = depth_stats
            info.update(depth_valid_pixels=count, depth_mean=mean, depth_median=median)
        segments_info.append(info)
    return panoptic, segments_info
