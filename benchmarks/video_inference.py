"""Cost of video inference: feature caching and next-frame stitching.

1. Per-frame time of ``PanopticDepthLab.inference_sequence`` (backbone once per frame, the
   next-frame branch on the cached features of each pair, post-processing, stitching) against
   single-frame inference (``model([frame])``) of the same model on the same frames:
   configs/vip_depth.yaml (R52-DC5, depthwise-separable heads, random weights) on a synthetic
   Cityscapes-DVPS sequence at 512x1024. Running the whole model twice per pair, as the
   reference implementation does, would cost about 2x. Goal: ratio <= 1.3.
2. Time of ``InstanceTracker.update`` (next-frame view + matching + relabelling, and the
   memory of ended tracks with the config's default ``MODEL.TRACKER``: 3-D positions of every
   instance, revivals) against the post-processing (``panoptic_depth_inference`` with depth
   statistics) of the same frame, at 1024x2048, on perfect network outputs made from a
   synthetic sequence's ground truth (the script prints the instances per frame, and the
   tracker's time without the memory). Goal: ratio <= 0.15 with the memory on.

    .venv/bin/python benchmarks/video_inference.py [--frames 6] [--rounds 3]

Both alternate their two contenders so that machine noise hits them alike; times are medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import cv2
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

import panoptic_depthlab  # noqa: F401 (registers the model and datasets)
from panoptic_depthlab.config import add_panoptic_depthlab_config
from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.data.annotations import read_depth, read_panoptic
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.data.target_generator import DVPSTargetGenerator
from panoptic_depthlab.modeling.meta_arch import tracker_settings_from_config
from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR
from panoptic_depthlab.runtime.post_processing import panoptic_depth_inference
from panoptic_depthlab.runtime.stitching import InstanceTracker

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_split(name: str, frames: int, height: int, width: int, directory: str) -> list:
    """Records of a registered synthetic Cityscapes-DVPS val sequence, in frame order."""
    generate_synthetic_dvps(directory, "cityscapes_dvps", "val", 1, frames, height, width, seed=1)
    register_dvps_dataset(name, directory, "val", "cityscapes_dvps")
    return sorted(DatasetCatalog.get(name), key=lambda r: r["frame_index"])


def network_ratio(records: list, rounds: int) -> tuple[float, float]:
    """(sequence, single-frame) median seconds per frame of configs/vip_depth.yaml."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(os.path.join(ROOT, "configs", "vip_depth.yaml"))
    cfg.MODEL.WEIGHTS = ""
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    frames = [
        {"image": torch.from_numpy(cv2.imread(r["file_name"])[..., ::-1].copy()).permute(2, 0, 1)}
        for r in records
    ]
    with torch.no_grad():
        model(frames[:1])  # warm-up
        sequence, single = [], []
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in model.inference_sequence(frames):
                pass
            sequence.append((time.perf_counter() - start) / len(frames))
            start = time.perf_counter()
            for frame in frames:
                model([frame])
            single.append((time.perf_counter() - start) / len(frames))
    return statistics.median(sequence), statistics.median(single)


def stitching_ratio(records: list, meta, rounds: int) -> tuple[float, float, float, int]:
    """(stitching with the memory, without it, post-processing) median seconds per frame, and
    instances per frame."""
    div = meta.label_divisor
    generator = DVPSTargetGenerator(
        thing_ids=meta.thing_ids, ignore_label=meta.ignore_label, label_divisor=div
    )
    params = dict(
        thing_ids=meta.thing_ids,
        label_divisor=div,
        stuff_area=2048,
        void_label=-1,
        threshold=0.1,
        nms_kernel=7,
        top_k=200,
    )
    panoptics = [read_panoptic(r, meta.as_dict()) for r in records]
    predictions = []
    for t, record in enumerate(records):
        targets = generator(panoptics[t], panoptics[t])
        next_offset = generator(panoptics[max(t - 1, 0)], panoptics[t])["next_offset"]
        classes = torch.from_numpy(panoptics[t] // div).long()
        classes[classes == meta.ignore_label] = 0
        depth = torch.from_numpy(read_depth(record, meta.as_dict())).float()
        predictions.append((classes[None], targets["center"][None], targets["offset"], depth))
        predictions[-1] += (next_offset,)
    defaults = get_cfg()
    add_panoptic_depthlab_config(defaults)
    settings = tracker_settings_from_config(defaults.MODEL.TRACKER, meta)
    assert settings.memory
    post, instances = [], []
    stitch: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        # as inference_sequence builds them: memory on (the default) and off, alternated
        trackers = {
            memory: InstanceTracker(TRACK_LABEL_DIVISOR, settings=settings if memory else None)
            for memory in (True, False)
        }
        for t, (sem, center, offset, depth, next_offset) in enumerate(predictions):
            start = time.perf_counter()
            panoptic, segments = panoptic_depth_inference(sem, center, offset, depth, **params)
            post.append(time.perf_counter() - start)
            for memory, tracker in trackers.items():
                start = time.perf_counter()
                tracker.update(panoptic, segments, next_offset if t > 0 else None)
                if t > 0:
                    stitch[memory].append(time.perf_counter() - start)
            instances.append(sum(s["isthing"] for s in segments))
    return (
        statistics.median(stitch[True]),
        statistics.median(stitch[False]),
        statistics.median(post),
        round(statistics.mean(instances)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    with tempfile.TemporaryDirectory() as directory:
        large = synthetic_split("bench_video_2048", 4, 1024, 2048, os.path.join(directory, "large"))
        meta = MetadataCatalog.get("bench_video_2048")
        stitch, no_memory, post, instances = stitching_ratio(large, meta, args.rounds + 1)
        print(
            f"1024x2048, {instances} instances/frame: stitching {stitch * 1e3:.1f} ms with the "
            f"tracker's memory ({no_memory * 1e3:.1f} ms without), post-processing "
            f"{post * 1e3:.1f} ms"
        )
        records = synthetic_split(
            "bench_video_1024", args.frames, 512, 1024, os.path.join(directory, "small")
        )
        sequence, single = network_ratio(records, args.rounds)
    print(
        f"512x1024 configs/vip_depth.yaml, {args.frames} frames: sequence inference "
        f"{sequence:.3f} s/frame, single-frame inference {single:.3f} s/frame"
    )
    print(f"RESULT video_inference_stitching ratio={stitch / post:.3f} goal<=0.15")
    print(f"RESULT video_inference ratio={sequence / single:.3f} goal<=1.3")


if __name__ == "__main__":
    main()
