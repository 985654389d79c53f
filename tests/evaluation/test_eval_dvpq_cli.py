"""tools/eval_dvpq.py and its core on synthetic datasets with prediction files in the official
formats. Ground truth written as the prediction must score DVPQ 100 (and STQ/DSTQ 100).

Most runs call the CLI's ``main`` in this process; the two ground-truth runs start it as a
subprocess, as a user would.
"""

from __future__ import annotations

import json
import runpy
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoptic_depthlab.data.datasets import dvps_metadata, load_dvps_split
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.evaluation.evaluate_files import evaluate_prediction_files
from panoptic_depthlab.evaluation.formats import (
    prediction_file_names,
    read_ground_truth,
    read_prediction,
    write_prediction,
)

from .stq_reference import OfficialFeedDSTQ

REPO = Path(__file__).resolve().parents[2]
CLI = REPO / "tools" / "eval_dvpq.py"
CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
# (sequences, frames, height, width): SemKITTI-DVPS gets 20 frames so that its k = 20 has a window.
SHAPES = {CITYSCAPES: (2, 6, 64, 128), SEMKITTI: (1, 20, 64, 160)}
LAMBDAS = [0.5, 0.25, 0.1, 0.0]


def _load_cli_main() -> Callable[[list[str]], int]:
    """``main`` of tools/eval_dvpq.py (tools/ is not a package)."""
    return runpy.run_path(str(CLI), run_name="eval_dvpq")["main"]


