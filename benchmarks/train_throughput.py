"""Training throughput of DVPSTrainer (PanopticDepthLab) against Detectron2's Panoptic-DeepLab.

Both trainers run Detectron2's full training loop (data loader, mapper and target generation,
DistributedDataParallel over gloo, Adam + WarmupPolyLR, iteration timer, LR scheduler and metric
writers) in ``--procs`` processes started by Detectron2's ``launch``, with
configs/synthetic/vip_depth_small.yaml, on the same synthetic Cityscapes-DVPS frames, the same
crop, batch and number of processes:

* ours: ``DVPSTrainer`` with ``PanopticDepthLab`` (depth and next-frame branches): one sample is
  a frame pair (t, t+1), mapped by ``DVPSDatasetMapper``; the backbone runs on both frames;
* reference: the same trainer class with Detectron2's ``PanopticDeepLab`` meta-architecture and
  the loader of Detectron2's Panoptic-DeepLab project (``build_detection_train_loader`` with
  ``PanopticDeeplabDatasetMapper``, augmentations as its ``build_sem_seg_train_aug``), reading
  the frames that start a pair, converted to Detectron2's panoptic format; one sample is an image.

Augmentation is made equivalent: no rescaling (ours: ``INPUT.MIN_SCALE = MAX_SCALE = 1``; the
reference: ``ResizeShortestEdge`` to the frames' own size), a random crop of the crop size and a
random horizontal flip. Evaluation, visualization and checkpoint hooks are off. Each run's time
per iteration is the wall time on rank 0 from the end of iteration ``--warmup - 1`` to the end of
the last iteration, divided by the iterations in between (metric writes included). The trainers
are run alternately (ours, reference, ours, ...) ``--rounds`` times and the times averaged.

    .venv/bin/python benchmarks/train_throughput.py [--iters 30] [--warmup 10] [--rounds 2]
        [--procs 2] [--batch 4] [--crop 128 256] [--sequences 4] [--frames 6]

The last line is ``RESULT train_throughput ratio=<ours s/sample / reference s/sample>``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from typing import Any

import cv2
import numpy as np
from detectron2.config import CfgNode
from detectron2.utils import comm
from panopticapi.utils import id2rgb
from PIL import Image

from panoptic_depthlab.data import load_dvps_split, register_dvps_dataset
from panoptic_depthlab.data.datasets import dvps_metadata
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.engine import DVPSTrainer, launch, load_config, setup

# After panoptic_depthlab's compat, which adapts to the installed Detectron2 (as train_net.py).
from detectron2.data import DatasetCatalog, MetadataCatalog  # isort: skip
from detectron2.data import build_detection_train_loader  # isort: skip
from detectron2.data import transforms as T  # isort: skip
from detectron2.engine import HookBase, default_argument_parser  # isort: skip
from detectron2.engine.hooks import EvalHook, PeriodicCheckpointer  # isort: skip
from detectron2.projects.panoptic_deeplab import PanopticDeeplabDatasetMapper  # isort: skip

CONFIG = "configs/synthetic/vip_depth_small.yaml"
FORMAT = "cityscapes_dvps"
OURS, REFERENCE = "ours", "reference"
DATASET = {OURS: "bench_throughput_pairs", REFERENCE: "bench_throughput_panoptic"}
TIMES_FILE = "step_times.json"


class StepTimes(HookBase):
    """Rank 0: ``time.perf_counter()`` at the end of every iteration (before the other hooks'
    ``after_step``) and the loader's ``data_time``, written to ``OUTPUT_DIR/step_times.json``."""

    def __init__(self, output_dir: str, is_main: bool):
        self.output_dir = output_dir
        self.is_main = is_main
        self.ends: list[float] = []

    def after_step(self) -> None:
        self.ends.append(time.perf_counter())

    def after_train(self) -> None:
        if not self.is_main:
            return
        history = self.trainer.storage.histories().get("data_time")
        data_time = [value for value, _ in history.values()] if history is not None else []
        with open(os.path.join(self.output_dir, TIMES_FILE), "w") as f:
            json.dump({"ends": self.ends, "data_time": data_time}, f)


class BenchTrainer(DVPSTrainer):
    """DVPSTrainer without evaluation and checkpoints, with :class:`StepTimes` first."""

    def build_hooks(self) -> list:
        hooks = [
            h for h in super().build_hooks() if not isinstance(h, (EvalHook, PeriodicCheckpointer))
        ]
        return [StepTimes(self.cfg.OUTPUT_DIR, comm.is_main_process())] + hooks


