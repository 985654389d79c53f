"""Write a synthetic DVPS dataset in the official Cityscapes-DVPS or SemKITTI-DVPS layout, or
plain Cityscapes with disparity and camera files, or KITTI-STEP or Cityscapes-VPS (no depth).

    python tools/make_synthetic_dvps.py --format cityscapes_dvps \\
        --out datasets/synthetic-cityscapes-dvps --split train --sequences 10 --frames 6

Formats cityscapes_dvps and semkitti_dvps: frames go to ``<out>/video_sequence/<split>/``.

Format cityscapes: the cityscapes_dvps scene, each frame an independent Cityscapes image
``<city>_<sequence>_<frame>`` (city aachen or bochum), in the layout of the real Cityscapes
dataset after cityscapesScripts' createTrainIdLabelImgs and createPanopticImgs, which
Detectron2 reads as cityscapes_fine_panoptic_<split>: under ``<out>``,
``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` (RGB),
``gtFine/<split>/<city>/*_gtFine_labelTrainIds.png`` (train ids, 255 unlabelled),
``gtFine/cityscapes_panoptic_<split>/*_gtFine_panoptic.png`` (segment id = R + 256 G + 65536 B)
with ``gtFine/cityscapes_panoptic_<split>.json`` (COCO panoptic, categories = Cityscapes label
ids), ``disparity/<split>/<city>/*_disparity.png`` (16-bit, disparity = (p - 1) / 256 pixels,
0 invalid: no depth, or the left 5% of the columns) and ``camera/<split>/<city>/*_camera.json``
(baseline, fx, fy, u0, v0, ...; depth = baseline * fx / disparity).

Format kitti_step: the cityscapes_dvps scene in DeepLab2's KITTI-STEP layout, without depth:
under ``<out>``, ``images/<split>/<sequence:04d>/<frame:06d>.png`` (RGB) and
``panoptic_maps/<split>/<sequence:04d>/<frame:06d>.png`` (8-bit RGB: R = train id, 255
unlabelled, G = instance // 256, B = instance % 256; instances on person and car only).

Format cityscapes_vps: the cityscapes_dvps scene in the Cityscapes-VPS layout (mcahny/vps), its
video panoptic format for both splits, without depth: under ``<out>``,
``<split>/img/<video:04d>_<frame:04d>_synth_<sequence:06d>_<frame:06d>_leftImg8bit.png`` (RGB),
``<split>/panoptic_video/<same name>_gtFine_color.png`` (segment id = R + 256 G + 65536 B,
constant over a video) and ``panoptic_gt_<split>_city_vps.json`` (COCO panoptic, categories =
train ids).

The scene is described in ``panoptic_depthlab/data/synthetic.py``. The same arguments always
write the same files. Exit code 2, with a one-line message, for invalid arguments or a folder
that cannot be written (checked before any frame is made); a disk that fills up stops the run
with that message, and only whole frames stay.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

from tqdm import tqdm

from panoptic_depthlab.data.datasets import load_cityscapes_vps, load_dvps_split, load_kitti_step
from panoptic_depthlab.data.errors import DatasetError
from panoptic_depthlab.data.synthetic import (
    CITYSCAPES,
    CITYSCAPES_VPS,
    KITTI_STEP,
    SYNTHETIC_FORMATS,
    cityscapes_panoptic_paths,
    generate_synthetic_dvps,
)
from panoptic_depthlab.files import OutputError


def _read_back(out: str, split: str, dataset_format: str) -> tuple[str, int, int]:
    """Read a written split through its dataset loader, as any user's files are read.

    Returns:
        The folder the images are in, the number of frames the loader reads and the number of
        images in that folder (earlier runs' frames included).
    """
    if dataset_format == KITTI_STEP:
        records = load_kitti_step(out, split)
        return os.path.join(out, "images", split), len(records), len(records)
    if dataset_format == CITYSCAPES_VPS:
        image_dir = os.path.join(out, split, "img")
        on_disk = glob.glob(os.path.join(glob.escape(image_dir), "*_leftImg8bit.png"))
        try:
            records = load_cityscapes_vps(out, split)
        except DatasetError:  # images of an earlier run, not in this run's JSON: warned below
            if len(on_disk) == 0:
                raise
            records = []
        return image_dir, len(records), len(on_disk)
    if dataset_format != CITYSCAPES:
        folder = os.path.join(out, "video_sequence", split)
        records = load_dvps_split(out, split, dataset_format)
        return folder, len(records), len(records)
    # Imported here, after panoptic_depthlab (whose compat module silences the torch.jit.script
    # deprecation warnings that importing detectron2.data prints).
    from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
    from detectron2.data.datasets.cityscapes_panoptic import load_cityscapes_panoptic

    image_dir, gt_dir, gt_json = cityscapes_panoptic_paths(out, split)
    # Detectron2's cityscapes_fine_panoptic_* metadata: label id -> train id, things and stuff.
    meta = {
        f"{kind}_dataset_id_to_contiguous_id": {
            c["id"]: c["trainId"]
            for c in CITYSCAPES_CATEGORIES
            if c["isthing"] == (kind == "thing")
        }
        for kind in ("thing", "stuff")
    }
    records = load_cityscapes_panoptic(image_dir, gt_dir, gt_json, meta)
    on_disk = glob.glob(os.path.join(glob.escape(image_dir), "*", "*_leftImg8bit.png"))
    return image_dir, len(records), len(on_disk)


def main(argv: list[str] | None = None) -> int:
    """Write the dataset; returns the exit code (0 done, 2 bad arguments or unwritable output)."""
    doc = __doc__.split("\n\n")
    parser = argparse.ArgumentParser(
        prog="make_synthetic_dvps.py",
        description=doc[0],
        epilog="\n\n".join(doc[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--format", required=True, choices=SYNTHETIC_FORMATS, help="on-disk layout (see below)"
    )
    parser.add_argument(
        "--out",
        required=True,
        help="dataset root; DVPS frames go to OUT/video_sequence/SPLIT/, cityscapes to "
        "OUT/leftImg8bit/SPLIT/CITY/, OUT/gtFine/..., OUT/disparity/..., OUT/camera/..., "
        "kitti_step to OUT/images/SPLIT/SEQUENCE/ and OUT/panoptic_maps/SPLIT/SEQUENCE/, "
        "cityscapes_vps to OUT/SPLIT/img/, OUT/SPLIT/panoptic_video/ and "
        "OUT/panoptic_gt_SPLIT_city_vps.json",
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
        if kept and args.format in (CITYSCAPES, CITYSCAPES_VPS):
            kept = kept[:-1] + "; the split's panoptic JSON is not written."
        print(f"{parser.prog}: error: {e}{kept}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    folder, read, on_disk = _read_back(args.out, args.split, args.format)
    print(
        f"Wrote {len(images)} frames of {args.format} {args.split} ({args.sequences} x "
        f"{args.frames}, {args.height}x{args.width}) to {folder} in {elapsed:.1f} s; "
        f"the dataset loader reads back {read} frames."
    )
    if on_disk != len(images):
        unread, what = " (not in the split's panoptic JSON)", "dataset"
        if args.format not in (CITYSCAPES, CITYSCAPES_VPS):  # kitti_step: both folders
            unread, what = "", "dataset" if args.format == KITTI_STEP else "folder"
        print(
            f"Warning: {folder} also holds {on_disk - len(images)} frames of an earlier "
            f"run{unread}; delete the {what} and run again for a dataset of this run only."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
