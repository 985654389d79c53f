"""Depth losses and learned uncertainty weighting of task losses.

All functions take batched tensors, are pure torch (CPU or GPU) and differentiable. Every loss
returns a finite scalar: exactly 0, still connected to the graph of ``pred`` (so that every
parameter gets a zero gradient), when nothing is counted, and finite gradients when the
prediction equals the ground truth.

Shapes: ``pred`` and ``gt`` (N, 1, H, W) depth in meters (``gt`` = 0 where there is no ground
truth), ``valid`` (N, 1, H, W) bool, true only where ``gt > 0``.

* :func:`silog_rel_loss` (ViP-DeepLab) and :func:`l1_depth_loss` (Panoptic-DepthLab) compare
  ``pred`` with ``gt`` over the valid pixels of the whole batch.
* :func:`panoptic_smoothness_loss`, :func:`panoptic_edge_loss` (MonoDVPS) and
  :func:`image_smoothness_loss` (Monodepth) act on the differences ``dd`` of mean-normalized
  inverse depth between neighbouring pixels: pairs (y, x)-(y, x + 1) and (y, x)-(y + 1, x), both
  directions pooled, over the whole batch.
* :class:`UncertaintyWeighting` (Kendall, Gal & Cipolla 2018) weights named task losses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "MIN_DEPTH",
    "UncertaintyWeighting",
    "image_smoothness_loss",
    "l1_depth_loss",
    "panoptic_edge_loss",
    "panoptic_smoothness_loss",
    "silog_rel_loss",
]

# Meters. Predictions are clamped to it before log or inversion, so that a prediction of about 0
# gives neither -inf nor inf (its gradient is then 0).
MIN_DEPTH = 1e-3


def _safe_sqrt(x: Tensor) -> Tensor:
    """``sqrt(x)`` of ``x >= 0`` whose gradient is 0, not inf, at ``x = 0``.

    The value is exact (no epsilon); the inner ``where`` keeps 0 out of sqrt's backward.
    """
    positive = x > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, x, 1.0)), 0.0)


def silog_rel_loss(pred: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """ViP-DeepLab's depth loss: scale-invariant log error plus root relative squared error.

    Over the n valid pixels of the whole batch, with ``e = log(gt) - log(pred)``::

        loss = (mean(e^2) - mean(e)^2) + sqrt(mean(((gt - pred) / gt)^2))

    ``pred`` is clamped to :data:`MIN_DEPTH` before the log. The square root's gradient is 0
    where its argument is 0 (``pred == gt`` at every valid pixel); its value is exact.

    Args:
        pred: (N, 1, H, W) predicted depth, meters, > 0.
        gt: (N, 1, H, W) ground-truth depth, meters, 0 where unknown.
        valid: (N, 1, H, W) bool, true only where ``gt > 0``.

    Returns:
        Scalar, unitless (log-depth squared plus a ratio); 0 if no pixel is valid.
    """
    n = valid.sum().clamp(min=1)
    gt_safe = torch.where(valid, gt, 1.0)
    e = torch.where(valid, torch.log(gt_safe) - torch.log(pred.clamp(min=MIN_DEPTH)), 0.0)
    relative = torch.where(valid, (gt_safe - pred) / gt_safe, 0.0)
    variance = (e**2).sum() / n - (e.sum() / n) ** 2
    return variance + _safe_sqrt((relative**2).sum() / n)


def l1_depth_loss(pred: Tensor, gt: Tensor, valid: Tensor) -> Tensor:
    """Panoptic-DepthLab's depth loss: mean ``|gt - pred|`` over the valid pixels of the batch.

    Args:
        pred: (N, 1, H, W) predicted depth, meters.
        gt: (N, 1, H, W) ground-truth depth, meters, 0 where unknown.
        valid: (N, 1, H, W) bool, true only where ``gt > 0``.

    Returns:
        Scalar, meters; 0 if no pixel is valid.
    """
    return torch.where(valid, (gt - pred).abs(), 0.0).sum() / valid.sum().clamp(min=1)


def _pairs(x: Tensor) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The two ends of each pair of neighbours of ``x`` (..., H, W), per direction.

    Returns:
        ``((a, b), (a, b))``: along x, (y, x) and (y, x + 1), each (..., H, W - 1); along y,
        (y, x) and (y + 1, x), each (..., H - 1, W).
    """
    return (x[..., :, :-1], x[..., :, 1:]), (x[..., :-1, :], x[..., 1:, :])


