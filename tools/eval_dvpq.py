"""Evaluate DVPS prediction files (official ViP-DeepLab formats): DVPQ, depth, STQ/DSTQ.

    python tools/eval_dvpq.py --dataset cityscapes_dvps \\
        --gt-dir datasets/cityscapes-dvps/video_sequence/val \\
        --pred-dir output/panoptic --depth-dir output/depth --output output/dvpq.json

Prediction files, per ground-truth frame, each named starting with the frame id
``<sequence>_<frame>`` (e.g. 000008_000004), as the official scripts accept them (see
panoptic_depthlab/evaluation/evaluate_files.py): Cityscapes-DVPS ``PRED_DIR/<frame id>*.png``
(RGB: red = class, green = instance); SemKITTI-DVPS ``PRED_DIR/<frame id>*cat.png`` and
``*ins.png``; or, with ``--pred-format coco_panoptic --pred-json FILE``, the COCO panoptic PNGs in
PRED_DIR that FILE lists (Detectron2's COCOPanopticEvaluator, panopticapi); depth
``DEPTH_DIR/<frame id>*.png`` (16-bit, meters * 256). Prints a table and writes the results
as JSON (PQ, SQ, RQ, STQ, DSTQ and the delta accuracies in percent; AbsRel a fraction; SqRel
and RMSE in meters; see panoptic_depthlab/evaluation/depth_metrics.py). Exit code 2, with a
one-line message, on bad input (missing, doubled or unreadable files, sizes or ids that do not
fit, invalid options) or an output that cannot be written (checked before the evaluation
starts); no JSON is written then.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time

from panoptic_depthlab.data.datasets import DVPS_FORMATS
from panoptic_depthlab.evaluation.charts import plot_results
from panoptic_depthlab.evaluation.evaluate_files import (
    PRED_FORMATS,
    DVPSInputError,
    evaluate_prediction_files,
)
from panoptic_depthlab.evaluation.report import format_results_table
from panoptic_depthlab.files import OutputError, check_writable, write_json_atomic


def _window_size(text: str) -> int:
    """``--frames`` value: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected a whole number of frames >= 1")
    return value


def _depth_threshold(text: str) -> float:
    """``--lambdas`` value: a finite number >= 0 (0 = no depth test)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"{text}: expected a finite relative depth error >= 0, e.g. 0.5 0.25 0.1 "
            "(0 = no depth test)"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eval_dvpq.py",
        description=__doc__.splitlines()[0],
        epilog="\n".join(__doc__.splitlines()[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", required=True, choices=DVPS_FORMATS, help="dataset format")
    parser.add_argument(
        "--gt-dir", required=True, help="ground-truth split: <dataset root>/video_sequence/<split>"
    )
    parser.add_argument("--pred-dir", required=True, help="panoptic prediction PNGs")
    parser.add_argument(
        "--pred-format",
        choices=PRED_FORMATS,
        default="official",
        help="official: the dataset's own prediction files (default); coco_panoptic: COCO "
        "panoptic PNGs listed by --pred-json",
    )
    parser.add_argument(
        "--pred-json", help="the COCO panoptic JSON (with --pred-format coco_panoptic)"
    )
    parser.add_argument("--depth-dir", required=True, help="depth prediction PNGs")
    parser.add_argument("--output", required=True, help="results JSON file to write")
    parser.add_argument(
        "--frames",
        type=_window_size,
        nargs="+",
        default=None,
        metavar="K",
        help="window sizes k (default: the dataset's, 1 2 3 4 or 1 5 10 20)",
    )
    parser.add_argument(
        "--lambdas",
        type=_depth_threshold,
        nargs="+",
        default=None,
        metavar="LAMBDA",
        help="depth thresholds; 0 = no depth test (default: 0.5 0.25 0.1 0)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes reading frames (results do not change)"
    )
    parser.add_argument("--plot", metavar="DIR", help="also write PNG charts to DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the evaluation; returns the exit code (0 ok, 2 bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if (args.pred_format == "coco_panoptic") != (args.pred_json is not None):
        parser.error("--pred-json is needed with --pred-format coco_panoptic, and only then.")
    if args.workers < 1:
        parser.error(f"--workers {args.workers}: expected an integer >= 1.")
    if os.path.isdir(args.output):
        parser.error(f"--output {args.output} is a directory; expected a JSON file name.")
    if args.plot and os.path.exists(args.plot) and not os.path.isdir(args.plot):
        parser.error(f"--plot {args.plot} exists and is not a directory.")
    try:  # before the evaluation, not after it
        check_writable(os.path.dirname(os.path.abspath(args.output)), "--output folder")
        if args.plot:
            check_writable(args.plot, "--plot folder")
    except OutputError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    package_logger = logging.getLogger("panoptic_depthlab")
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    package_logger.setLevel(logging.INFO)

    start = time.perf_counter()
    try:
        results = evaluate_prediction_files(
            args.dataset,
            args.gt_dir,
            args.pred_dir,
            args.depth_dir,
            window_sizes=args.frames,
            depth_thresholds=args.lambdas,
            workers=args.workers,
            progress=True,
            pred_format=args.pred_format,
            pred_json=args.pred_json,
        )
    except DVPSInputError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
    elapsed = time.perf_counter() - start

    print(format_results_table(results))
    try:
        write_json_atomic(args.output, results)
        frames = results["depth"]["frames"] + results["depth"]["skipped_frames"]
        print(f"\nEvaluated {frames} frames in {elapsed:.1f} s; wrote {args.output}")
        if args.plot:
            for path in plot_results(results, args.plot):
                print(f"wrote {path}")
    except OutputError as e:  # e.g. the disk filled up during the evaluation
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
