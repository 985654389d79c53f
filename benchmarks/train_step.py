"""Training-step time of PanopticDepthLab against Detectron2's PanopticDeepLab, same crop/batch.

Architecture of configs/Base-PanopticDepthLab.yaml (ResNet-52 DeepLab backbone, output stride
16, Detectron2's Panoptic-DeepLab heads) with BatchNorm instead of SyncBN, on synthetic
Cityscapes-DVPS frames mapped by DVPSDatasetMapper. One step = forward, backward, Adam step.
The models are timed alternately in one run:

* reference: Detectron2's ``PanopticDeepLab`` (one frame per sample);
* video: ``PanopticDepthLab`` with depth and next-frame branches (backbone on two frames),
  goal <= 2.1x the reference;
* single-frame: ``PanopticDepthLab`` without the next-frame branch, goal <= 1.25x.

    .venv/bin/python benchmarks/train_step.py [--crop 256 512] [--batch 2] [--steps 3]

The last line is the video model's RESULT; the single-frame RESULT comes just before it.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model

import panoptic_depthlab  # noqa: F401  (registers the meta-architecture)
from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import DVPSDatasetMapper, register_dvps_dataset
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps

CONFIG = "configs/Base-PanopticDepthLab.yaml"


def make_cfg(meta_arch: str, next_frame: bool, crop: tuple[int, int]):
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.META_ARCHITECTURE = meta_arch
    cfg.MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED = next_frame
    cfg.MODEL.DEVICE = "cpu"
    for node in (cfg.MODEL.RESNETS, cfg.MODEL.SEM_SEG_HEAD, cfg.MODEL.INS_EMBED_HEAD):
        node.NORM = "BN"
    cfg.INPUT.CROP.SIZE = crop
    cfg.DATASETS.TRAIN = ("bench_train_step",)
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crop", type=int, nargs=2, default=[256, 512], help="H W")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model")
    args = parser.parse_args()
    crop = tuple(args.crop)

    with tempfile.TemporaryDirectory() as root:
        generate_synthetic_dvps(root, "cityscapes_dvps", "train", 1, args.batch + 1, *crop, seed=0)
        register_dvps_dataset("bench_train_step", root, "train", "cityscapes_dvps")
        mapper = DVPSDatasetMapper(make_cfg("PanopticDepthLab", True, crop), is_train=True)
        np.random.seed(0)
        records = [r for r in DatasetCatalog.get("bench_train_step") if r["next_frame"]]
        batch = [mapper(r) for r in records[: args.batch]]

    models = {
        "reference": make_cfg("PanopticDeepLab", False, crop),
        "video": make_cfg("PanopticDepthLab", True, crop),
        "single-frame": make_cfg("PanopticDepthLab", False, crop),
    }
    steps = {}
    for name, cfg in models.items():
        torch.manual_seed(0)
        model = build_model(cfg)
        model.train()
        steps[name] = (model, torch.optim.Adam(model.parameters(), lr=1e-4))
    times = {name: [] for name in steps}

    def step(name: str) -> float:
        model, optimizer = steps[name]
        start = time.perf_counter()
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        return time.perf_counter() - start

    for name in steps:  # warm-up
        step(name)
    for _ in range(args.steps):
        for name in steps:
            times[name].append(step(name))
    mean = {name: float(np.mean(t)) for name, t in times.items()}
    for name, value in mean.items():
        print(f"{name:>12}: {value:.3f} s/step (batch {args.batch}, crop {crop[0]}x{crop[1]})")
    single, video = mean["single-frame"] / mean["reference"], mean["video"] / mean["reference"]
    print(f"RESULT train_step_single_frame ratio={single:.3f} goal<=1.25")
    print(f"RESULT train_step ratio={video:.3f} goal<=2.1")


if __name__ == "__main__":
    main()