def _inverse_depth_differences(pred: Tensor) -> tuple[Tensor, Tensor]:
    """``|dd|`` of mean-normalized inverse depth, along x (N, 1, H, W - 1) and y (N, 1, H - 1, W).

    Each image's inverse depth ``1 / pred`` (``pred`` clamped to :data:`MIN_DEPTH`) is divided
    by its mean over all pixels of that image, so the differences are unitless and invariant to
    the scale of ``pred``.
    """
    inverse = 1.0 / pred.clamp(min=MIN_DEPTH)
    normalized = inverse / inverse.mean(dim=(1, 2, 3), keepdim=True)
    along_x, along_y = ((b - a).abs() for a, b in _pairs(normalized))
    return along_x, along_y


def _mean_over_pairs(terms: Iterable[Tensor], counted: Iterable[Tensor]) -> Tensor:
    """Sum of the ``terms`` where ``counted`` over the number counted; 0 if none.

    Args:
        terms: per direction, a float tensor of per-pair terms.
        counted: per direction, a bool tensor of the same shape.
    """
    total, count = 0, 0
    for term, keep in zip(terms, counted, strict=True):
        total = total + torch.where(keep, term, 0.0).sum()
        count = count + keep.sum()
    return total / count.clamp(min=1)


def _panoptic_pairs(
    pred: Tensor, sem_seg: Tensor, offset: Tensor, offset_weights: Tensor, ignore_value: int
) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per direction (x, then y): ``|dd|``, panoptic edge and counted mask of each pair.

    A pair counts where both pixels are labelled (``sem_seg != ignore_value``). It is a panoptic
    edge (1.0, else 0.0) where the two classes differ, or where both pixels are instance pixels
    (``offset_weights > 0``) whose centers, pixel position + offset, differ (exact float
    comparison: centers are integer pixel positions).

    Args: see :func:`panoptic_smoothness_loss`.

    Returns:
        Along x, three (N, 1, H, W - 1) tensors; along y, three (N, 1, H - 1, W) tensors:
        ``|dd|`` float, edge float (0 or 1), counted bool.
    """
    _, _, h, w = offset.shape
    ys = torch.arange(h, device=offset.device, dtype=offset.dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, device=offset.device, dtype=offset.dtype).view(1, w).expand(h, w)
    center = offset + torch.stack([ys, xs])
    classes = sem_seg.unsqueeze(1)
    labelled = classes != ignore_value
    instance = offset_weights > 0
    result = []
    for abs_dd, (class_a, class_b), (lab_a, lab_b), (inst_a, inst_b), (center_a, center_b) in zip(
        _inverse_depth_differences(pred),
        _pairs(classes),
        _pairs(labelled),
        _pairs(instance),
        _pairs(center),
        strict=True,
    ):
        other_center = (center_a != center_b).any(dim=1, keepdim=True)
        edge = (class_a != class_b) | (inst_a & inst_b & other_center)
        result.append((abs_dd, edge.to(abs_dd.dtype), lab_a & lab_b))
    return result


def panoptic_smoothness_loss(
    pred: Tensor, sem_seg: Tensor, offset: Tensor, offset_weights: Tensor, ignore_value: int
) -> Tensor:
    """MonoDVPS panoptic-guided smoothness: mean ``|dd| * (1 - edge)`` over counted pairs.

    Depth should be smooth inside a panoptic segment. ``dd`` is the difference of mean-normalized
    inverse depth between neighbours; a pair counts only where both pixels are labelled, and
    ``edge`` marks a change of class or of instance (see :func:`panoptic_edge_loss`).

    Args:
        pred: (N, 1, H, W) predicted depth, meters, > 0.
        sem_seg: (N, H, W) int64 class per pixel, ``ignore_value`` where unlabelled.
        offset: (N, 2, H, W) float, (y, x) pixels from each instance pixel to its instance's
            center, as in Panoptic-DeepLab's targets (any value elsewhere).
        offset_weights: (N, 1, H, W) float, 1 on non-crowd thing-instance pixels, 0 elsewhere.
        ignore_value: class of unlabelled pixels.

    Returns:
        Scalar, unitless; 0 if no pair counts.
    """
    pairs = _panoptic_pairs(pred, sem_seg, offset, offset_weights, ignore_value)
    return _mean_over_pairs(
        (abs_dd * (1 - edge) for abs_dd, edge, _ in pairs), (keep for _, _, keep in pairs)
    )


def panoptic_edge_loss(
    pred: Tensor, sem_seg: Tensor, offset: Tensor, offset_weights: Tensor, ignore_value: int
) -> Tensor:
    """MonoDVPS panoptic edge loss: mean ``edge * exp(-|dd|)`` over counted pairs.

    Depth should change across panoptic edges. A pair of labelled neighbours is an edge where
    their classes differ, or where both are instance pixels of different instances (different
    centers), so two touching instances of one class are separated while two pixels of the same
    stuff class are not.

    Args: see :func:`panoptic_smoothness_loss`.

    Returns:
        Scalar, unitless; 0 if no pair counts.
    """
    pairs = _panoptic_pairs(pred, sem_seg, offset, offset_weights, ignore_value)
    return _mean_over_pairs(
        (edge * torch.exp(-abs_dd) for abs_dd, edge, _ in pairs), (keep for _, _, keep in pairs)
    )


def image_smoothness_loss(pred: Tensor, image: Tensor) -> Tensor:
    """Edge-aware smoothness guided by the image (Monodepth): mean ``|dd| * exp(-|dI|)``.

    Over all pairs of neighbours of the batch (no labels needed), with ``dd`` the difference of
    mean-normalized inverse depth and ``dI`` the channel mean of the absolute image difference,
    scaled to [0, 1].

    Args:
        pred: (N, 1, H, W) predicted depth, meters, > 0.
        image: (N, 3, H, W) float image, values in 0..255 (divided by 255 here).

    Returns:
        Scalar, unitless; 0 if the images have a single pixel.
    """
    image_diffs = ((b - a).abs().mean(dim=1, keepdim=True) for a, b in _pairs(image / 255))
    terms = [
        abs_dd * torch.exp(-d_image)
        for abs_dd, d_image in zip(_inverse_depth_differences(pred), image_diffs, strict=True)
    ]
    return _mean_over_pairs(terms, (torch.ones_like(term, dtype=torch.bool) for term in terms))


class UncertaintyWeighting(nn.Module):
    """Learned uncertainty weighting of task losses (Kendall, Gal & Cipolla, 2018).

    One learnable log-variance ``s_k`` (initially 0) per task; task loss ``L_k`` becomes
    ``exp(-s_k) * L_k + s_k``, the usual simplified form of ``L_k / (2 sigma_k^2) + log sigma_k``
    (with ``s_k = log sigma_k^2``, up to a factor 2). ``s_k`` is stored in
    ``log_variances[k]``, in the order of ``task_names``.
    """

    def __init__(self, task_names: Sequence[str]):
        """
        Args:
            task_names: names of the weighted losses (e.g. ``"loss_sem_seg"``), distinct, at least
                one.
        """
        super().__init__()
        if not task_names or len(set(task_names)) != len(task_names):
            raise ValueError(f"Expected at least one task name, all distinct; got {task_names}.")
        self.task_names = tuple(task_names)
        self.log_variances = nn.Parameter(torch.zeros(len(self.task_names)))

    def forward(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """Weight the task losses.

        Args:
            losses: scalar losses by name; must hold every task name. Other names pass through.

        Returns:
            The same names, in the same order: ``exp(-s_k) * L_k + s_k`` for task ``k``, the
            input loss otherwise.
        """
        missing = [name for name in self.task_names if name not in losses]
        if missing:
            raise ValueError(
                f"UncertaintyWeighting: task losses {missing} are missing from the losses "
                f"{sorted(losses)}."
            )
        index = {name: k for k, name in enumerate(self.task_names)}
        weighted = {}
        for name, loss in losses.items():
            if name in index:
                s = self.log_variances[index[name]]
                loss = torch.exp(-s) * loss + s
            weighted[name] = loss
        return weighted
