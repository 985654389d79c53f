"""Which prediction files tools/eval_dvpq.py takes for a ground-truth frame: every name the
official ViP-DeepLab scripts accept, paired by frame id (rules in the module docstring of
panoptic_depthlab/evaluation/evaluate_files.py).

The official scripts (``cityscapes-dvps/eval_dvpq.py`` and ``semkitti-dvps/eval_dvpq.py`` of
joe-siyuan-qiao/ViP-DeepLab; their READMEs only say ``--pan_dir PAN_DIR --depth_dir DEPTH_DIR``)
pair files by sorted name: SemKITTI-DVPS takes every ``*cat.png`` and ``*ins.png`` of the
prediction directory and every file of the depth directory; Cityscapes-DVPS takes every file of
either directory, grouped into sequences by the text before the first ``_``. Here a file belongs
to the frame ``<sequence>_<frame>`` that starts its name, followed by a non-digit.

Predictions are the ground truth with noisy depth and broken tracks in one frame
(``_noisy_predictions`` of test_eval_dvpq_cli.py), so the numbers compared are not all 100.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from panoptic_depthlab.data.datasets import load_dvps_split
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.evaluation.evaluate_files import evaluate_prediction_files
from panoptic_depthlab.evaluation.formats import frame_id_of, image_id_of

from .test_eval_dvpq_cli import (
    _args,
    _load_cli_main,
    _noisy_predictions,
    write_ground_truth_predictions,
)

CITYSCAPES, SEMKITTI = "cityscapes_dvps", "semkitti_dvps"
# (sequences, frames, height, width): small; frame 2 of sequence 0 gets the broken tracks.
SHAPES = {CITYSCAPES: (2, 3, 64, 128), SEMKITTI: (2, 4, 64, 128)}

# Official-style names per format: templates of {fid} (frame id, 000000_000003) and {image}
# (the image's base name), and whether panoptic and depth files share one directory.
STYLES = {
    # semkitti-dvps/eval_dvpq.py: name.endswith('cat.png') / name.endswith('ins.png'); the
    # depth directory: every file.
    "semkitti_image_name_cat": (
        SEMKITTI,
        {"cat": "{fid}_leftImg8bit_cat.png", "ins": "{fid}_leftImg8bit_ins.png"},
        "{fid}_depth.png",
        False,
    ),
    # The same, nothing between the frame id and cat/ins; the depth named as the image; all in
    # one directory (*cat.png and *ins.png are panoptic, the rest is depth).
    "semkitti_bare_cat_one_directory": (
        SEMKITTI,
        {"cat": "{fid}cat.png", "ins": "{fid}ins.png"},
        "{image}",
        True,
    ),
    # cityscapes-dvps/eval_dvpq.py: load_sequence groups every file by name.split('_')[0] and
    # sorts each sequence's names.
    "cityscapes_bare_frame_id": (CITYSCAPES, {"rgb": "{fid}.png"}, "{fid}_anything.png", False),
    "cityscapes_pred_suffix": (CITYSCAPES, {"rgb": "{fid}_pred.png"}, "{fid}.png", False),
}


def _records(gt_dir: Path, fmt: str) -> list[dict]:
    return load_dvps_split(str(gt_dir.parents[1]), gt_dir.name, fmt)


def _own_names(record: dict, fmt: str) -> dict[str, str]:
    """The panoptic file names write_prediction gives a frame, by kind."""
    image = Path(record["file_name"]).name
    if fmt == CITYSCAPES:
        return {"rgb": image}
    image_id = image_id_of(image)
    return {"cat": f"{image_id}_cat.png", "ins": f"{image_id}_ins.png"}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory) -> dict[str, dict[str, Path]]:
    """Per format: ``gt`` (split dir), ``pred`` and ``depth`` (noisy predictions, own names)."""
    out = {}
    for fmt, (seqs, frames, height, width) in SHAPES.items():
        root = tmp_path_factory.mktemp(f"names_{fmt}")
        generate_synthetic_dvps(str(root), fmt, "val", seqs, frames, height, width, seed=5)
        gt = root / "video_sequence" / "val"
        write_ground_truth_predictions(gt, fmt, root / "gt_pred", root / "gt_depth")
        exact = {"gt": gt, "pred": root / "gt_pred", "depth": root / "gt_depth"}
        out[fmt] = _noisy_predictions(exact, fmt, root / "noisy")
    return out


@pytest.fixture(scope="module")
def own_results(noisy) -> dict[str, dict]:
    """Per format, the results with the names write_prediction gives."""
    out = {}
    for fmt, paths in noisy.items():
        out[fmt] = evaluate_prediction_files(
            fmt, str(paths["gt"]), str(paths["pred"]), str(paths["depth"])
        )
        pqs = [e["pq"] for e in out[fmt]["dvpq"] if e["pq"] is not None]
        assert min(pqs) < 100 and max(pqs) == 100  # broken tracks: k > 1 loses
        assert 0 < out[fmt]["depth"]["abs_rel"] < 0.05
    return out


@pytest.fixture(scope="module")
def cli_main():
    return _load_cli_main()


def _rename(paths: dict[str, Path], fmt: str, style: str, dst: Path) -> dict[str, Path]:
    """Copy the predictions of ``paths`` to ``dst`` under the names of ``STYLES[style]``."""
    _, panoptic_names, depth_name, one_directory = STYLES[style]
    out = dict(paths, pred=dst / "pred", depth=dst / ("pred" if one_directory else "depth"))
    out["pred"].mkdir(parents=True)
    out["depth"].mkdir(exist_ok=True)
    for record in _records(paths["gt"], fmt):
        image = Path(record["file_name"]).name
        fields = {"fid": frame_id_of(image), "image": image}
        for kind, own in _own_names(record, fmt).items():
            shutil.copy(paths["pred"] / own, out["pred"] / panoptic_names[kind].format(**fields))
        shutil.copy(paths["depth"] / image, out["depth"] / depth_name.format(**fields))
    return out


def _evaluate(paths: dict[str, Path], fmt: str) -> dict:
    return evaluate_prediction_files(fmt, str(paths["gt"]), str(paths["pred"]), str(paths["depth"]))


@pytest.mark.parametrize("style", sorted(STYLES))
def test_official_names_give_the_same_numbers(noisy, own_results, tmp_path, caplog, style):
    """Every name pattern of STYLES is one the official scripts read (see the comment there)."""
    fmt = STYLES[style][0]
    renamed = _rename(noisy[fmt], fmt, style, tmp_path)
    own = {p.name for p in noisy[fmt]["pred"].iterdir()}
    assert own.isdisjoint(p.name for p in renamed["pred"].iterdir())
    with caplog.at_level(logging.WARNING, logger="panoptic_depthlab"):
        results = _evaluate(renamed, fmt)
    assert results == own_results[fmt]
    assert "ignoring" not in caplog.text  # every file was taken


def test_official_names_through_the_cli_write_the_same_json(noisy, own_results, cli_main, tmp_path):
    renamed = _rename(noisy[SEMKITTI], SEMKITTI, "semkitti_bare_cat_one_directory", tmp_path)
    output = tmp_path / "results.json"
    assert cli_main(_args(renamed, SEMKITTI, output)) == 0
    assert json.loads(output.read_text()) == json.loads(json.dumps(own_results[SEMKITTI]))


def _copy_first(directory: Path, pattern: str, new_name: str) -> tuple[Path, Path]:
    """Copy the first file matching ``pattern`` to ``new_name``; return (old, new)."""
    old = sorted(directory.glob(pattern))[1]  # frame 000000_000001
    new = directory / new_name.format(fid=frame_id_of(old.name))
    shutil.copy(old, new)
    return old, new


@pytest.mark.parametrize(
    ("style", "where", "pattern", "new_name", "kind"),
    [
        # semkitti-dvps/eval_dvpq.py would take both *cat.png files and shift every later pair.
        ("semkitti_image_name_cat", "pred", "*_cat.png", "{fid}cat.png", "class"),
        ("semkitti_image_name_cat", "pred", "*_ins.png", "{fid}_x_ins.png", "instance"),
        # ... and every file of the depth directory, here in the prediction directory.
        ("semkitti_bare_cat_one_directory", "pred", "*_leftImg8bit.png", "{fid}.png", "depth"),
        # cityscapes-dvps/eval_dvpq.py would put both into the sequence and shift the rest.
        ("cityscapes_bare_frame_id", "pred", "*.png", "{fid}_pred.png", "panoptic"),
        ("cityscapes_bare_frame_id", "depth", "*.png", "{fid}_depth.png", "depth"),
    ],
)
def test_two_candidates_for_one_frame_exit_2_naming_both(
    noisy, cli_main, tmp_path, capsys, style, where, pattern, new_name, kind
):
    fmt = STYLES[style][0]
    renamed = _rename(noisy[fmt], fmt, style, tmp_path / "in")
    old, new = _copy_first(renamed[where], pattern, new_name)
    output = tmp_path / "out" / "results.json"
    assert cli_main(_args(renamed, fmt, output)) == 2
    err = capsys.readouterr().err
    first, second = sorted([str(old), str(new)])
    fid = frame_id_of(old.name)
    assert f"error: two {kind} files for the frame {fid}: {first} and {second};" in err
    assert not output.parent.exists()


@pytest.mark.parametrize(
    ("style", "kind", "index", "expected"),
    [
        # The official scripts would silently pair the next file with this frame (SemKITTI-DVPS)
        # or evaluate a shorter sequence (Cityscapes-DVPS); here the frame's file is named, by
        # the name write_prediction gives it.
        ("cityscapes_bare_frame_id", "rgb", 4, "pred/{image}"),
        ("cityscapes_pred_suffix", "depth", 0, "depth/{image}"),
        ("semkitti_image_name_cat", "ins", 3, "pred/{fid}_ins.png"),
        ("semkitti_image_name_cat", "depth", 7, "depth/{image}"),
        ("semkitti_bare_cat_one_directory", "cat", 5, "pred/{fid}_cat.png"),
    ],
)
def test_a_missing_file_is_named(noisy, cli_main, tmp_path, capsys, style, kind, index, expected):
    fmt, panoptic_names, depth_name, _ = STYLES[style]
    renamed = _rename(noisy[fmt], fmt, style, tmp_path / "in")
    image = Path(_records(renamed["gt"], fmt)[index]["file_name"]).name
    fields = {"fid": frame_id_of(image), "image": image}
    if kind == "depth":
        (renamed["depth"] / depth_name.format(**fields)).unlink()
    else:
        (renamed["pred"] / panoptic_names[kind].format(**fields)).unlink()
    output = tmp_path / "out" / "results.json"
    assert cli_main(_args(renamed, fmt, output)) == 2
    err = capsys.readouterr().err
    total = SHAPES[fmt][0] * SHAPES[fmt][1]
    assert f"error: 1 of {total} ground-truth frames have no prediction" in err
    directory, name = expected.split("/")
    assert f"\n  {renamed[directory] / name.format(**fields)}\n" in err
    assert not output.parent.exists()


# Names that are not a ground-truth frame's: a frame id the split does not have; no frame id at
# the start; a frame id followed by a digit, which is another id, not 000000_000000 (a prefix
# match would make each a second candidate for that frame).
EXTRA = {
    SEMKITTI: [
        "000099_000000_cat.png",
        "000099_000000_ins.png",
        "cat.png",
        "pred_000000_000001_cat.png",
        "000000_0000001_cat.png",
        "000000_0000001_ins.png",
        "0000000_000000_cat.png",
        "000000_0000001_leftImg8bit.png",
        "notes.txt",
    ],
    CITYSCAPES: [
        "000099_000000.png",
        "000000.png",  # cityscapes-dvps/eval_dvpq.py would put it in sequence 000000
        "000000_0000001.png",
        "000000_0000010_pred.png",
        "0000000_000000.png",
    ],
}


@pytest.mark.parametrize(
    "style",
    ["semkitti_bare_cat_one_directory", "semkitti_image_name_cat", "cityscapes_pred_suffix"],
)
def test_files_of_no_frame_are_ignored_with_a_warning(
    noisy, own_results, cli_main, tmp_path, capsys, style
):
    fmt = STYLES[style][0]
    renamed = _rename(noisy[fmt], fmt, style, tmp_path / "in")
    source = next(renamed["pred"].glob("*.png"))
    for name in EXTRA[fmt]:
        shutil.copy(source, renamed["pred"] / name)
    for name in ("000099_000000.png", "depth.png"):
        shutil.copy(source, renamed["depth"] / name)
    output = tmp_path / "results.json"
    assert cli_main(_args(renamed, fmt, output)) == 0
    err = capsys.readouterr().err
    extra_pred = len(EXTRA[fmt]) + (2 if renamed["depth"] == renamed["pred"] else 0)
    assert f"WARNING: ignoring {extra_pred} files in {renamed['pred']}" in err
    if renamed["depth"] != renamed["pred"]:
        assert f"WARNING: ignoring 2 files in {renamed['depth']}" in err
    assert json.loads(output.read_text()) == json.loads(json.dumps(own_results[fmt]))
