"""Per-sample time of DVPSDatasetMapper against Detectron2's Panoptic-DeepLab mapper.

Both map the same 1024x2048 synthetic Cityscapes-DVPS frames with a 512x1024 crop, random
scale 0.5..2.0 and horizontal flip. Detectron2's mapper (PanopticDeeplabDatasetMapper with its
PanopticDeepLabTargetGenerator) reads one image and one COCO-style panoptic PNG (made from the
same labels) and produces single-frame targets; ours reads frames t and t+1, both panoptic maps
and the depth map, and produces the same targets plus depth and next-frame offsets.
Samples alternate between the two mappers so that machine noise hits both alike.

    .venv/bin/python benchmarks/mapper.py [--samples 40]

Goal (issue #3): ratio = ours / Detectron2's <= 2.0.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.projects.panoptic_deeplab import PanopticDeeplabDatasetMapper
from detectron2.projects.panoptic_deeplab.target_generator import PanopticDeepLabTargetGenerator

from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import DVPSDatasetMapper, dvps_metadata, register_dvps_dataset
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

FORMAT = "cityscapes_dvps"
HEIGHT, WIDTH, CROP = 1024, 2048, (512, 1024)


def coco_panoptic_record(record: dict, out_dir: str) -> dict:
    """The same frame for Detectron2's mapper: RGB-encoded panoptic PNG + segments_info."""
    meta = dvps_metadata(FORMAT)
    div = meta["label_divisor"]
    pan = cv2.imread(record["panoptic_file_name"], cv2.IMREAD_UNCHANGED).astype(np.int64)
    ids = np.where(pan // div == meta["label_void_id"], 0, pan + 1)  # COCO: 0 = void
    rgb = np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)
    path = os.path.join(out_dir, record["image_id"] + "_panoptic.png")
    cv2.imwrite(path, rgb[..., ::-1])
    segments = []
    for i in np.unique(ids[ids > 0]):
        cls, inst = (int(i) - 1) // div, (int(i) - 1) % div
        crowd = cls in meta["thing_ids"] and inst == 0
        segments.append({"id": int(i), "category_id": cls, "iscrowd": int(crowd)})
    return {**record, "pan_seg_file_name": path, "segments_info": segments}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="samples per mapper")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        generate_synthetic_dvps(root, FORMAT, "train", 1, 4, HEIGHT, WIDTH, seed=0)
        register_dvps_dataset("bench_mapper_train", root, "train", FORMAT)
        records = [r for r in DatasetCatalog.get("bench_mapper_train") if r["next_frame"]]

        cfg = get_cfg()
        add_panoptic_depthlab_config(cfg)
        cfg.INPUT.FORMAT = "RGB"
        cfg.DATASETS.TRAIN = ("bench_mapper_train",)
        cfg.INPUT.CROP.SIZE = CROP
        ours = DVPSDatasetMapper(cfg, is_train=True)

        meta = dvps_metadata(FORMAT)
        theirs = PanopticDeeplabDatasetMapper(
            augmentations=[
                T.ResizeScale(cfg.INPUT.MIN_SCALE, cfg.INPUT.MAX_SCALE, HEIGHT, WIDTH),
                T.FixedSizeCrop(CROP, pad_value=128.0, seg_pad_value=0),
                T.RandomFlip(),
            ],
            image_format="RGB",
            panoptic_target_generator=PanopticDeepLabTargetGenerator(
                ignore_label=meta["ignore_label"],
                thing_ids=meta["thing_ids"],
                sigma=cfg.INPUT.GAUSSIAN_SIGMA,
                ignore_stuff_in_offset=True,
                small_instance_area=cfg.INPUT.SMALL_INSTANCE_AREA,
                small_instance_weight=cfg.INPUT.SMALL_INSTANCE_WEIGHT,
            ),
        )
        coco_records = [coco_panoptic_record(r, root) for r in records]

        np.random.seed(0)
        ours(records[0]), theirs(dict(coco_records[0]))  # warm up
        t_ours, t_theirs = [], []
        for i in range(args.samples):
            k = i % len(records)
            start = time.perf_counter()
            ours(records[k])
            t_ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            theirs(dict(coco_records[k]))
            t_theirs.append(time.perf_counter() - start)

    ours_ms, theirs_ms = 1000 * np.mean(t_ours), 1000 * np.mean(t_theirs)
    print(f"DVPSDatasetMapper (frames t, t+1, depth, next-frame targets): {ours_ms:.1f} ms/sample")
    print(
        f"Detectron2 PanopticDeeplabDatasetMapper (one frame):          {theirs_ms:.1f} ms/sample"
    )
    print(f"RESULT mapper ratio={ours_ms / theirs_ms:.3f} goal<=2.0")


if __name__ == "__main__":
    main()
