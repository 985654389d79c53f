"""Cityscapes with depth from disparity, end to end: tools/train_net.py with 2 gloo processes
trains a single-frame model on the synthetic Cityscapes layout (Detectron2's panoptic files,
disparity and camera files, written by tools/make_synthetic_dvps.py) and evaluates it: DVPQ at
k = 1, depth metrics, and Detectron2's own PQ."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASET = "synthetic_cityscapes_panoptic_depth"


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("detectron2_datasets")
    for split, seed in (("train", 0), ("val", 1)):
        subprocess.run(
            [
                sys.executable, str(REPO / "tools" / "make_synthetic_dvps.py"),
                "--format", "cityscapes", "--out", str(root / "synthetic-cityscapes"),
                "--split", split, "--sequences", "2", "--frames", "2",
                "--height", "64", "--width", "128", "--seed", str(seed),
            ],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return root


def test_two_process_training_and_evaluation(datasets_root, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, str(REPO / "tools" / "train_net.py"),
        "--config-file", str(REPO / "configs" / "synthetic" / "vip_depth_small.yaml"),
        "--num-gpus", "2",
        "DATASETS.TRAIN", f"('{DATASET}_train',)", "DATASETS.TEST", f"('{DATASET}_val',)",
        "MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED", "False",
        "MODEL.DEPTH_HEAD.LOSS_TYPE", "l1",
        "INPUT.CROP.SIZE", "(64, 128)", "INPUT.MIN_SCALE", "1.0", "INPUT.MAX_SCALE", "1.0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "3",
        "TEST.EVAL_PERIOD", "3", "OUTPUT_DIR", str(output),
    ]  # fmt: skip
    env = {**os.environ, "DETECTRON2_DATASETS": str(datasets_root)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "World size: 2" in log
    metrics = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    training = [m for m in metrics if "total_loss" in m]
    assert training and all("loss_depth" in m and "loss_next_offset" not in m for m in training)
    assert all(m["loss_depth"] == m["loss_depth"] for m in training)  # not NaN
    inference = output / "inference" / f"{DATASET}_val"
    results = json.loads((inference / "dvps_results.json").read_text())
    # every Cityscapes image stands alone: depth-aware PQ at k = 1 only
    assert [(e["k"], e["lambda"]) for e in results["dvpq"]] == [
        (1, lam) for lam in (0.5, 0.25, 0.1, 0.0)
    ]
    assert results["depth"]["frames"] == 4 and results["depth"]["skipped_frames"] == 0
    # and Detectron2's own PQ (COCOPanopticEvaluator on the COCO-format ground truth)
    evaluation = [m for m in metrics if "panoptic_seg/PQ" in m]
    assert evaluation and "dvps/DVPQ@k1_l0" in evaluation[-1]
    assert len(list((inference / "panoptic").glob("*.png"))) == 4
    assert len(list((inference / "depth").glob("*.png"))) == 4


def test_missing_disparity_is_reported_before_training(datasets_root, tmp_path):
    root = tmp_path / "datasets"
    (root / "synthetic-cityscapes").mkdir(parents=True)
    for entry in (datasets_root / "synthetic-cityscapes").iterdir():
        if entry.name != "disparity":
            (root / "synthetic-cityscapes" / entry.name).symlink_to(entry)
    command = [
        sys.executable, str(REPO / "tools" / "train_net.py"),
        "--config-file", str(REPO / "configs" / "synthetic" / "vip_depth_small.yaml"),
        "DATASETS.TRAIN", f"('{DATASET}_train',)", "DATASETS.TEST", f"('{DATASET}_val',)",
        "MODEL.PANOPTIC_DEPTHLAB.NEXT_FRAME.ENABLED", "False", "OUTPUT_DIR", str(tmp_path / "o"),
    ]  # fmt: skip
    env = {**os.environ, "DETECTRON2_DATASETS": str(root)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    message = done.stderr.strip().splitlines()[-1]
    assert "4 of the 4 images" in message and "have no disparity file" in message
    assert not (tmp_path / "o" / "model_final.pth").exists()
