"""DVPSEvaluator on registered synthetic datasets, fed outputs built from the ground truth."""

from __future__ import annotations

import json
import os
import random
import socket

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils import comm

from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.data.annotations import read_depth, read_panoptic
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.engine import launch
from panoptic_depthlab.evaluation.evaluate_files import evaluate_prediction_files
from panoptic_depthlab.evaluation.evaluator import DVPSEvaluator
from panoptic_depthlab.panoptic_ids import TRACK_LABEL_DIVISOR

SHAPES = {"cityscapes_dvps": (2, 6, 64, 128), "semkitti_dvps": (1, 20, 64, 160)}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, str]:
    """Per format, the name of a registered synthetic val split."""
    names = {}
    for fmt, (seqs, frames, height, width) in SHAPES.items():
        root = tmp_path_factory.mktemp(fmt)
        generate_synthetic_dvps(str(root), fmt, "val", seqs, frames, height, width, seed=3)
        names[fmt] = f"test_evaluator_{fmt}"
        register_dvps_dataset(names[fmt], str(root), "val", fmt)
    return names


def oracle_outputs(records: list[dict], meta) -> list[dict]:
    """Tracked model outputs that equal the frames' ground truth: ids ``class *
    TRACK_LABEL_DIVISOR + n`` (as video inference gives them), void pixels -1, and the instances
    of each class numbered 1, 2, ... per sequence (as the tracker numbers them)."""
    panoptics = [read_panoptic(r, meta.as_dict()).astype(np.int64) for r in records]
    outputs = []
    for record, panoptic in zip(records, panoptics, strict=True):
        same_sequence = [
            p
            for r, p in zip(records, panoptics, strict=True)
            if r["sequence_id"] == record["sequence_id"]
        ]
        ids = np.unique(np.concatenate([p.ravel() for p in same_sequence]))
        things = ids[ids % meta.label_divisor > 0]
        classes = things // meta.label_divisor
        first = np.searchsorted(classes, classes)  # index of each class's first id
        numbered = classes * TRACK_LABEL_DIVISOR + 1 + np.arange(len(things)) - first
        renumbered = panoptic // meta.label_divisor * TRACK_LABEL_DIVISOR  # stuff
        is_thing = np.isin(panoptic, things)
        renumbered[is_thing] = numbered[np.searchsorted(things, panoptic[is_thing])]
        renumbered[panoptic // meta.label_divisor == meta.ignore_label] = -1
        depth = read_depth(record, meta.as_dict())
        outputs.append(
            {"panoptic_seg": (torch.from_numpy(renumbered), []), "depth": torch.from_numpy(depth)}
        )
    return outputs


def with_swapped_ids(outputs: list[dict], meta) -> list[dict]:
    """The outputs with, in frame 2, every thing instance given another instance's id of its
    class (a cyclic shift): a broken tube."""
    panoptic = outputs[2]["panoptic_seg"][0]
    shifted = panoptic.clone()
    for cls in meta.thing_ids:
        ids = [int(i) for i in torch.unique(panoptic) if i // TRACK_LABEL_DIVISOR == cls]
        ids = [i for i in ids if i % TRACK_LABEL_DIVISOR]
        for a, b in zip(ids, ids[1:] + ids[:1], strict=True):
            shifted[panoptic == a] = b
    assert (shifted != panoptic).any()
    return [*outputs[:2], {**outputs[2], "panoptic_seg": (shifted, [])}, *outputs[3:]]


def run(evaluator: DVPSEvaluator, records: list[dict], outputs: list[dict]) -> dict:
    order = list(range(len(records)))
    random.Random(0).shuffle(order)  # frames may arrive in any order
    evaluator.reset()
    for i in order:
        evaluator.process([records[i]], [outputs[i]])
    return evaluator.evaluate()["dvps"]


@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_ground_truth_outputs_score_100(datasets, fmt):
    name = datasets[fmt]
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    results = run(DVPSEvaluator(name), records, oracle_outputs(records, meta))
    k_set, lambdas = meta.dvpq_window_sizes, [*meta.dvpq_depth_thresholds, 0]
    assert {key: results[key] for key in results if key.startswith("DVPQ")} == {
        "DVPQ": 100.0,
        "DVPQ_th": 100.0,
        "DVPQ_st": 100.0,
        **{f"DVPQ@k{k}_l{lam:g}": 100.0 for k in k_set for lam in lambdas},
    }
    assert results["abs_rel"] == 0 and results["delta1"] == 100
    if fmt == "semkitti_dvps":
        assert results["STQ"] == pytest.approx(100) and results["DSTQ"] == pytest.approx(100)


@pytest.mark.parametrize("fmt", sorted(SHAPES))
def test_swapped_ids_lower_only_multi_frame_windows(datasets, fmt, tmp_path):
    name = datasets[fmt]
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    outputs = with_swapped_ids(oracle_outputs(records, meta), meta)
    results = run(DVPSEvaluator(name, output_dir=str(tmp_path)), records, outputs)
    k1 = [v for key, v in results.items() if key.startswith("DVPQ@k1_")]
    longer = [v for key, v in results.items() if key.startswith("DVPQ@k") and "@k1_" not in key]
    assert k1 and all(v == 100 for v in k1)
    assert longer and all(v < 100 for v in longer)

    # The prediction files written beside give the same numbers through the file-based core.
    split_dir = os.path.join(meta.dataset_root, "video_sequence", meta.split)
    from_files = evaluate_prediction_files(
        fmt, split_dir, str(tmp_path / "panoptic"), str(tmp_path / "depth")
    )
    written = (tmp_path / "dvps_results.json").read_text()
    assert from_files["dvpq"] == json.loads(written)["dvpq"]


def test_rejects_a_dataset_that_is_not_dvps():
    with pytest.raises(ValueError, match="not a DVPS dataset"):
        DVPSEvaluator("coco_2017_val_panoptic")


def _evaluate_half_of_the_frames(name: str, root: str, fmt: str, out_file: str) -> None:
    """Run in each of two processes: register the dataset, process every other frame (so each
    sequence is split across the processes), evaluate; rank 0 writes the results."""
    if name not in DatasetCatalog.list():
        register_dvps_dataset(name, root, "val", fmt)
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    outputs = with_swapped_ids(oracle_outputs(records, meta), meta)
    evaluator = DVPSEvaluator(name)
    for i in range(comm.get_rank(), len(records), comm.get_world_size()):
        evaluator.process([records[i]], [outputs[i]])
    results = evaluator.evaluate()
    if comm.is_main_process():
        with open(out_file, "w") as f:
            json.dump(results["dvps"], f)
    else:
        assert results == {}


def test_results_are_gathered_across_processes(datasets, tmp_path):
    fmt = "semkitti_dvps"  # STQ state is merged too
    name = datasets[fmt]
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    single = run(
        DVPSEvaluator(name), records, with_swapped_ids(oracle_outputs(records, meta), meta)
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out_file = str(tmp_path / "results.json")
    args = (name, meta.dataset_root, fmt, out_file)
    launch(_evaluate_half_of_the_frames, 2, dist_url=f"tcp://127.0.0.1:{port}", args=args)
    with open(out_file) as f:
        assert json.load(f) == pytest.approx(single)


def _files(folder) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its inode and modification time (a rewrite changes
    them, even with the same bytes)."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_output_folder_is_replaced_only_by_a_complete_run(datasets, tmp_path):
    name = datasets["cityscapes_dvps"]
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    outputs = oracle_outputs(records, meta)
    inference = tmp_path / "inference"
    out = inference / name
    run(DVPSEvaluator(name, output_dir=str(out)), records, outputs)
    before = _files(out)
    assert len(before) == 2 * len(records) + 1  # panoptic and depth PNGs, dvps_results.json
    assert os.listdir(inference) == [name]

    # A run that stops half way (a killed process): its files are in its partial folder only.
    stopped = DVPSEvaluator(name, output_dir=str(out))
    for record, output in zip(records[:5], outputs[:5], strict=True):
        stopped.process([record], [output])
    (partial,) = inference.glob(f"{name}.partial-{os.getpid()}-*")
    assert len(list(partial.rglob("*.png"))) == 2 * 5
    assert _files(out) == before

    # The next run removes that folder, and replaces the results as a whole.
    run(DVPSEvaluator(name, output_dir=str(out)), records, outputs)
    assert os.listdir(inference) == [name]
    after = _files(out)
    assert sorted(after) == sorted(before)
    assert all(after[file] != before[file] for file in after)


def test_a_swap_cut_between_its_renames_is_undone_by_the_next_run(datasets, tmp_path):
    name = datasets["cityscapes_dvps"]
    meta = MetadataCatalog.get(name)
    records = DatasetCatalog.get(name)
    out = tmp_path / name
    run(DVPSEvaluator(name, output_dir=str(out)), records, oracle_outputs(records, meta))
    before = _files(out)
    # Where a process killed after the swap's first rename leaves the previous results (its
    # pid, above any pid_max, is not running).
    aside = tmp_path / f"{name}.old-999999999-0123abcd"
    os.rename(out, aside)
    DVPSEvaluator(name, output_dir=str(out))
    assert _files(out) == before
    assert os.listdir(tmp_path) == [name]


def test_a_failed_evaluation_leaves_no_partial_folder(datasets, tmp_path):
    name = datasets["cityscapes_dvps"]
    evaluator = DVPSEvaluator(name, output_dir=str(tmp_path / name))
    with pytest.raises(ValueError, match=f"DVPSEvaluator on {name}: no frames were processed."):
        evaluator.evaluate()
    assert os.listdir(tmp_path) == []
