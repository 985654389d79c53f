"""A dataset of your own: its classes declared in register_dvps_dataset(..., metadata=...), the
model's class count following it, training and evaluation with tools/train_net.py.

The 5-class dataset is the synthetic Cityscapes-DVPS scene relabelled in the Cityscapes-DVPS
layout: ground, structure, plant (stuff), vehicle (cars) and person (things), the other classes
void."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from detectron2.data import MetadataCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.data.datasets import register_dvps_dataset
from panoptic_depthlab.data.datasets.metadata import custom_metadata
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from tests.conftest import small_model_cfg

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["ground", "structure", "plant", "vehicle", "person"]
METADATA = {
    "classes": CLASSES,
    "colors": [(128, 64, 128), (70, 70, 70), (107, 142, 35), (0, 0, 142), (220, 20, 60)],
    "thing_ids": [3, 4],
    "label_void_id": 32,  # as Cityscapes-DVPS: 32 * 1000 fits the 16-bit label files
}
# Cityscapes train id -> new class (one old class per thing: instance ids stay distinct)
RELABEL = {0: 0, 1: 0, 2: 1, 3: 1, 4: 1, 8: 2, 9: 2, 13: 3, 11: 4}


def relabel_split(root: Path, split: str) -> None:
    """Rewrite every Cityscapes-DVPS panoptic label of a split in the 5 classes."""
    for path in sorted((root / "video_sequence" / split).glob("*_gtFine_instanceTrainIds.png")):
        raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.int64)
        classes, instances = raw // 1000, raw % 1000
        out = np.full(raw.shape, 32 * 1000, np.int64)
        for old, new in RELABEL.items():
            mask = classes == old
            out[mask] = new * 1000 + (instances[mask] if new in (3, 4) else 0)
        cv2.imwrite(str(path), out.astype(np.uint16))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"thing_ids": [3, 5]}, r"thing_ids \[3, 5\] are not distinct ids of its classes 0..4"),
        ({"colors": METADATA["colors"][:4]}, "4 colors for 5 classes"),
        ({"label_void_id": 4}, "label_void_id 4 is a class id"),
        ({"num_classes": 5}, r"unknown keys \['num_classes'\]"),
        ({"label_void_id": 255}, "255 x label_divisor 1000 does not fit the 16-bit"),
    ],
)
def test_metadata_that_does_not_describe_its_classes_is_refused(change, message):
    with pytest.raises(ValueError, match=message):
        custom_metadata("cityscapes_dvps", {**METADATA, **change})
    with pytest.raises(ValueError, match=message):
        register_dvps_dataset(
            "never_registered", "/nowhere", "val", "cityscapes_dvps", {**METADATA, **change}
        )
    assert "never_registered" not in MetadataCatalog.list()


def test_model_follows_the_dataset_classes(tmp_path):
    register_dvps_dataset("custom5_model_val", str(tmp_path), "val", "cityscapes_dvps", METADATA)
    meta = MetadataCatalog.get("custom5_model_val")
    assert meta.num_classes == 5 and meta.stuff_classes == CLASSES
    assert meta.thing_dataset_id_to_contiguous_id == {3: 3, 4: 4}
    model = build_model(small_model_cfg("custom5_model_val"))
    assert model.sem_seg_head.predictor.out_channels == 5
    assert model.panoptic_settings.thing_ids == (3, 4)


@pytest.fixture(scope="module")
def custom_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("custom5")
    for seed, split in enumerate(("train", "val")):
        generate_synthetic_dvps(str(root), "cityscapes_dvps", split, 2, 3, 64, 128, seed)
        relabel_split(root, split)
    return root


def test_two_process_training_and_evaluation(custom_root, tmp_path):
    """The README's pattern: a script registers the dataset at import (spawned workers import
    it too), then runs tools/train_net.py's command line."""
    script = tmp_path / "train_custom.py"
    script.write_text(f"""import sys
sys.path.insert(0, {str(REPO / "tools")!r})
from panoptic_depthlab.data import register_dvps_dataset
import train_net

METADATA = {json.dumps(METADATA)}
for split in ("train", "val"):
    register_dvps_dataset(f"custom5_{{split}}", {str(custom_root)!r}, split, "cityscapes_dvps",
                          METADATA)
if __name__ == "__main__":
    sys.exit(train_net.invoke())
""")
    output = tmp_path / "run"
    command = [
        sys.executable, str(script),
        "--config-file", str(REPO / "configs" / "synthetic" / "vip_depth_small.yaml"),
        "--num-gpus", "2",
        "DATASETS.TRAIN", "('custom5_train',)", "DATASETS.TEST", "('custom5_val',)",
        "INPUT.CROP.SIZE", "(64, 128)", "INPUT.MIN_SCALE", "1.0", "INPUT.MAX_SCALE", "1.0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.WARMUP_ITERS", "2", "SOLVER.MAX_ITER", "3",
        "TEST.EVAL_PERIOD", "3", "OUTPUT_DIR", str(output),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=600, env=dict(os.environ)
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-5000:]
    assert "MODEL.SEM_SEG_HEAD.NUM_CLASSES 19 -> 5, the classes of custom5_train" in log
    results = json.loads((output / "inference" / "custom5_val" / "dvps_results.json").read_text())
    assert list(results["per_class"]) == CLASSES
    assert results["depth"]["frames"] == 6
