"""COCO panoptic predictions (``--pred-format coco_panoptic --pred-json FILE``) against the
official prediction files: one model's outputs written both ways must give the same numbers
(panoptic_depthlab/evaluation/coco_panoptic.py: the segment ids are renamed one-to-one).

The model outputs are what Detectron2's Panoptic-DeepLab and our model return:
``panoptic_seg`` = (H, W) ids ``class * label_divisor + instance``, -1 = void. They are the
ground truth with broken tracks, a void band, a wrong-class patch, a thing without instance id
and noisy depth, so no metric is trivially 100. The COCO files come from Detectron2's own
``COCOPanopticEvaluator.process`` (panopticapi's ``id2rgb``, ids + 1, ``isthing`` popped).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES
from detectron2.evaluation import COCOPanopticEvaluator

import panoptic_depthlab  # noqa: F401  (registers cityscapes_dvps_val, semkitti_dvps_val)
from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.evaluation.evaluate_files import evaluate_prediction_files
from panoptic_depthlab.evaluation.formats import read_ground_truth, write_prediction
from panoptic_depthlab.panoptic_ids import split_panoptic

from .test_eval_dvpq_cli import _args, _load_cli_main

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
SHAPES = {CITYSCAPES: (2, 3, 64, 128), SEMKITTI: (2, 4, 64, 128)}  # (seqs, frames, H, W)
TRACK_OFFSET = {CITYSCAPES: 0, SEMKITTI: 40000}  # SemKITTI-DVPS ids need the 16-bit PNG


def _records(gt_dir: Path, fmt: str) -> list[dict]:
    return load_dvps_split(str(gt_dir.parents[1]), gt_dir.name, fmt)


def model_outputs(gt_dir: Path, fmt: str) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """Per frame: (record, panoptic_seg (H, W) int32 with -1 = void, depth (H, W) meters)."""
    meta = dvps_metadata(fmt)
    divisor, car = meta["label_divisor"], meta["stuff_classes"].index("car")
    records = _records(gt_dir, fmt)
    outputs = []
    for seq in sorted({r["sequence_id"] for r in records}):
        frames = [(r, read_ground_truth(r, meta)) for r in records if r["sequence_id"] == seq]
        ids = np.unique(np.concatenate([gt[1].ravel() for _, gt in frames]))
        tracks = np.zeros(int(ids.max()) + 1, np.int64)  # a tracker's ids: 1, 2, ... per sequence
        tracks[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1) + TRACK_OFFSET[fmt]
        for position, (record, (classes, instances, depth)) in enumerate(frames):
            instances = tracks[instances]
            if position == 1:  # the tracker loses every object
                instances = np.where(instances > 0, instances + 100, 0)
            panoptic = np.where(classes == meta["ignore_label"], -1, classes * divisor + instances)
            if position == 0:
                panoptic[:6] = -1  # a void band
            if position == 2:
                panoptic[-12:, :48] = meta["stuff_classes"].index("vegetation") * divisor
                panoptic[20:28, -20:] = car * divisor  # a car without instance id
            wave = np.sin(np.arange(depth.size) + position).reshape(depth.shape)
            depth_m = depth * (1 + 0.12 * wave) + np.where(depth == 0, 30.0, 0.0)
            outputs.append((record, panoptic.astype(np.int32), depth_m))
    return outputs


def write_official(outputs, fmt: str, pred_dir: Path, depth_dir: Path) -> None:
    """The official prediction files, as our model's evaluator writes them."""
    meta = dvps_metadata(fmt)
    for record, panoptic, depth_m in outputs:
        classes, instances = split_panoptic(panoptic, meta["label_divisor"], meta["num_classes"])
        write_prediction(
            str(pred_dir), str(depth_dir), record["file_name"], meta, classes, instances, depth_m
        )