class ReferenceTrainer(BenchTrainer):
    """The loader of Detectron2's Panoptic-DeepLab project (projects/Panoptic-DeepLab/train_net.py):
    ``PanopticDeeplabDatasetMapper`` with ``build_sem_seg_train_aug``'s augmentations."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        augs = [
            T.ResizeShortestEdge(
                cfg.INPUT.MIN_SIZE_TRAIN,
                cfg.INPUT.MAX_SIZE_TRAIN,
                cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING,
            )
        ]
        if cfg.INPUT.CROP.ENABLED:
            augs.append(T.RandomCrop(cfg.INPUT.CROP.TYPE, cfg.INPUT.CROP.SIZE))
        augs.append(T.RandomFlip())
        mapper = PanopticDeeplabDatasetMapper(cfg, augmentations=augs)
        return build_detection_train_loader(cfg, mapper=mapper)


def convert_to_panoptic(root: str, out_dir: str) -> list[dict[str, Any]]:
    """Detectron2 panoptic records (``file_name``, ``pan_seg_file_name``, ``segments_info``) of the
    train frames that start a frame pair. Segment id = Cityscapes-DVPS id + 1 (0 = void), category
    = train id (contiguous), crowd = a thing class with instance 0."""
    meta = dvps_metadata(FORMAT)
    divisor, void, things = meta["label_divisor"], meta["label_void_id"], set(meta["thing_ids"])
    os.makedirs(out_dir, exist_ok=True)
    records = []
    for frame in load_dvps_split(root, "train", FORMAT):
        if frame["next_frame"] is None:
            continue
        raw = cv2.imread(frame["panoptic_file_name"], cv2.IMREAD_UNCHANGED).astype(np.int64)
        ids = np.where(raw // divisor == void, 0, raw + 1)
        pan_seg = os.path.join(out_dir, frame["image_id"] + "_panoptic.png")
        Image.fromarray(id2rgb(ids)).save(pan_seg)
        segments = []
        for seg_id in np.unique(ids):
            if seg_id == 0:
                continue
            category, instance = divmod(int(seg_id) - 1, divisor)
            crowd = int(category in things and instance == 0)
            segments.append({"id": int(seg_id), "category_id": category, "iscrowd": crowd})
        records.append(
            {
                "file_name": frame["file_name"],
                "image_id": frame["image_id"],
                "height": frame["height"],
                "width": frame["width"],
                "pan_seg_file_name": pan_seg,
                "segments_info": segments,
            }
        )
    return records


def register(kind: str, root: str, records_file: str) -> None:
    if kind == OURS:
        register_dvps_dataset(DATASET[OURS], root, "train", FORMAT)
        return
    meta = dvps_metadata(FORMAT)
    meta.pop("evaluator_type")

    def load() -> list[dict[str, Any]]:
        with open(records_file) as f:
            return json.load(f)

    DatasetCatalog.register(DATASET[REFERENCE], load)
    MetadataCatalog.get(DATASET[REFERENCE]).set(**meta)


def config_opts(kind: str, args: argparse.Namespace, output_dir: str) -> list[str]:
    """Overrides of CONFIG for one run (``KEY VALUE`` pairs, as on train_net.py's command line)."""
    height, width = args.crop
    opts = {
        "DATASETS.TRAIN": f"('{DATASET[kind]}',)",
        "DATASETS.TEST": "()",
        "TEST.EVAL_PERIOD": 0,
        "VIS_PERIOD": 0,
        "SOLVER.IMS_PER_BATCH": args.batch,
        "SOLVER.MAX_ITER": args.iters,
        "SOLVER.CHECKPOINT_PERIOD": 10**6,
        "DATALOADER.NUM_WORKERS": 0,
        "MODEL.DEVICE": "cpu",
        "INPUT.CROP.SIZE": f"({height}, {width})",
        "OUTPUT_DIR": output_dir,
        "SEED": 0,
    }
    if kind == OURS:
        opts.update({"INPUT.MIN_SCALE": 1.0, "INPUT.MAX_SCALE": 1.0})
    else:
        opts.update(
            {
                "MODEL.META_ARCHITECTURE": "PanopticDeepLab",
                # ResizeShortestEdge to the frames' own size: no rescaling.
                "INPUT.MIN_SIZE_TRAIN": f"({min(height, width)},)",
                "INPUT.MAX_SIZE_TRAIN": max(height, width),
                "INPUT.MIN_SIZE_TRAIN_SAMPLING": "choice",
            }
        )
    return [str(item) for pair in opts.items() for item in pair]


def worker(kind: str, root: str, records_file: str, argv: list[str]) -> None:
    """One training process (started by ``launch``): register the data, set up, train."""
    output_dir = argv[argv.index("OUTPUT_DIR") + 1]
    os.makedirs(output_dir, exist_ok=True)
    # Keep the console for the results: this process's output goes to a file.
    console = os.path.join(output_dir, f"console_rank{comm.get_rank()}.txt")
    log = os.open(console, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log, 1)
    os.dup2(log, 2)
    register(kind, root, records_file)
    cfg = setup(default_argument_parser().parse_args(argv))
    trainer = (BenchTrainer if kind == OURS else ReferenceTrainer)(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()


def run(kind: str, args: argparse.Namespace, root: str, records_file: str, output_dir: str):
    """Train ``kind`` once; return (seconds per iteration after warm-up, mean data time)."""
    argv = ["--config-file", CONFIG, "--num-gpus", str(args.procs)]
    argv += config_opts(kind, args, output_dir)
    try:
        launch(worker, args.procs, dist_url="auto", args=(kind, root, records_file, argv))
    except Exception:
        console = os.path.join(output_dir, "console_rank0.txt")
        if os.path.isfile(console):
            with open(console) as f:
                print(f"{kind}: training failed; end of {console}:\n" + f.read()[-4000:])
        raise
    with open(os.path.join(output_dir, TIMES_FILE)) as f:
        times = json.load(f)
    ends = times["ends"]
    if len(ends) != args.iters:
        raise RuntimeError(f"{kind}: {len(ends)} iterations recorded; expected {args.iters}.")
    per_iter = (ends[-1] - ends[args.warmup - 1]) / (args.iters - args.warmup)
    data_time = float(np.mean(times["data_time"][args.warmup :]))
    return per_iter, data_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=30, help="iterations per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first iterations")
    parser.add_argument("--rounds", type=int, default=2, help="runs per trainer, alternated")
    parser.add_argument("--procs", type=int, default=2, help="training processes (gloo)")
    parser.add_argument("--batch", type=int, default=None, help="default: the config's")
    parser.add_argument("--crop", type=int, nargs=2, default=None, help="H W; default: config's")
    parser.add_argument("--sequences", type=int, default=4)
    parser.add_argument("--frames", type=int, default=6, help="frames per sequence")
    args = parser.parse_args()
    cfg = load_config(argparse.Namespace(config_file=CONFIG, opts=[]))
    args.batch = args.batch or cfg.SOLVER.IMS_PER_BATCH
    args.crop = args.crop or list(cfg.INPUT.CROP.SIZE)
    if not 1 <= args.warmup < args.iters:
        parser.error("expected 1 <= --warmup < --iters")
    if args.batch % args.procs:
        parser.error(f"--batch {args.batch} is not divisible by --procs {args.procs}")

    height, width = args.crop
    times: dict[str, list[tuple[float, float]]] = {OURS: [], REFERENCE: []}
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "data")
        generate_synthetic_dvps(
            root, FORMAT, "train", args.sequences, args.frames, height, width, 0
        )
        records = convert_to_panoptic(root, os.path.join(tmp, "panoptic"))
        records_file = os.path.join(tmp, "panoptic_train.json")
        with open(records_file, "w") as f:
            json.dump(records, f)
        print(
            f"data: {args.sequences} sequences x {args.frames} frames of {height}x{width}, "
            f"{len(records)} training samples each (frame pairs / their first frames)"
        )
        for r in range(args.rounds):
            for kind in (OURS, REFERENCE):
                output_dir = os.path.join(tmp, f"{kind}_{r}")
                per_iter, data_time = run(kind, args, root, records_file, output_dir)
                times[kind].append((per_iter, data_time))
                print(
                    f"round {r + 1}/{args.rounds} {kind:>9}: {per_iter:.3f} s/iter "
                    f"(data {data_time:.3f} s/iter)",
                    flush=True,
                )

    per_sample = {}
    for kind, what in ((OURS, "frame pairs"), (REFERENCE, "images")):
        per_iter = float(np.mean([t for t, _ in times[kind]]))
        data_time = float(np.mean([d for _, d in times[kind]]))
        per_sample[kind] = per_iter / args.batch
        print(
            f"{kind:>9}: {per_iter:.3f} s/iter, {args.batch / per_iter:.2f} samples/s "
            f"({what}), data {data_time:.3f} s/iter, batch {args.batch} "
            f"({args.batch // args.procs} per process), crop {height}x{width}, "
            f"{args.procs} processes, {args.iters - args.warmup} timed of {args.iters} "
            f"iterations x {args.rounds} runs"
        )
    ratio = per_sample[OURS] / per_sample[REFERENCE]
    print(f"RESULT train_throughput ratio={ratio:.3f} goal<=2.1")


if __name__ == "__main__":
    main()
