"""The deeplab2-normalised semantic loss (``LOSS_TYPE "deeplab2_hard_pixel_mining"``).

Oracle: deeplab2's ``compute_average_top_k_loss`` (``model/loss/base_loss.py``) as its rule
reads: per image, the round(p * pixels) largest pixel losses, their sum divided by how many of
them are not zero (0 when none: ``divide_no_nan``); the per-image values are averaged.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.modeling import build_model
from detectron2.projects.deeplab.loss import DeepLabCE
from torch.nn import functional as F

from panoptic_depthlab.modeling.semantic_loss import TopKNonZeroMeanCE
from tests.conftest import small_model_cfg

IGNORE = 255


def reference(logits, labels, weights, fraction) -> float:
    """The oracle above, in numpy, image by image."""
    pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none").numpy()
    if weights is not None:
        pixel = pixel * weights.numpy()
    values = []
    for image in pixel.reshape(pixel.shape[0], -1):
        kept = np.sort(image)[::-1][: int(np.round(fraction * image.size))]
        non_zero = int((kept != 0).sum())
        values.append(kept.sum() / non_zero if non_zero else 0.0)
    return float(np.mean(values))


def sparse_batch(seed: int, labelled: float):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 5, 16, 24, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 5, (2, 16, 24), generator=g)
    keep = torch.rand(2, 16, 24, generator=g) < labelled
    labels = torch.where(keep, labels, torch.full_like(labels, IGNORE))
    weights = torch.where(torch.rand(2, 16, 24, generator=g) < 0.3, 3.0, 1.0).double()
    return logits, labels, weights


@pytest.mark.parametrize("fraction", [0.2, 1.0])
@pytest.mark.parametrize("labelled", [0.05, 0.5, 1.0])
def test_matches_the_deeplab2_rule(fraction, labelled):
    logits, labels, weights = sparse_batch(int(labelled * 100 + fraction * 10), labelled)
    loss = TopKNonZeroMeanCE(IGNORE, fraction)(logits, labels, weights)
    assert loss.item() == pytest.approx(reference(logits, labels, weights, fraction), rel=1e-12)


def test_sparse_labels_average_over_the_labelled_pixels():
    # 5% labelled, top 20%: every labelled pixel is kept, the mean is over them alone
    logits, labels, weights = sparse_batch(0, 0.05)
    pixel = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none") * weights
    labelled = labels != IGNORE
    expected = np.mean([pixel[i][labelled[i]].mean().item() for i in range(2)])
    loss = TopKNonZeroMeanCE(IGNORE, 0.2)(logits, labels, weights)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # Detectron2's DeepLabCE divides by the kept pixels of the batch, ignored ones included
    detectron2 = DeepLabCE(IGNORE, 0.2)(logits, labels, weights)
    assert detectron2.item() < 0.3 * loss.item()


def test_an_image_without_labels_counts_zero():
    logits, labels, weights = sparse_batch(1, 0.5)
    labels[1] = IGNORE
    loss = TopKNonZeroMeanCE(IGNORE, 0.2)(logits, labels, weights)
    alone = TopKNonZeroMeanCE(IGNORE, 0.2)(logits[:1], labels[:1], weights[:1])
    assert loss.item() == pytest.approx(alone.item() / 2, rel=1e-12)


def test_dense_labels_of_one_image_equal_detectron2s_loss():
    # where the kept count is whole (Detectron2 truncates p * pixels, deeplab2 rounds it)
    logits, labels, _ = sparse_batch(2, 1.0)
    ours = TopKNonZeroMeanCE(IGNORE, 0.25)(logits[:1], labels[:1])
    theirs = DeepLabCE(IGNORE, 0.25)(logits[:1], labels[:1])
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-12)


def test_the_model_uses_it_when_configured():
    cfg = small_model_cfg("synthetic_cityscapes_dvps_train")
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "deeplab2_hard_pixel_mining"
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TOP_K = 0.2
    model = build_model(cfg)
    assert isinstance(model.sem_seg_head.loss, TopKNonZeroMeanCE)
    assert model.sem_seg_head.loss.top_k_percent_pixels == 0.2
    cfg.MODEL.SEM_SEG_HEAD.LOSS_TYPE = "hard_pixel_mining"
    assert isinstance(build_model(cfg).sem_seg_head.loss, DeepLabCE)