def write_coco_with_detectron2(outputs, fmt: str, pred_dir: Path, json_path: Path) -> None:
    """COCO panoptic PNGs and JSON from Detectron2's COCOPanopticEvaluator.process (its
    evaluate() would write the same bytes and annotations, then run panopticapi)."""
    evaluator = COCOPanopticEvaluator(f"{fmt}_val")  # only its metadata is used
    evaluator.reset()
    for record, panoptic, _ in outputs:
        inputs = [{"file_name": record["file_name"], "image_id": record["image_id"]}]
        # A copy: process() adds 1 to the tensor's memory in place.
        evaluator.process(inputs, [{"panoptic_seg": (torch.tensor(panoptic), None)}])
    pred_dir.mkdir(parents=True)
    annotations = []
    for prediction in evaluator._predictions:
        (pred_dir / prediction["file_name"]).write_bytes(prediction.pop("png_string"))
        annotations.append(prediction)
    json_path.write_text(json.dumps({"annotations": annotations}))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict]:
    """Per format: ``gt``, ``pred`` + ``depth`` (official), ``coco`` + ``json``, ``official``
    (the results of the official files)."""
    out = {}
    for fmt, (seqs, frames, height, width) in SHAPES.items():
        root = tmp_path_factory.mktemp(f"coco_{fmt}")
        generate_synthetic_dvps(str(root), fmt, "val", seqs, frames, height, width, seed=7)
        gt = root / "video_sequence" / "val"
        outputs = model_outputs(gt, fmt)
        write_official(outputs, fmt, root / "pred", root / "depth")
        write_coco_with_detectron2(outputs, fmt, root / "coco", root / "predictions.json")
        paths = {"gt": gt, "pred": root / "pred", "depth": root / "depth"}
        paths.update(coco=root / "coco", json=root / "predictions.json")
        official = evaluate_prediction_files(fmt, str(gt), str(paths["pred"]), str(paths["depth"]))
        longest = frames * (seqs if fmt == SEMKITTI else 1)  # SemKITTI: windows cross sequences
        pqs = [e["pq"] for e in official["dvpq"] if e["k"] <= longest]
        assert max(pqs) < 100 and min(pqs) > 0 and len(set(pqs)) >= 4, pqs
        if fmt == SEMKITTI:
            assert 0 < official["stq"] < 100 and 0 < official["dstq"] < 100
        out[fmt] = dict(paths, official=official)
    return out


def _evaluate_coco(paths: dict, fmt: str, json_path: Path | None = None, **kwargs) -> dict:
    return evaluate_prediction_files(
        fmt,
        str(paths["gt"]),
        str(paths["coco"]),
        str(paths["depth"]),
        pred_format="coco_panoptic",
        pred_json=str(json_path or paths["json"]),
        **kwargs,
    )


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_detectron2_coco_files_give_the_official_numbers(data, fmt):
    annotation = json.loads(data[fmt]["json"].read_text())["annotations"][0]
    assert all(set(s) == {"id", "category_id"} for s in annotation["segments_info"])
    assert _evaluate_coco(data[fmt], fmt) == data[fmt]["official"]


def test_coco_files_read_by_two_workers_give_the_official_numbers(data):
    """The segment tables travel to the worker processes; chunks of 3 frames, as the official
    run, so that the float sums are made in the same order."""
    paths = data[SEMKITTI]
    official = evaluate_prediction_files(
        SEMKITTI, str(paths["gt"]), str(paths["pred"]), str(paths["depth"]), chunk_frames=3
    )
    assert _evaluate_coco(paths, SEMKITTI, workers=2, chunk_frames=3) == official


def _relabel(data: dict, fmt: str, tmp_path: Path, categories: list[dict], key: str) -> Path:
    """A copy of the JSON whose category ids are ``categories[i][key]`` for train id i, with
    the ``categories`` list."""
    content = json.loads(data[fmt]["json"].read_text())
    new_id = {c["trainId"]: c[key] for c in categories}
    for annotation in content["annotations"]:
        for segment in annotation["segments_info"]:
            segment["category_id"] = new_id[segment["category_id"]]
    content["categories"] = [
        {"id": c[key], "name": c["name"], "isthing": c["isthing"]} for c in categories
    ]
    path = tmp_path / "relabelled.json"
    path.write_text(json.dumps(content))
    return path


def _cityscapes_label_id_json(data: dict, tmp_path: Path) -> Path:
    """Category ids = Cityscapes label ids (7..33), as Detectron2's cityscapes_fine_panoptic_*
    datasets have them, plus a category this dataset does not have (never used)."""
    categories = [dict(c) for c in CITYSCAPES_CATEGORIES]
    path = _relabel(data, CITYSCAPES, tmp_path, categories, "id")
    content = json.loads(path.read_text())
    content["categories"].append({"id": 0, "name": "unlabeled", "isthing": 0})
    path.write_text(json.dumps(content))
    return path


