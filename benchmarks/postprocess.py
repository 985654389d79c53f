"""Time of panoptic_depth_inference against Detectron2's Panoptic-DeepLab post-processing.

Both process the same synthetic 1024x2048 predictions (Cityscapes eval size): a semantic map
with road / sidewalk / building / vegetation / sky regions, pole, sign and traffic light
patches (the lights smaller than stuff_area) and 32 thing blobs of the 8 Cityscapes thing
classes (11..18, with some label noise inside them); a center heatmap with a Gaussian peak at
each blob center plus noise; offsets pointing each blob pixel to its center plus noise; a depth
map (sky without valid depth). Ours also computes the depth statistics of every segment;
Detectron2's get_panoptic_segmentation runs alone, with the Cityscapes config values
(stuff_area 2048, threshold 0.1, nms_kernel 7, top_k 200). The two alternate so that machine
noise hits both alike, and their panoptic maps must be equal.

    .venv/bin/python benchmarks/postprocess.py [--repeats 10]

Goal: ratio = ours / Detectron2's <= 1.0.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from detectron2.projects.panoptic_deeplab.post_processing import get_panoptic_segmentation

from panoptic_depthlab.runtime.post_processing import panoptic_depth_inference

HEIGHT, WIDTH = 1024, 2048
ROAD, SIDEWALK, BUILDING, POLE, LIGHT, SIGN, VEGETATION, SKY = 0, 1, 2, 5, 6, 7, 8, 10
THING_IDS = tuple(range(11, 19))
NUM_BLOBS = 32
PARAMS = dict(
    thing_ids=THING_IDS,
    label_divisor=1000,
    stuff_area=2048,
    void_label=-1,
    threshold=0.1,
    nms_kernel=7,
    top_k=200,
)


def synthetic_predictions(
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sem_seg (1, H, W) int64, center_heatmap (1, H, W), offsets (2, H, W), depth (H, W) m)."""
    g = torch.Generator().manual_seed(seed)

    def randint(low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=g))

    y = torch.arange(HEIGHT, dtype=torch.float32)[:, None].expand(HEIGHT, WIDTH)
    x = torch.arange(WIDTH, dtype=torch.float32)[None, :].expand(HEIGHT, WIDTH)

    sem = torch.full((HEIGHT, WIDTH), ROAD)
    horizon = 420 + 30 * torch.sin(x / 150)
    sem[y < horizon + 60] = SIDEWALK
    sem[y < horizon] = BUILDING
    sem[(y < horizon) & ((x < 300) | (x > 1800))] = VEGETATION
    sem[y < 200 + 40 * torch.cos(x / 230)] = SKY
    for _ in range(3):  # traffic lights, less than stuff_area in all
        top, left, size = randint(150, 500), randint(0, WIDTH - 40), randint(8, 20)
        sem[top : top + size, left : left + size] = LIGHT
    for _ in range(12):  # poles and signs
        top, left, h, w = (
            randint(150, 500),
            randint(0, WIDTH - 40),
            randint(10, 200),
            randint(4, 30),
        )
        sem[top : top + h, left : left + w] = POLE if h > w * 3 else SIGN

    heatmap = torch.zeros(HEIGHT, WIDTH)
    offsets = torch.randn(2, HEIGHT, WIDTH, generator=g)
    depth = 2 + 78 * ((HEIGHT - y) / HEIGHT) ** 2
    for _ in range(NUM_BLOBS):
        cy, cx = randint(350, HEIGHT - 60), randint(60, WIDTH - 60)
        ry, rx = randint(15, 90), randint(15, 90)
        cls = THING_IDS[randint(0, len(THING_IDS))]
        window = slice(max(0, cy - ry), cy + ry + 1), slice(max(0, cx - rx), cx + rx + 1)
        wy, wx = y[window], x[window]
        blob = ((wy - cy) / ry) ** 2 + ((wx - cx) / rx) ** 2 <= 1
        noise = torch.rand(blob.shape, generator=g) < 0.05
        sem[window][blob] = cls
        sem[window][blob & noise] = THING_IDS[(THING_IDS.index(cls) + 1) % len(THING_IDS)]
        offsets[0][window][blob] += cy - wy[blob]
        offsets[1][window][blob] += cx - wx[blob]
        depth[window][blob] = 2 + 78 * ((HEIGHT - cy) / HEIGHT) ** 2
        peak = float(0.5 + 0.5 * torch.rand(1, generator=g))
        near = slice(max(0, cy - 40), cy + 41), slice(max(0, cx - 40), cx + 41)
        gauss = peak * torch.exp(-((y[near] - cy) ** 2 + (x[near] - cx) ** 2) / 128)
        heatmap[near] = torch.maximum(heatmap[near], gauss)
    heatmap += 0.02 * torch.rand(HEIGHT, WIDTH, generator=g)
    depth += 0.1 * torch.randn(HEIGHT, WIDTH, generator=g)
    depth[sem == SKY] = 0
    return sem[None], heatmap[None], offsets, depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed runs of each")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="torch.meshgrid")  # raised inside Detectron2

    sem_seg, heatmap, offsets, depth = synthetic_predictions(seed=0)

    def ours() -> tuple[torch.Tensor, list[dict]]:
        return panoptic_depth_inference(sem_seg, heatmap, offsets, depth, **PARAMS)

    def theirs() -> torch.Tensor:
        return get_panoptic_segmentation(sem_seg, heatmap, offsets, **PARAMS)[0][0]

    panoptic, segments = ours()  # warm up
    assert torch.equal(panoptic, theirs()), "panoptic maps differ"
    num_things = sum(s["isthing"] for s in segments)
    t_ours, t_theirs = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours()
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        theirs()
        t_theirs.append(time.perf_counter() - start)

    ours_ms, theirs_ms = 1000 * np.mean(t_ours), 1000 * np.mean(t_theirs)
    print(f"{HEIGHT}x{WIDTH}, {len(segments)} segments ({num_things} things)")
    print(f"panoptic_depth_inference (with depth statistics): {ours_ms:.1f} ms")
    print(f"Detectron2 get_panoptic_segmentation:             {theirs_ms:.1f} ms")
    print(f"RESULT postprocess ratio={ours_ms / theirs_ms:.3f} goal<=1.0")


if __name__ == "__main__":
    main()
