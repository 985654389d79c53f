"""CPU overfit check: a small PanopticDepthLab learns one synthetic frame pair to PQ > 90
(about 1.5 minutes on 2 cores)."""

from __future__ import annotations

import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.data import DVPSDatasetMapper, dvps_metadata, register_dvps_dataset
from panoptic_depthlab.data.annotations import read_panoptic
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from tests.conftest import small_model_cfg

FORMAT = "cityscapes_dvps"
HEIGHT, WIDTH, ITERATIONS = 256, 512, 230
# Issue #15 asks for PQ > 90, suggesting 300 iterations at 128x256. There PQ does not settle: 89.3,
# 90.2 and 82.3 after 300, 400 and 500 iterations (82.5 after 300 with poly decay), because
# segments below the output stride (a 10-pixel person, a 19-pixel rider, a 50-pixel traffic
# light) come and go. At 256x512 it rises steadily: 90.1, 91.5 and 92.4 after 170, 200 and 230
# iterations (93 s on a 2-core Xeon), so the bound holds with a margin.
MIN_PQ = 90


def panoptic_quality(pred: np.ndarray, gt: np.ndarray, void: int, divisor: int) -> float:
    """PQ (percent) of one frame: per class, segments match at IoU > 0.5; pixels of ground-truth
    ``void`` are left out of every segment; classes seen in either map are averaged."""
    valid = gt != void
    pred = np.where(valid, pred, -1)
    quality = []
    for cls in np.union1d(np.unique(gt[valid]) // divisor, np.unique(pred[pred >= 0]) // divisor):
        gts = [g for g in np.unique(gt[valid]) if g // divisor == cls]
        preds = [p for p in np.unique(pred[pred >= 0]) if p // divisor == cls]
        ious = [
            ((gt == g) & (pred == p)).sum() / ((gt == g) | (pred == p)).sum()
            for g in gts
            for p in preds
        ]
        matched = [iou for iou in ious if iou > 0.5]  # IoU > 0.5: at most one match per segment
        tp = len(matched)
        denominator = tp + (len(preds) - tp) / 2 + (len(gts) - tp) / 2
        quality.append(sum(matched) / denominator)
    return 100 * float(np.mean(quality))


def test_small_model_overfits_one_pair(tmp_path):
    generate_synthetic_dvps(str(tmp_path), FORMAT, "train", 2, 2, HEIGHT, WIDTH, seed=0)
    register_dvps_dataset("test_overfit", str(tmp_path), "train", FORMAT)
    cfg = small_model_cfg("test_overfit", crop=(HEIGHT, WIDTH))
    cfg.INPUT.MIN_SCALE = cfg.INPUT.MAX_SCALE = 1.0  # the pair itself, no augmentation
    cfg.INPUT.CROP.ENABLED = False
    cfg.INPUT.RANDOM_FLIP = "none"
    # Centers scaled to the small image: Cityscapes' sigma 8 and NMS window 7 merge the centers
    # of a rider and its bicycle at 128x256.
    cfg.INPUT.GAUSSIAN_SIGMA = 3
    cfg.MODEL.PANOPTIC_DEEPLAB.NMS_KERNEL = 3
    record = next(r for r in DatasetCatalog.get("test_overfit") if r["sequence_id"] == 1)
    sample = DVPSDatasetMapper(cfg, is_train=True)(record)

    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    totals = []
    for _ in range(ITERATIONS):
        total = sum(model([sample]).values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert totals[-1] <= 0.2 * totals[0], (totals[0], totals[-1])

    model.eval()
    with torch.no_grad():
        (output,) = model([{"image": sample["image"]}])
    meta = dvps_metadata(FORMAT)
    gt = read_panoptic(record, meta)
    pred = output["panoptic_seg"][0].numpy()
    pq = panoptic_quality(
        pred, gt, meta["ignore_label"] * meta["label_divisor"], meta["label_divisor"]
    )
    print(f"overfit PQ {pq:.2f}")
    assert pq > MIN_PQ, pq