def test_cityscapes_label_ids_with_categories_give_the_same_numbers(data, tmp_path):
    path = _cityscapes_label_id_json(data, tmp_path)
    annotations = json.loads(path.read_text())["annotations"]
    ids = {s["category_id"] for a in annotations for s in a["segments_info"]}
    assert ids and min(ids) >= 7  # label ids, not train ids
    assert _evaluate_coco(data[CITYSCAPES], CITYSCAPES, path) == data[CITYSCAPES]["official"]


def test_semkitti_categories_are_matched_by_name(data, tmp_path):
    """Any ids, names in another spelling (case, ``-`` and ``_`` ignored)."""
    meta = dvps_metadata(SEMKITTI)
    categories = [
        {
            "trainId": i,
            "id": 200 - 3 * i,
            "name": name.upper().replace("-", "_") if i % 2 else name.replace("-", " "),
            "isthing": int(i in meta["thing_ids"]),
        }
        for i, name in enumerate(meta["stuff_classes"])
    ]
    path = _relabel(data, SEMKITTI, tmp_path, categories, "id")
    assert _evaluate_coco(data[SEMKITTI], SEMKITTI, path) == data[SEMKITTI]["official"]


# Bad input: each function damages a private copy (keys coco, json) and returns the texts the
# error must hold (``{json}`` and ``{coco}`` are filled in).


def _annotations(paths: dict) -> dict:
    return json.loads(paths["json"].read_text())


def _save(paths: dict, content: dict) -> None:
    paths["json"].write_text(json.dumps(content))


def _unknown_train_id(paths: dict) -> list[str]:
    content = _annotations(paths)
    annotation = content["annotations"][1]
    annotation["segments_info"][0]["category_id"] = 19
    _save(paths, content)
    return [
        f"{{json}}, {annotation['file_name']}: category_id 19; without a 'categories' list",
        "train ids 0..18",
    ]


def _unknown_category_id(paths: dict) -> list[str]:
    content = _annotations(paths)
    annotation = content["annotations"][2]
    annotation["segments_info"][-1]["category_id"] = 99
    _save(paths, content)
    return [f"{{json}}, {annotation['file_name']}: category_id 99 is not in the JSON's categories."]


def _unknown_category_name(paths: dict) -> list[str]:
    content = _annotations(paths)
    (road,) = [c for c in content["categories"] if c["name"] == "road"]
    road["name"] = "flying saucer"
    _save(paths, content)
    first = content["annotations"][0]["file_name"]
    return [f"{{json}}, {first}: category_id 7 names a class this dataset does not have."]


def _one_id_two_classes(paths: dict) -> list[str]:
    content = _annotations(paths)
    first, second = content["annotations"][:2]  # frames 0 and 1 of sequence 000000
    shared = {s["id"] for s in first["segments_info"]} & {s["id"] for s in second["segments_info"]}
    segment = next(s for s in second["segments_info"] if s["id"] == min(shared))
    old = segment["category_id"]
    segment["category_id"] = (old + 1) % 19
    _save(paths, content)
    return [
        f"{{json}}, {second['file_name']}: segment id {segment['id']} is class "
        f"{(old + 1) % 19} here and class {old} in {first['file_name']} of the same sequence "
        "000000;"
    ]


def _png_id_not_listed(paths: dict) -> list[str]:
    content = _annotations(paths)
    annotation = content["annotations"][3]
    dropped = annotation["segments_info"].pop(0)
    _save(paths, content)
    return [
        f"{{coco}}/{annotation['file_name']}: segment id {dropped['id']} is in the PNG but not "
        "in its segments_info in {json}."
    ]


def _two_annotations_of_one_frame(paths: dict) -> list[str]:
    content = _annotations(paths)
    other = dict(content["annotations"][2])
    first = other["file_name"]
    other["file_name"] = first.replace("_leftImg8bit", "_other")
    content["annotations"].append(other)
    _save(paths, content)
    frame_id = "_".join(first.split("_")[:2])
    return [f"{{json}}: two annotations for the frame {frame_id}: {first} and {other['file_name']}"]