def write_ground_truth_predictions(
    gt_dir: Path, fmt: str, pred_dir: Path, depth_dir: Path, offset=lambda sequence: 0
) -> None:
    """Write each frame's ground truth as its prediction (depth = ground-truth depth).

    Instance ids are renumbered ``offset(sequence) + 1, 2, ...`` per sequence (by default
    1..n: the official Cityscapes-DVPS format holds 0..255); a bijection, so every metric is
    unchanged. Void becomes class 19.
    """
    meta = dvps_metadata(fmt)
    records = load_dvps_split(str(gt_dir.parents[1]), gt_dir.name, fmt)
    for seq in sorted({r["sequence_id"] for r in records}):
        frames = [(r, read_ground_truth(r, meta)) for r in records if r["sequence_id"] == seq]
        ids = np.unique(np.concatenate([gt[1].ravel() for _, gt in frames]))
        lut = np.zeros(int(ids.max()) + 1, np.int64)
        lut[ids[ids > 0]] = offset(seq) + np.arange(1, int((ids > 0).sum()) + 1)
        for record, (gt_class, gt_instance, gt_depth) in frames:
            write_prediction(
                str(pred_dir),
                str(depth_dir),
                record["file_name"],
                meta,
                gt_class,
                lut[gt_instance],
                gt_depth,
            )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per format: ``gt`` (split dir), ``pred`` and ``depth`` (ground truth as prediction)."""
    out = {}
    for fmt, (seqs, frames, height, width) in SHAPES.items():
        root = tmp_path_factory.mktemp(fmt)
        generate_synthetic_dvps(str(root), fmt, "val", seqs, frames, height, width, seed=1)
        gt = root / "video_sequence" / "val"
        write_ground_truth_predictions(gt, fmt, root / "pred", root / "depth")
        out[fmt] = {"gt": gt, "pred": root / "pred", "depth": root / "depth"}
    return out


@pytest.fixture(scope="module")
def cli_main() -> Callable[[list[str]], int]:
    return _load_cli_main()


def _args(paths: dict[str, Path], fmt: str, output: Path, *extra: str) -> list[str]:
    return [
        "--dataset",
        fmt,
        "--gt-dir",
        str(paths["gt"]),
        "--pred-dir",
        str(paths["pred"]),
        "--depth-dir",
        str(paths["depth"]),
        "--output",
        str(output),
        *extra,
    ]


@pytest.fixture(scope="module")
def subprocess_runs(data, tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """The ground-truth predictions through the CLI as a subprocess (workers 1), per format."""
    runs = {}
    for fmt in SHAPES:
        output = tmp_path_factory.mktemp(f"out_{fmt}") / "results.json"
        proc = subprocess.run(
            [sys.executable, str(CLI), *_args(data[fmt], fmt, output)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        runs[fmt] = (proc, output)
    return runs


def _copy_predictions(paths: dict[str, Path], tmp_path: Path) -> dict[str, Path]:
    """A private, modifiable copy of the prediction directories."""
    copy = dict(paths)
    for key in ("pred", "depth"):
        copy[key] = tmp_path / key
        shutil.copytree(paths[key], copy[key])
    return copy


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_ground_truth_scores_100_through_the_cli(subprocess_runs, fmt):
    proc, output = subprocess_runs[fmt]
    assert proc.returncode == 0, proc.stderr
    results = json.loads(output.read_text())
    meta = dvps_metadata(fmt)
    keys = {"dataset", "dvpq", "dvpq_mean", "per_class", "depth"}
    stq_keys = {"stq", "aq", "iou", "dq", "dstq"}
    assert set(results) == (keys | stq_keys if fmt == SEMKITTI else keys)
    assert results["dataset"] == fmt
    pairs = [(k, lam) for k in meta["dvpq_window_sizes"] for lam in LAMBDAS]
    assert [(e["k"], e["lambda"]) for e in results["dvpq"]] == pairs
    for entry in results["dvpq"]:
        assert set(entry) == {"k", "lambda", "pq", "pq_thing", "pq_stuff"}
        assert entry["pq"] == entry["pq_thing"] == entry["pq_stuff"] == 100.0, entry
    assert results["dvpq_mean"] == {"pq": 100.0, "pq_thing": 100.0, "pq_stuff": 100.0}
    assert list(results["per_class"]) == meta["stuff_classes"]
    present = [v for v in results["per_class"].values() if v is not None]
    assert present and all(v["pq"] == 100.0 and v["fp"] == v["fn"] == 0 for v in present)
    depth = results["depth"]
    assert depth["abs_rel"] == 0 and depth["rmse"] == 0 and depth["delta1"] == 100
    assert depth["frames"] == SHAPES[fmt][0] * SHAPES[fmt][1]
    if fmt == SEMKITTI:
        assert all(results[key] == pytest.approx(100) for key in stq_keys)
    assert "PQ_th" in proc.stdout and "abs_rel" in proc.stdout
    assert ("DSTQ" in proc.stdout) == (fmt == SEMKITTI)
    assert [p.name for p in output.parent.iterdir()] == ["results.json"]  # no temporary left


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_two_workers_write_the_same_json(subprocess_runs, data, cli_main, tmp_path, fmt):
    _, output_1 = subprocess_runs[fmt]
    output_2 = tmp_path / "results.json"
    assert cli_main(_args(data[fmt], fmt, output_2, "--workers", "2")) == 0
    assert output_2.read_bytes() == output_1.read_bytes()


def _noisy_predictions(paths: dict[str, Path], fmt: str, tmp_path: Path) -> dict[str, Path]:
    """Ground truth with depth off by a few percent in every frame and shifted instance ids in
    frame 2, so that every metric has nontrivial floating-point sums."""
    noisy = _copy_predictions(paths, tmp_path)
    records = load_dvps_split(str(paths["gt"].parents[1]), paths["gt"].name, fmt)
    for i, record in enumerate(records):
        image = record["file_name"]
        cls, inst, depth = read_prediction(
            str(noisy["pred"]), str(noisy["depth"]), image, dvps_metadata(fmt)
        )
        depth = depth * (1 + 0.05 * np.sin(np.arange(depth.size) + i).reshape(depth.shape))
        if i == 2:
            inst = np.where(inst > 0, inst + 100, 0)
        write_prediction(
            str(noisy["pred"]), str(noisy["depth"]), image, dvps_metadata(fmt), cls, inst, depth
        )
    return noisy


@pytest.mark.parametrize("fmt", [CITYSCAPES, SEMKITTI])
def test_results_do_not_depend_on_workers(data, tmp_path, fmt):
    noisy = _noisy_predictions(data[fmt], fmt, tmp_path)
    args = (fmt, str(noisy["gt"]), str(noisy["pred"]), str(noisy["depth"]))
    one = evaluate_prediction_files(*args, workers=1, chunk_frames=3)
    two = evaluate_prediction_files(*args, workers=2, chunk_frames=3)
    assert one == two
    assert 0 < one["depth"]["abs_rel"] < 0.05
    # Other chunk sizes only reorder float sums.
    default = evaluate_prediction_files(*args)
    assert default["dvpq"] == one["dvpq"] and default["per_class"] == one["per_class"]
    assert default["depth"] == pytest.approx(one["depth"], rel=1e-12)
    if fmt == SEMKITTI:
        assert 0 < one["stq"] < 100 and 0 < one["dstq"] < 100
        assert default["stq"] == one["stq"]
        assert default["dstq"] == pytest.approx(one["dstq"], rel=1e-12)


def test_shifted_instance_ids_lower_only_multi_frame_windows(data, cli_main, tmp_path):
    paths = _copy_predictions(data[CITYSCAPES], tmp_path)
    record = load_dvps_split(str(paths["gt"].parents[1]), "val", CITYSCAPES)[2]
    image = record["file_name"]
    cls, inst, depth = read_prediction(
        str(paths["pred"]), str(paths["depth"]), image, dvps_metadata(CITYSCAPES)
    )
    assert (inst > 0).any()
    inst = np.where(inst > 0, inst + 100, 0)  # new ids in frame 2 of sequence 0 only
    write_prediction(
        str(paths["pred"]), str(paths["depth"]), image, dvps_metadata(CITYSCAPES), cls, inst, depth
    )
    output = tmp_path / "results.json"
    assert cli_main(_args(paths, CITYSCAPES, output)) == 0
    results = json.loads(output.read_text())
    for entry in results["dvpq"]:
        if entry["k"] == 1:
            assert entry["pq"] == entry["pq_thing"] == 100.0, entry
        else:
            assert entry["pq_thing"] < 100 and entry["pq"] < 100, entry
        assert entry["pq_stuff"] == 100.0


def _first_prediction(paths: dict[str, Path], fmt: str, index: int = 0) -> Path:
    records = load_dvps_split(str(paths["gt"].parents[1]), paths["gt"].name, fmt)
    return paths["pred"] / prediction_file_names(records[index]["file_name"], dvps_metadata(fmt))[0]


def _missing_11(paths: dict[str, Path]) -> None:
    for path in sorted(paths["pred"].iterdir())[:11]:
        path.unlink()


def _missing_instance_file(paths: dict[str, Path]) -> None:
    next(paths["pred"].glob("*_ins.png")).unlink()


def _smaller(paths: dict[str, Path]) -> None:
    path = _first_prediction(paths, CITYSCAPES, 3)
    cv2.imwrite(str(path), cv2.imread(str(path))[:32, :64])


def _smaller_depth(paths: dict[str, Path]) -> None:
    path = sorted(paths["depth"].iterdir())[5]
    cv2.imwrite(str(path), cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[:, :100])


def _class_25(paths: dict[str, Path]) -> None:
    path = _first_prediction(paths, CITYSCAPES, 1)
    bgr = cv2.imread(str(path))
    bgr[:2, :, 2] = 25  # red channel: class
    cv2.imwrite(str(path), bgr)


def _unreadable(paths: dict[str, Path]) -> None:
    (paths["depth"] / sorted(p.name for p in paths["depth"].iterdir())[4]).write_bytes(b"x")


def _empty(paths: dict[str, Path]) -> None:
    shutil.rmtree(paths["pred"])
    paths["pred"].mkdir()


def _no_dir(paths: dict[str, Path]) -> None:
    shutil.rmtree(paths["depth"])


def _no_gt(paths: dict[str, Path]) -> None:
    paths["gt"] = paths["gt"].parent / "test"


@pytest.mark.parametrize(
    ("fmt", "damage", "messages"),
    [
        (
            CITYSCAPES,
            _missing_11,
            ["11 of 12 ground-truth frames have no prediction", "(first 10)"],
        ),
        (SEMKITTI, _missing_instance_file, ["1 of 20 ground-truth frames", "_ins.png"]),
        (CITYSCAPES, _smaller, ["size (H, W) = (32, 64) differs from its ground truth"]),
        (CITYSCAPES, _smaller_depth, ["size (H, W) = (64, 100) differs from its ground truth"]),
        (CITYSCAPES, _class_25, ["predicted class id 25", "expected train ids 0..18 or 19"]),
        (CITYSCAPES, _unreadable, ["not a readable PNG", "16-bit depth prediction"]),
        (CITYSCAPES, _empty, ["is empty"]),
        (SEMKITTI, _no_dir, ["depth prediction directory", "does not exist"]),
        (CITYSCAPES, _no_gt, ["ground-truth directory", "does not exist"]),
    ],
)
def test_bad_input_exits_2_without_json(data, cli_main, tmp_path, capsys, fmt, damage, messages):
    paths = _copy_predictions(data[fmt], tmp_path)
    damage(paths)
    output = tmp_path / "out" / "results.json"
    assert cli_main(_args(paths, fmt, output)) == 2
    err = capsys.readouterr().err
    assert "eval_dvpq.py: error:" in err
    for message in messages:
        assert message in err
    if damage is _missing_11:  # the first ten missing files are named, not the eleventh
        names = sorted(p.name for p in data[fmt]["pred"].iterdir())
        assert all(name in err for name in names[:10]) and names[10] not in err
    assert not output.parent.exists() or not any(output.parent.iterdir())


def test_extra_files_are_ignored_with_a_warning(data, cli_main, tmp_path, capsys):
    paths = _copy_predictions(data[CITYSCAPES], tmp_path)
    for i in range(6):
        (paths["pred"] / f"zz_extra_{i}.png").write_bytes(b"x")
    (paths["depth"] / "notes.txt").write_text("x")
    output = tmp_path / "results.json"
    assert cli_main(_args(paths, CITYSCAPES, output)) == 0
    err = capsys.readouterr().err
    assert f"WARNING: ignoring 6 files in {paths['pred']}" in err
    assert "zz_extra_4.png" in err and "zz_extra_5.png" not in err  # the first five
    assert f"WARNING: ignoring 1 files in {paths['depth']}" in err
    assert all(e["pq"] == 100 for e in json.loads(output.read_text())["dvpq"])


def test_window_longer_than_every_sequence_warns(data, cli_main, tmp_path, capsys):
    output = tmp_path / "results.json"
    args = _args(data[CITYSCAPES], CITYSCAPES, output, "--frames", "1", "7", "--lambdas", "0.1")
    assert cli_main(args) == 0
    assert "no window of k = 7 frames fits in the sequences" in capsys.readouterr().err
    results = json.loads(output.read_text())
    assert [(e["k"], e["lambda"], e["pq"]) for e in results["dvpq"]] == [
        (1, 0.1, 100.0),
        (7, 0.1, None),
    ]
    assert "per_class" not in results  # needs k = 1 and lambda = 0


def test_plot_writes_png_charts(data, cli_main, tmp_path):
    plots = tmp_path / "plots"
    assert cli_main(_args(data[SEMKITTI], SEMKITTI, tmp_path / "r.json", "--plot", str(plots))) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["dvpq_vs_k.png", "per_class_pq.png"]
    for path in plots.iterdir():
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.std() > 0


def test_bad_frame_read_by_a_worker_exits_2(data, cli_main, tmp_path, capsys):
    paths = _copy_predictions(data[CITYSCAPES], tmp_path)
    path = _first_prediction(paths, CITYSCAPES, 10)  # in the second chunk of frames
    bgr = cv2.imread(str(path))
    bgr[-1, -1, 2] = 200
    cv2.imwrite(str(path), bgr)
    output = tmp_path / "results.json"
    assert cli_main(_args(paths, CITYSCAPES, output, "--workers", "2")) == 2
    assert f"{path}: predicted class id 200 (1 pixels above 19)" in capsys.readouterr().err
    assert not output.exists()


def test_semkitti_stq_equals_the_official_feed_with_depth_of_another_size(data, tmp_path):
    # eval_dstq.py resizes a depth prediction to the ground truth's size (TensorFlow's bilinear
    # resize, corners aligned) before DQ; the oracle of stq_reference.py does the same, pixel by
    # pixel. Two depth files shrink to 64x100; predicted things also cover unlabelled pixels.
    noisy = _noisy_predictions(data[SEMKITTI], SEMKITTI, tmp_path)
    meta = dvps_metadata(SEMKITTI)
    records = load_dvps_split(str(noisy["gt"].parents[1]), "val", SEMKITTI)
    oracle = OfficialFeedDSTQ(meta["num_classes"], meta["thing_ids"])
    for i, record in enumerate(records):
        image = record["file_name"]
        cls, inst, _ = read_prediction(str(noisy["pred"]), None, image, meta)
        gt_class, gt_instance, gt_depth = read_ground_truth(record, meta)
        if i % 2 == 0:  # a car (thing 0, instance 1) over the unlabelled pixels
            cls, inst = np.where(gt_class == 255, 0, cls), np.where(gt_class == 255, 1, inst)
            write_prediction(str(noisy["pred"]), None, image, meta, cls, inst, None)
        depth_path = noisy["depth"] / Path(image).name
        raw_depth = cv2.imread(str(depth_path), cv2.IMREAD_UNCHANGED)
        if i in (3, 11):
            raw_depth = raw_depth[:, :100]
            cv2.imwrite(str(depth_path), raw_depth)
        oracle.add_frame(
            record["sequence_id"], cls, inst, gt_class, gt_instance, raw_depth, gt_depth * 256
        )
    results = evaluate_prediction_files(
        SEMKITTI, str(noisy["gt"]), str(noisy["pred"]), str(noisy["depth"])
    )
    for key, value in oracle.result().items():
        assert results[key] == pytest.approx(100 * value, rel=1e-12), key
    assert results["dq"] < 100 and results["aq"] < 100
