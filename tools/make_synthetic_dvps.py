"""Write a synthetic DVPS dataset in the official Cityscapes-DVPS or SemKITTI-DVPS layout.

    python tools/make_synthetic_dvps.py --format cityscapes_dvps \\
        --out datasets/synthetic-cityscapes-dvps --split train --sequences 10 --frames 6

Frames go to ``<out>/video_sequence/<split>/``; the scene is described in
``panoptic_depthlab/data/synthetic.py``. The same arguments always write the same files.
Exit code 2, with a one-line message, for invalid arguments or a folder that cannot be written
(checked before any frame is made); a disk that fills up stops the run with that message, and
only whole frames stay.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from panoptic_depthlab.data.datasets import DVPS_FORMATS, load_dvps_split
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.files import OutputError


def main(argv: list[str] | None = None) -> int:
    """Write the dataset; returns the exit code (0 done, 2 bad arguments or unwritable output)."""
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="make_synthetic_dvps.py",
        description=doc[0],
        epilog="\n\n".join(doc[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=DVPS_FORMATS, help="on-disk layout")
    parser.add_argument(
        "--out", required=True, help="dataset root; frames go to OUT/video_sequence/SPLIT/"
    )
    parser.add_argument("--split", required=True, help="train or val (also seeds the data)")
    parser.add_argument("--sequences", type=int, default=4, help="number of sequences (>= 1)")
    parser.add_argument("--frames", type=int, default=6, help="frames per sequence (>= 1)")
    parser.add_argument("--height", type=int, default=256, help="image height in pixels (>= 64)")
    parser.add_argument("--width", type=int, default=512, help="image width in pixels (>= 64)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    # delay: no bar at all when the arguments are rejected at once.
    progress = tqdm(total=args.sequences * args.frames, unit="frame", desc=args.split, delay=0.5)
    try:
        with progress:
            images = generate_synthetic_dvps(
                args.out,
                args.format,
                args.split,
                args.sequences,
                args.frames,
                args.height,
                args.width,
                args.seed,
                on_frame_written=lambda _: progress.update(),
            )
    except ValueError as e:  # invalid arguments, raised before anything is written
        parser.error(str(e))
    except OutputError as e:  # a folder that cannot be written, or a full disk
        kept = f" The {progress.n} frames written before stay whole." if progress.n else ""
        print(f"{parser.prog}: error: {e}{kept}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    # Read the split back through the dataset loader: the files are checked as any user's are.
    records = load_dvps_split(args.out, args.split, args.format)
    split_dir = os.path.join(args.out, "video_sequence", args.split)
    print(
        f"Wrote {len(images)} frames of {args.format} {args.split} ({args.sequences} x "
        f"{args.frames}, {args.height}x{args.width}) to {split_dir} in {elapsed:.1f} s; "
        f"the dataset loader reads back {len(records)} frames."
    )
    if len(records) != len(images):
        print(
            f"Warning: {split_dir} also holds {len(records) - len(images)} frames of an earlier "
            "run; delete the folder and run again for a dataset of this run only."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