def _png_missing(paths: dict) -> list[str]:
    name = _annotations(paths)["annotations"][4]["file_name"]
    (paths["coco"] / name).unlink()
    return ["1 of 6 ground-truth frames have no prediction", f"\n  {{coco}}/{name}\n"]


def _annotation_missing(paths: dict) -> list[str]:
    content = _annotations(paths)
    name = content["annotations"].pop(5)["file_name"]
    _save(paths, content)
    frame_id = "_".join(name.split("_")[:2])
    return ["1 of 6 ground-truth frames", f"{{json}}: no annotation of the frame {frame_id}"]


def _two_annotations(paths: dict) -> list[str]:
    content = _annotations(paths)
    content["annotations"].append(dict(content["annotations"][1]))
    _save(paths, content)
    name = content["annotations"][1]["file_name"]
    return [f"{{json}}: two annotations for {name}; expected one per file."]


def _unreadable_json(paths: dict) -> list[str]:
    paths["json"].write_text('{"annotations": [')
    return ["{json}: not a readable JSON file"]


def _no_annotations(paths: dict) -> list[str]:
    paths["json"].write_text(json.dumps({"images": []}))
    return ["{json}: expected a COCO panoptic JSON with an 'annotations' list."]


BAD_INPUT: list[tuple[Callable[[dict], list[str]], bool]] = [  # (damage, with categories)
    (_unknown_train_id, False),
    (_two_annotations_of_one_frame, False),
    (_unknown_category_id, True),
    (_unknown_category_name, True),
    (_one_id_two_classes, False),
    (_png_id_not_listed, False),
    (_png_missing, False),
    (_annotation_missing, False),
    (_two_annotations, False),
    (_unreadable_json, False),
    (_no_annotations, False),
]


@pytest.fixture(scope="module")
def cli_main():
    return _load_cli_main()


@pytest.mark.parametrize(
    ("damage", "categories"), BAD_INPUT, ids=[d.__name__ for d, _ in BAD_INPUT]
)
def test_bad_coco_input_exits_2_without_json(data, cli_main, tmp_path, capsys, damage, categories):
    paths = dict(data[CITYSCAPES], coco=tmp_path / "coco", json=tmp_path / "predictions.json")
    shutil.copytree(data[CITYSCAPES]["coco"], paths["coco"])
    if categories:
        shutil.move(_cityscapes_label_id_json(data, tmp_path), paths["json"])
    else:
        shutil.copy(data[CITYSCAPES]["json"], paths["json"])
    expected = [m.format(json=paths["json"], coco=paths["coco"]) for m in damage(paths)]
    output = tmp_path / "out" / "results.json"
    coco = "--pred-format", "coco_panoptic", "--pred-json", str(paths["json"])
    args = _args({**paths, "pred": paths["coco"]}, CITYSCAPES, output, *coco)
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    error = err[err.index("eval_dvpq.py: error: ") :]
    for message in expected:
        assert message in error
    if damage not in (_png_missing, _annotation_missing):  # those list the missing files
        assert error.count("\n") == 1, error  # one line
    assert not output.parent.exists()


@pytest.mark.parametrize(
    "extra",
    [["--pred-format", "coco_panoptic"], ["--pred-json", "predictions.json"]],
)
def test_pred_json_goes_with_coco_panoptic_only(data, cli_main, tmp_path, capsys, extra):
    paths = data[CITYSCAPES]
    output = tmp_path / "results.json"
    args = ["--dataset", CITYSCAPES, "--gt-dir", str(paths["gt"]), "--pred-dir", str(paths["coco"])]
    args += ["--depth-dir", str(paths["depth"]), "--output", str(output), *extra]
    with pytest.raises(SystemExit) as exit_info:
        cli_main(args)
    assert exit_info.value.code == 2
    assert "--pred-json is needed with --pred-format coco_panoptic" in capsys.readouterr().err
    assert not output.exists()


def test_annotations_of_other_frames_are_ignored_with_a_warning(data, tmp_path, caplog):
    content = json.loads(data[CITYSCAPES]["json"].read_text())
    content["annotations"].append({"file_name": "000099_000000.png", "segments_info": []})
    content["annotations"].append({"file_name": "readme.png", "segments_info": []})
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps(content))
    assert _evaluate_coco(data[CITYSCAPES], CITYSCAPES, path) == data[CITYSCAPES]["official"]
    assert f"ignoring 2 annotations of {path}" in caplog.text
