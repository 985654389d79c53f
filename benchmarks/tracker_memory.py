"""Effect of the tracker's memory of ended tracks (``MODEL.TRACKER``) on a trained model.

DVPQ of the ``make demo`` model (output/demo/train/model_final.pth, configs/synthetic/
vip_depth_small.yaml) on its synthetic Cityscapes-DVPS validation set (datasets/
synthetic-cityscapes-dvps, 4 sequences x 6 frames in which passing vehicles hide riders,
bicycles and pedestrians for a frame or more), with the memory on (the config's default
``MAX_GAP``) and off (``MAX_GAP 0``: next-frame links only, ViP-DeepLab's tracking): the same
weights, ``inference_on_sequences`` + ``DVPSEvaluator``. Windows of 1 and 2 frames span no gap,
so the memory acts on k = 3 and 4. Also printed: the ground-truth track gaps of the set, and
what the tracker did (next-frame links, revivals, new ids) over all sequences, and the memory
with its appearance term (``APPEARANCE_WEIGHT 1.0``, informational).

    .venv/bin/python benchmarks/tracker_memory.py

Last line: ``RESULT tracker_memory ratio=<mean DVPQ at k = 3, 4 with the memory / without>
goal>=1.0`` (the memory must not lower the windows it acts on).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))
sys.path.insert(0, ROOT)  # the ground-truth gap count lives with the oracle tests

import numpy as np  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import get_cfg  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

import panoptic_depthlab  # noqa: E402, F401 (registers the model and datasets)
from panoptic_depthlab.config import add_panoptic_depthlab_config  # noqa: E402
from panoptic_depthlab.data import DVPSDatasetMapper, register_dvps_dataset  # noqa: E402
from panoptic_depthlab.evaluation import DVPSEvaluator, inference_on_sequences  # noqa: E402
from tests.modeling.test_video_oracle import track_gaps  # noqa: E402

CONFIG = os.path.join(ROOT, "configs", "synthetic", "vip_depth_small.yaml")
WEIGHTS = os.path.join(ROOT, "output", "demo", "train", "model_final.pth")
DATA = os.path.join(ROOT, "datasets", "synthetic-cityscapes-dvps")
DATASET = "tracker_memory_bench_val"
LAMBDAS = (0.5, 0.25, 0.1)


class _Counts(logging.Handler):
    """Adds up the tracker's end-of-sequence log lines (``Tracked N frames: ...``)."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.totals: dict[str, int] = defaultdict(int)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Tracked "):
            for number, what in re.findall(r"(\d+) (next-frame links|revivals|new ids)", message):
                self.totals[what] += int(number)


def evaluate(
    max_gap: int | None, appearance_weight: float = 0.0
) -> tuple[dict[int, float], dict[str, int]]:
    """DVPQ per window size k (mean over lambda), and the tracker's counts."""
    cfg = get_cfg()
    add_panoptic_depthlab_config(cfg)
    cfg.merge_from_file(CONFIG)
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATASETS.TEST = (DATASET,)
    if max_gap is not None:
        cfg.MODEL.TRACKER.MAX_GAP = max_gap
    cfg.MODEL.TRACKER.APPEARANCE_WEIGHT = appearance_weight
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(WEIGHTS)
    counts = _Counts()
    logger = logging.getLogger("panoptic_depthlab.runtime.sequence")
    logger.setLevel(logging.INFO)
    logger.addHandler(counts)
    try:
        results = inference_on_sequences(
            model, DATASET, DVPSDatasetMapper(cfg, is_train=False), DVPSEvaluator(DATASET)
        )["dvps"]
    finally:
        logger.removeHandler(counts)
    windows = MetadataCatalog.get(DATASET).dvpq_window_sizes
    dvpq = {k: float(np.mean([results[f"DVPQ@k{k}_l{lam:g}"] for lam in LAMBDAS])) for k in windows}
    return dvpq, dict(counts.totals)


def main() -> None:
    if not (os.path.isfile(WEIGHTS) and os.path.isdir(DATA)):
        print(f"{WEIGHTS} or {DATA} is missing: run `make demo` first.", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(level=logging.WARNING)
    register_dvps_dataset(DATASET, DATA, "val", "cityscapes_dvps")
    print(f"{DATA} val: {sum(n for *_, n in track_gaps(DATASET))} ground-truth track gaps")
    on, on_counts = evaluate(None)
    off, off_counts = evaluate(0)
    looks, looks_counts = evaluate(None, appearance_weight=1.0)
    rows = {
        "memory on (MAX_GAP default)": on,
        "memory off (MAX_GAP 0)": off,
        "memory on, APPEARANCE_WEIGHT 1.0": looks,
    }
    print(f"{'DVPQ (mean over lambda 0.5/0.25/0.1)':38}" + "".join(f"k={k:<8}" for k in on))
    for name, dvpq in rows.items():
        print(f"{name:38}" + "".join(f"{v:<10.3f}" for v in dvpq.values()))
    print(f"tracker, memory on: {on_counts}; off: {off_counts}; with appearance: {looks_counts}")
    long_on = np.mean([on[k] for k in (3, 4)])
    long_off = np.mean([off[k] for k in (3, 4)])
    print(f"RESULT tracker_memory ratio={long_on / long_off:.4f} goal>=1.0")


if __name__ == "__main__":
    main()
