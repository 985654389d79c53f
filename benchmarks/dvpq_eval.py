"""Time and peak memory of the DVPQ table from prediction files: ours against the oracle and
against the time it takes just to decode the PNGs.

Data the size of Cityscapes-DVPS val: 50 synthetic sequences x 6 frames at 1024x2048 (written
once by the synthetic generator under ``output/benchmarks/dvpq_eval/`` and reused), with
predictions made from the ground truth: shifted 3 pixels sideways (boundary errors), thing ids
rotated within their class in every third frame (broken tubes), void as class 19, and depth
off by a smooth relative error of up to 20%.

* Ours: ``evaluate_prediction_files`` (what ``tools/eval_dvpq.py`` runs) for the 12-entry table
  (k in {1, 2, 3, 4}, lambda in {0.5, 0.25, 0.1}), which reads each frame once, plus its depth
  metrics.
* Reference: ``tests/evaluation/dvpq_reference.py``, run as the official script is: one pass per
  (k, lambda), each reading the sequence's files again and matching every window with
  dictionaries. It takes about half a minute per sequence, so it runs on the first
  ``--reference-sequences`` sequences and its time is scaled to all 50 (the work per sequence is
  the same); its table on those sequences must equal ours on the same sequences.
* Decode floor: only ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` of each frame's four PNGs
  (ground-truth panoptic and depth, predicted panoptic and depth), nothing else.

Each runs with one process and one thread, in a fresh subprocess whose peak RSS and CPU time
(user + system, about the wall time when one core works) are reported. The ratios compare the
work, timed inside each process: the evaluation call, the reference's passes, the decoding loop.
Starting Python and importing (about 2 s for ``panoptic_depthlab``, which imports torch and
Detectron2; 0.2 s for cv2) is printed apart and left out of all three alike.

    .venv/bin/python benchmarks/dvpq_eval.py [--reference-sequences 5]

Goals: reference time / ours >= 50 (``RESULT dvpq_eval``, the last line); ours / decode floor
<= 2.0 (``RESULT dvpq_eval_decode_floor``, the line before); our peak memory < 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(REPO, "output", "benchmarks", "dvpq_eval")
FORMAT = "cityscapes_dvps"
SEQUENCES, FRAMES, HEIGHT, WIDTH = 50, 6, 1024, 2048
WINDOWS, LAMBDAS = (1, 2, 3, 4), (0.5, 0.25, 0.1)


def make_data(root: str) -> None:
    """Ground truth and predictions under ``root`` (each skipped when already complete)."""
    from itertools import groupby

    from panoptic_depthlab.data import dvps_metadata
    from panoptic_depthlab.data.datasets.dvps import load_dvps_split
    from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
    from panoptic_depthlab.evaluation.formats import read_ground_truth, write_prediction

    if not os.path.exists(os.path.join(root, "gt_complete")):
        shutil.rmtree(root, ignore_errors=True)
        print(f"writing {SEQUENCES} x {FRAMES} frames at {HEIGHT}x{WIDTH} to {root} ...")
        generate_synthetic_dvps(root, FORMAT, "val", SEQUENCES, FRAMES, HEIGHT, WIDTH, seed=0)
        open(os.path.join(root, "gt_complete"), "w").close()
    if os.path.exists(os.path.join(root, "pred_complete")):
        return
    print("writing predictions ...", flush=True)
    meta = dvps_metadata(FORMAT)
    rows = np.linspace(0, 2 * np.pi, HEIGHT)[:, None]
    cols = np.linspace(0, 6 * np.pi, WIDTH)[None, :]
    error = 1 + 0.2 * np.sin(rows) * np.cos(cols)  # relative depth error, within +-20%
    records = load_dvps_split(root, "val", FORMAT)
    for _, group in groupby(records, key=lambda r: r["sequence_id"]):
        group = list(group)
        truth = [read_ground_truth(r, meta) for r in group]
        # Number each class's instances 1, 2, ... over the sequence (the format holds 0..255).
        segments = np.unique(np.concatenate([(c * 2**16 + i).ravel() for c, i, _ in truth]))
        things = segments[np.isin(segments >> 16, meta["thing_ids"]) & (segments % 2**16 > 0)]
        first = np.searchsorted(things >> 16, things >> 16)
        numbers = 1 + np.arange(len(things)) - first
        for record, (gt_class, gt_instance, gt_depth) in zip(group, truth, strict=True):
            ids = gt_class.astype(np.int64) * 2**16 + gt_instance
            instance = np.where(
                np.isin(ids, things),
                numbers[np.searchsorted(things, ids).clip(0, len(things) - 1)],
                0,
            )
            if record["frame_index"] % 3 == 2:  # a broken tube: ids rotate within each class
                for cls in meta["thing_ids"]:
                    mask = (gt_class == cls) & (instance > 0)
                    if mask.any():
                        instance[mask] = instance[mask] % instance[mask].max() + 1
            write_prediction(
                os.path.join(root, "pred"),
                os.path.join(root, "depth"),
                record["file_name"],
                meta,
                np.roll(gt_class, 3, axis=1),  # boundary errors
                np.roll(instance, 3, axis=1),
                np.where(gt_depth > 0, gt_depth * error, 30.0),
            )
    open(os.path.join(root, "pred_complete"), "w").close()


def run_ours(root: str, sequences: int) -> dict:
    """Our table over the first ``sequences`` sequences (all when equal to SEQUENCES), with the
    seconds spent importing the package and evaluating (``import_s``, ``evaluation_s``)."""
    start = time.perf_counter()
    from panoptic_depthlab.evaluation.evaluate_files import evaluate_prediction_files

    imported = time.perf_counter()
    gt_dir = subset_dir(root, sequences)
    results = evaluate_prediction_files(
        FORMAT,
        gt_dir,
        os.path.join(root, "pred"),
        os.path.join(root, "depth"),
        window_sizes=WINDOWS,
        depth_thresholds=LAMBDAS,
    )
    return {**results, "import_s": imported - start, "evaluation_s": time.perf_counter() - imported}


def frame_pngs(root: str, sequences: int) -> list[str]:
    """The four PNGs ours reads for each frame of the first ``sequences`` sequences, in frame
    order: ground-truth panoptic and depth, predicted panoptic and depth."""
    split = os.path.join(root, "video_sequence", "val")
    suffix = "_leftImg8bit.png"
    images = sorted(n for n in os.listdir(split) if n.endswith(suffix))
    paths = []
    for image in images:
        if int(image.split("_")[0]) < sequences:
            stem = os.path.join(split, image[: -len(suffix)])
            paths += [f"{stem}_gtFine_instanceTrainIds.png", f"{stem}_depth.png"]
            paths += [os.path.join(root, "pred", image), os.path.join(root, "depth", image)]
    return paths


def run_decode_floor(root: str, sequences: int) -> dict:
    """Decode every PNG ours reads, and nothing else (``decode_s``: the decoding loop)."""
    import cv2

    paths = frame_pngs(root, sequences)
    start = time.perf_counter()
    for path in paths:
        if cv2.imread(path, cv2.IMREAD_UNCHANGED) is None:
            raise ValueError(f"{path}: not a readable PNG.")
    return {"pngs": len(paths), "decode_s": time.perf_counter() - start}


def subset_dir(root: str, sequences: int) -> str:
    """A split directory holding links to the files of the first ``sequences`` sequences."""
    full = os.path.join(root, "video_sequence", "val")
    if sequences == SEQUENCES:
        return full
    sub = os.path.join(root, f"subset{sequences}", "video_sequence", "val")
    if not os.path.isdir(sub):
        os.makedirs(sub + ".tmp", exist_ok=True)
        for name in os.listdir(full):
            if int(name.split("_")[0]) < sequences:
                os.symlink(os.path.join(full, name), os.path.join(sub + ".tmp", name))
        os.replace(sub + ".tmp", sub)
    return sub


def run_reference(root: str, sequences: int) -> dict:
    """The oracle's table over the first ``sequences`` sequences, one pass per (k, lambda)."""
    from itertools import groupby

    from panoptic_depthlab.data import dvps_metadata
    from panoptic_depthlab.data.datasets.dvps import load_dvps_split
    from panoptic_depthlab.evaluation.dvpq import DVPQProtocol, DVPSFrame
    from panoptic_depthlab.evaluation.formats import read_ground_truth, read_prediction
    from tests.evaluation.dvpq_reference import reference_dvpq, reference_pq

    meta = dvps_metadata(FORMAT)
    start = time.perf_counter()
    records = [r for r in load_dvps_split(root, "val", FORMAT) if r["sequence_id"] < sequences]
    table = []
    for k in WINDOWS:
        for lam in LAMBDAS:
            protocol = DVPQProtocol.from_metadata(meta, [k], [lam])
            totals = None
            for _, group in groupby(records, key=lambda r: r["sequence_id"]):
                frames = []
                for record in group:  # read again for every (k, lambda), as the script does
                    pred = read_prediction(
                        os.path.join(root, "pred"),
                        os.path.join(root, "depth"),
                        record["file_name"],
                        meta,
                    )
                    frames.append(DVPSFrame(*pred[:3], *read_ground_truth(record, meta)))
                counts = reference_dvpq([frames], protocol)[(k, lam)]
                totals = counts if totals is None else {n: totals[n] + counts[n] for n in counts}
            pq = reference_pq(totals, protocol)
            table.append({"k": k, "lambda": lam, **{n: 100 * pq[n] for n in ("pq",)}})
    return {"dvpq": table, "evaluation_s": time.perf_counter() - start}


