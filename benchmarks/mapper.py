"""Per-sample time of DVPSDatasetMapper against Detectron2's Panoptic-DeepLab mapper.

Two measurements in one run, both on 1024x2048 synthetic frames with a 512x1024 crop, random
scale 0.5..2.0 and horizontal flip, each against Detectron2's mapper (PanopticDeeplabDatasetMapper
with its PanopticDeepLabTargetGenerator), which reads one image and one COCO-style panoptic PNG
and produces single-frame targets. Samples alternate between the two mappers so that machine
noise hits both alike.

* Frame pairs (issue #3): Cityscapes-DVPS frames; ours reads frames t and t+1, both panoptic
  maps and the depth map, and produces the same targets plus depth and next-frame offsets;
  Detectron2's reads COCO-style panoptic PNGs made from the same labels. Goal: ratio <= 2.0.
* Cityscapes with disparity: the plain Cityscapes layout (``register_cityscapes_depth``), whose
  records both mappers read as they are; ours in single-frame mode reads the image, decodes the
  COCO panoptic PNG and converts the disparity PNG to depth, and produces the same targets plus
  depth. Goal: ratio <= 1.2.

    .venv/bin/python benchmarks/mapper.py [--samples 40]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import Any

import cv2
import numpy as np
from detectron2.config import CfgNode, get_cfg
from detectron2.data import DatasetCatalog
from detectron2.data import transforms as T
from detectron2.projects.panoptic_deeplab import PanopticDeeplabDatasetMapper
from detectron2.projects.panoptic_deeplab.target_generator import PanopticDeepLabTargetGenerator

from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import DVPSDatasetMapper, dvps_metadata, register_dvps_dataset
from panoptic_depthlab.data.datasets import register_cityscapes_depth
from panoptic_depthlab.data.datasets.cityscapes_depth import cityscapes_depth_metadata
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


def base_config() -> CfgNode:
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.INPUT.FORMAT = "RGB"
    cfg.INPUT.CROP.SIZE = CROP
    return cfg


def detectron2_mapper(cfg: CfgNode, meta: Mapping[str, Any]) -> PanopticDeeplabDatasetMapper:
    """Detectron2's Panoptic-DeepLab mapper with our scale range, crop and flip."""
    return PanopticDeeplabDatasetMapper(
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


def alternate(
    ours: Callable[[dict], dict],
    theirs: Callable[[dict], dict],
    ours_records: list[dict],
    theirs_records: list[dict],
    samples: int,
) -> tuple[float, float]:
    """Mean ms/sample of both mappers, one warm-up each, then samples taken in turns."""
    np.random.seed(0)
    ours(ours_records[0]), theirs(dict(theirs_records[0]))  # warm up
    t_ours, t_theirs = [], []
    for i in range(samples):
        k = i % len(ours_records)
        start = time.perf_counter()
        ours(ours_records[k])
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs(dict(theirs_records[k]))
        t_theirs.append(time.perf_counter() - start)
    return 1000 * float(np.mean(t_ours)), 1000 * float(np.mean(t_theirs))


def frame_pairs(root: str, samples: int) -> tuple[float, float]:
    """Cityscapes-DVPS frame pairs (ours) against single frames (Detectron2's)."""
    generate_synthetic_dvps(root, FORMAT, "train", 1, 4, HEIGHT, WIDTH, seed=0)
    register_dvps_dataset("bench_mapper_train", root, "train", FORMAT)
    records = [r for r in DatasetCatalog.get("bench_mapper_train") if r["next_frame"]]
    cfg = base_config()
    cfg.DATASETS.TRAIN = ("bench_mapper_train",)
    ours = DVPSDatasetMapper(cfg, is_train=True)
    theirs = detectron2_mapper(cfg, dvps_metadata(FORMAT))
    coco_records = [coco_panoptic_record(r, root) for r in records]
    return alternate(ours, theirs, records, coco_records, samples)


def cityscapes_disparity(root: str, samples: int) -> tuple[float, float]:
    """Plain Cityscapes records with disparity, single frames, read by both mappers."""
    generate_synthetic_dvps(root, "cityscapes", "train", 1, 4, HEIGHT, WIDTH, seed=0)
    register_cityscapes_depth("bench_mapper_cityscapes_train", root, "train")
    records = DatasetCatalog.get("bench_mapper_cityscapes_train")
    cfg = base_config()
    cfg.DATASETS.TRAIN = ("bench_mapper_cityscapes_train",)
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED = False
    ours = DVPSDatasetMapper(cfg, is_train=True)
    theirs = detectron2_mapper(cfg, cityscapes_depth_metadata())
    return alternate(ours, theirs, records, records, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="samples per mapper and part")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as root:
        pairs_root, cityscapes_root = os.path.join(root, "dvps"), os.path.join(root, "cityscapes")
        ours_cs_ms, theirs_cs_ms = cityscapes_disparity(cityscapes_root, args.samples)
        ours_ms, theirs_ms = frame_pairs(pairs_root, args.samples)

    print(f"DVPSDatasetMapper, Cityscapes (one frame + disparity): {ours_cs_ms:.1f} ms/sample")
    print(f"Detectron2 PanopticDeeplabDatasetMapper (same images):  {theirs_cs_ms:.1f} ms/sample")
    print(f"RESULT mapper_cityscapes_disparity ratio={ours_cs_ms / theirs_cs_ms:.3f} goal<=1.2")
    print(f"DVPSDatasetMapper (frames t, t+1, depth, next-frame targets): {ours_ms:.1f} ms/sample")
    print(
        f"Detectron2 PanopticDeeplabDatasetMapper (one frame):          {theirs_ms:.1f} ms/sample"
    )
    print(f"RESULT mapper ratio={ours_ms / theirs_ms:.3f} goal<=2.0")


if __name__ == "__main__":
    main()
