"""Exact values of the depth losses and of the uncertainty weighting on hand-built examples."""

from __future__ import annotations

import math

import pytest
import torch

from panoptic_depthlab.modeling.losses import (
    UncertaintyWeighting,
    image_smoothness_loss,
    l1_depth_loss,
    panoptic_edge_loss,
    panoptic_smoothness_loss,
    silog_rel_loss,
)

IGNORE = 255
ROAD, CAR = 1, 2  # a stuff class and a thing class


def depth_batch(pred: list, gt: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(pred leaf requiring grad, gt, valid) as (N, 1, H, W) float64 from nested (N, H, W)."""
    pred_t = torch.tensor(pred, dtype=torch.float64).unsqueeze(1).requires_grad_()
    gt_t = torch.tensor(gt, dtype=torch.float64).unsqueeze(1)
    return pred_t, gt_t, gt_t > 0


def offsets(shape: tuple[int, int], instances: list[tuple[list, tuple[int, int]]]) -> tuple:
    """(offset (1, 2, H, W), offset_weights (1, 1, H, W)) of instances (pixels, (y, x) center)."""
    offset = torch.zeros(1, 2, *shape, dtype=torch.float64)
    weights = torch.zeros(1, 1, *shape, dtype=torch.float64)
    for pixels, (cy, cx) in instances:
        for y, x in pixels:
            offset[0, :, y, x] = torch.tensor([cy - y, cx - x], dtype=torch.float64)
            weights[0, 0, y, x] = 1
    return offset, weights


def depth_from_inverse(inverse: list) -> torch.Tensor:
    """(1, 1, H, W) float64 depth leaf requiring grad, from nested (H, W) inverse depth."""
    return (1 / torch.tensor(inverse, dtype=torch.float64))[None, None].requires_grad_()


# --- silog_rel and l1 ----------------------------------------------------------------------------

# Two images, three valid pixels; the last pixel of image 0 has no ground truth.
PRED = [[[1.0, 7.0]], [[2.0, 2.0]]]
GT = [[[2.0, 0.0]], [[4.0, 1.0]]]


def test_silog_rel_hand_computed_over_the_whole_batch():
    pred, gt, valid = depth_batch(PRED, GT)
    # e = log(gt / pred) = (ln 2, ln 2, -ln 2); relative errors (gt - pred) / gt = (1/2, 1/2, -1).
    ln2 = math.log(2)
    variance = ln2**2 - (ln2 / 3) ** 2
    expected = variance + math.sqrt((0.25 + 0.25 + 1) / 3)
    assert silog_rel_loss(pred, gt, valid).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("loss_fn", [silog_rel_loss, l1_depth_loss])
def test_prediction_without_ground_truth_does_not_matter(loss_fn):
    losses = []
    for invalid_pred in (1e-9, 1e9):
        pred, gt, valid = depth_batch([[[1.0, invalid_pred]], [[2.0, 2.0]]], GT)
        loss = loss_fn(pred, gt, valid)
        loss.backward()
        assert pred.grad[0, 0, 0, 1] == 0
        losses.append(loss.item())
    assert losses[0] == losses[1]


def test_l1_exact():
    pred, gt, valid = depth_batch(PRED, GT)
    assert l1_depth_loss(pred, gt, valid).item() == pytest.approx((1 + 2 + 1) / 3, rel=1e-12)


@pytest.mark.parametrize("loss_fn", [silog_rel_loss, l1_depth_loss])
def test_perfect_prediction_is_zero_with_finite_gradient(loss_fn):
    pred, gt, valid = depth_batch([[[2.0, 3.0]], [[4.0, 1.0]]], GT)
    loss = loss_fn(pred, gt, valid)
    loss.backward()
    assert loss.item() == 0
    assert torch.isfinite(pred.grad).all()


def test_silog_rel_prediction_near_zero_is_finite():
    pred, gt, valid = depth_batch([[[0.0, 1.0]], [[2.0, 2.0]]], GT)
    loss = silog_rel_loss(pred, gt, valid)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


# --- empty masks ---------------------------------------------------------------------------------


def _depth_loss_empty(loss_fn):
    pred, gt, _ = depth_batch(PRED, GT)
    return pred, loss_fn(pred, gt, torch.zeros_like(gt, dtype=torch.bool))


def _panoptic_loss_unlabelled(loss_fn):
    pred = depth_from_inverse([[1.0, 2.0, 4.0], [0.5, 1.0, 2.0]])
    sem_seg = torch.full((1, 2, 3), IGNORE)
    offset, weights = offsets((2, 3), [([(0, 0), (0, 1)], (0, 0))])
    return pred, loss_fn(pred, sem_seg, offset, weights, IGNORE)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _depth_loss_empty(silog_rel_loss),
        lambda: _depth_loss_empty(l1_depth_loss),
        lambda: _panoptic_loss_unlabelled(panoptic_smoothness_loss),
        lambda: _panoptic_loss_unlabelled(panoptic_edge_loss),
    ],
    ids=["silog_rel", "l1", "panoptic_smoothness", "panoptic_edge"],
)
def test_empty_mask_gives_zero_connected_to_the_graph(make):
    pred, loss = make()
    assert loss.item() == 0
    loss.backward()
    assert pred.grad is not None
    assert torch.equal(pred.grad, torch.zeros_like(pred))


# --- panoptic-guided losses ----------------------------------------------------------------------

# 3 x 4 frame: road (stuff), two touching cars A and B, unlabelled bottom right.
#   sem_seg             instances             inverse depth (mean 1, so dd = inverse depth diff)
#   road road car  car  .  .  A  A            0.5  1    2    4
#   road car  car  ign  .  B  B  .            0.5  1    0.5  0.5
#   road ign  ign  ign  .  .  .  .            1    0.25 0.25 0.5
SEM_SEG = torch.tensor(
    [
        [[ROAD, ROAD, CAR, CAR], [ROAD, CAR, CAR, IGNORE], [ROAD, IGNORE, IGNORE, IGNORE]],
    ]
)
CARS = [([(0, 2), (0, 3)], (0, 2)), ([(1, 1), (1, 2)], (1, 2))]
INVERSE = [[0.5, 1.0, 2.0, 4.0], [0.5, 1.0, 0.5, 0.5], [1.0, 0.25, 0.25, 0.5]]
# Counted pairs (both labelled): 5 along x, 4 along y.
# Not edges, |dd|: road-road 0.5 (0,0)-(0,1), 0 (0,0)-(1,0), 0.5 (1,0)-(2,0); A-A 2; B-B 0.5.
# Edges, |dd|: road-car 1 (0,1)-(0,2), 0.5 (1,0)-(1,1), 0 (0,1)-(1,1); car A - car B 1.5.
SMOOTHNESS = (0.5 + 0 + 0.5 + 2 + 0.5) / 9
EDGE = (math.exp(-1) + math.exp(-0.5) + math.exp(0) + math.exp(-1.5)) / 9


def panoptic_losses(inverse: list, sem_seg: torch.Tensor, instances: list) -> tuple[float, float]:
    pred = depth_from_inverse(inverse)
    offset, weights = offsets(tuple(sem_seg.shape[1:]), instances)
    args = (pred, sem_seg, offset, weights, IGNORE)
    return panoptic_smoothness_loss(*args).item(), panoptic_edge_loss(*args).item()


def test_panoptic_losses_hand_computed():
    smoothness, edge = panoptic_losses(INVERSE, SEM_SEG, CARS)
    assert smoothness == pytest.approx(SMOOTHNESS, rel=1e-12)
    assert edge == pytest.approx(EDGE, rel=1e-12)


def test_panoptic_losses_invariant_to_depth_scale():
    scaled = [[3 * v for v in row] for row in INVERSE]
    smoothness, edge = panoptic_losses(scaled, SEM_SEG, CARS)
    assert smoothness == pytest.approx(SMOOTHNESS, rel=1e-12)
    assert edge == pytest.approx(EDGE, rel=1e-12)


def test_pairs_with_an_unlabelled_pixel_do_not_count():
    # (2, 3) has only unlabelled neighbours; (2, 1) touches labelled (1, 1) and (2, 0). Moving
    # 0.25 of inverse depth between them keeps each image's mean, hence the normalization.
    inverse = [row[:] for row in INVERSE]
    inverse[2][3], inverse[2][1] = 0.25, 0.5
    assert panoptic_losses(inverse, SEM_SEG, CARS) == panoptic_losses(INVERSE, SEM_SEG, CARS)


@pytest.mark.parametrize(
    "sem_seg, instances, is_edge",
    [
        ([[ROAD, ROAD]], [], False),  # same stuff class
        ([[ROAD, CAR]], [([(0, 1)], (0, 1))], True),  # different classes
        ([[CAR, CAR]], [([(0, 0)], (0, 0)), ([(0, 1)], (0, 1))], True),  # two instances
        ([[CAR, CAR]], [([(0, 0), (0, 1)], (0, 0))], False),  # one instance
        ([[CAR, CAR]], [([(0, 0)], (0, 0))], False),  # an instance next to a crowd pixel
    ],
)
def test_panoptic_edge_definition(sem_seg, instances, is_edge):
    # One pair, |dd| = 2 / 1.5 - 1 / 1.5.
    smoothness, edge = panoptic_losses([[1.0, 2.0]], torch.tensor([sem_seg]), instances)
    abs_dd = 1 / 1.5
    assert smoothness == pytest.approx(0 if is_edge else abs_dd, rel=1e-12)
    assert edge == pytest.approx(math.exp(-abs_dd) if is_edge else 0, rel=1e-12)


# --- image smoothness ----------------------------------------------------------------------------


def test_image_smoothness_hand_computed():
    # Inverse depth [[1, 2], [0.5, 0.5]] (mean 1); black, white / blue 153, white pixels.
    pred = depth_from_inverse([[1.0, 2.0], [0.5, 0.5]])
    black, white, blue = [0.0, 0.0, 0.0], [255.0] * 3, [0.0, 0.0, 153.0]
    image = torch.tensor([[black, white], [blue, white]], dtype=torch.float64)
    image = image.permute(2, 0, 1)[None]
    loss = image_smoothness_loss(pred, image)
    # Pairs (|dd|, |dI|): x: (1, 1), (0, 1); y: (0.5, 153 / 3 / 255 = 0.2), (1.5, 0).
    expected = (math.exp(-1) + 0 + 0.5 * math.exp(-0.2) + 1.5) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    loss.backward()
    assert torch.isfinite(pred.grad).all()


# --- uncertainty weighting -----------------------------------------------------------------------


def test_uncertainty_weighting_exact_value_and_gradients():
    weighting = UncertaintyWeighting(["loss_sem_seg", "loss_depth"])
    with torch.no_grad():
        weighting.log_variances.copy_(torch.tensor([0.5, -0.25]))
    other = torch.tensor(7.0)
    losses = {
        "loss_sem_seg": torch.tensor(2.0),
        "loss_center": other,
        "loss_depth": torch.tensor(3.0),
    }
    out = weighting(losses)
    assert list(out) == ["loss_sem_seg", "loss_center", "loss_depth"]
    assert out["loss_sem_seg"].item() == pytest.approx(math.exp(-0.5) * 2 + 0.5, rel=1e-6)
    assert out["loss_depth"].item() == pytest.approx(math.exp(0.25) * 3 - 0.25, rel=1e-6)
    assert out["loss_center"] is other
    sum(out.values()).backward()
    # d/ds (exp(-s) * L + s) = 1 - exp(-s) * L.
    expected_grad = torch.tensor([1 - math.exp(-0.5) * 2, 1 - math.exp(0.25) * 3])
    torch.testing.assert_close(weighting.log_variances.grad, expected_grad)


def test_uncertainty_weighting_starts_at_the_plain_loss():
    out = UncertaintyWeighting(["loss_depth"])({"loss_depth": torch.tensor(3.0)})
    assert out["loss_depth"].item() == 3.0


def test_uncertainty_weighting_missing_task_raises():
    weighting = UncertaintyWeighting(["loss_sem_seg", "loss_depth", "loss_center"])
    with pytest.raises(ValueError, match=r"\['loss_depth', 'loss_center'\]"):
        weighting({"loss_sem_seg": torch.tensor(1.0)})


@pytest.mark.parametrize("names", [[], ["loss_depth", "loss_depth"]])
def test_uncertainty_weighting_rejects_bad_task_names(names):
    with pytest.raises(ValueError):
        UncertaintyWeighting(names)