def timed_child(what: str, sequences: int) -> tuple[float, float, float, dict]:
    """(seconds, peak RSS in GB so far, CPU seconds, result) of ``what`` run in a fresh
    interpreter. The peak is over all children run so far (ru_maxrss of RUSAGE_CHILDREN)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", what, "--sequences", str(sequences)],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    peak_gb = after.ru_maxrss / 2**20  # KiB -> GiB
    return seconds, peak_gb, cpu, json.loads(out.strip().splitlines()[-1])


CHILDREN = {"ours": run_ours, "reference": run_reference, "decode_floor": run_decode_floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-sequences", type=int, default=5)
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=int, default=SEQUENCES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, REPO)
    if args.child:
        print(json.dumps(CHILDREN[args.child](WORK, args.sequences)))
        return

    make_data(WORK)
    n = args.reference_sequences
    ours_s, ours_gb, ours_cpu, ours = timed_child("ours", SEQUENCES)
    print(
        f"ours, {SEQUENCES} sequences: {ours_s:.1f} s (CPU {ours_cpu:.1f} s), "
        f"peak RSS {ours_gb:.2f} GB; in the process: import {ours['import_s']:.1f} s, "
        f"evaluation {ours['evaluation_s']:.1f} s",
        flush=True,
    )
    floor_s, _, floor_cpu, floor = timed_child("decode_floor", SEQUENCES)
    print(
        f"decode floor, {SEQUENCES} sequences ({floor['pngs']} PNGs, cv2.imread only): "
        f"{floor_s:.1f} s (CPU {floor_cpu:.1f} s); in the process: decoding "
        f"{floor['decode_s']:.1f} s",
        flush=True,
    )
    _, _, _, ours_subset = timed_child("ours", n)
    ref_s, ref_gb, _, reference = timed_child("reference", n)
    scaled = reference["evaluation_s"] * SEQUENCES / n
    print(
        f"reference, {n} sequences: {ref_s:.1f} s; in the process {reference['evaluation_s']:.1f} "
        f"s (scaled to {SEQUENCES}: {scaled:.1f} s), peak RSS so far {ref_gb:.2f} GB"
    )
    for mine, theirs in zip(ours_subset["dvpq"], reference["dvpq"], strict=True):
        assert (mine["k"], mine["lambda"]) == (theirs["k"], theirs["lambda"])
        assert abs(mine["pq"] - theirs["pq"]) < 1e-9, (mine, theirs)
    print("tables equal on the shared sequences:")
    for entry in ours["dvpq"]:
        print(f"  k={entry['k']} lambda={entry['lambda']}: DVPQ {entry['pq']:.3f}")
    print(f"peak memory goal < 2 GB: {'met' if ours_gb < 2 else 'NOT met'} ({ours_gb:.2f} GB)")
    ours_work, floor_work = ours["evaluation_s"], floor["decode_s"]
    print(
        f"ours / decode floor: {ours_work / floor_work:.3f} (goal <= 2.0); with starting Python "
        f"and importing: {ours_s / floor_s:.3f}"
    )
    print(f"reference / ours: {scaled / ours_work:.3f} (goal >= 50)")
    print(f"RESULT dvpq_eval_decode_floor ratio={ours_work / floor_work:.3f} goal<=2.0")
    print(f"RESULT dvpq_eval ratio={scaled / ours_work:.3f} goal>=50")


if __name__ == "__main__":
    main()
