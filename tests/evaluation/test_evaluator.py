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
    """Model-style outputs that equal the frames' ground truth: void pixels get id -1 and the
    instances of each class are numbered 1, 2, ... per sequence (as a model numbers them; the
    Cityscapes-DVPS prediction format holds ids up to 255)."""
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
        numbered = classes * meta.label_divisor + 1 + np.arange(len(things)) - first
        renumbered = panoptic.copy()
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
        ids = [int(i) for i in torch.unique(panoptic) if i // meta.label_divisor == cls]
        ids = [i for i in ids if i % meta.label_divisor]
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
