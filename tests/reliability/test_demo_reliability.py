"""tools/demo.py as a user met it (issue #14, items 2, 3, 6 and the demo's part of 8), each case
reproduced on real files (synthetic DVPS frames, cv2-written images and videos, checkpoints
saved from a real small model) and checked for the new behaviour: exit code, message, and
what is left on disk.

The tool's own logger setup and a fault that stops it before the model is built run it in a
subprocess (what a user sees); the others call ``tools/demo.py``'s ``main`` in this process
(faster; log lines through a handler on the package's logger).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.modeling import build_model

from panoptic_depthlab.data import register_dvps_dataset
from panoptic_depthlab.data.synthetic import generate_synthetic_dvps
from panoptic_depthlab.demo import DemoInputError, image_size
from panoptic_depthlab.visualization import _thing_label
from tests.conftest import small_model_cfg
from tests.reliability.conftest import assert_user_error, run_tool

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import demo as demo_tool  # noqa: E402

H, W = 64, 128
# RGB of the title strip of a panel that shows an untrained output (visualization.py), and of
# the others.
RED, BLACK = (200, 0, 0), (0, 0, 0)


@pytest.fixture(scope="module")
def data(module_tmp_path) -> dict[str, Path]:
    """A synthetic SemKITTI-DVPS val split (2 sequences x 2 frames), the config of a small
    model, a full checkpoint of it, and one without its depth and next-frame branches (as a
    Panoptic-DeepLab model-zoo checkpoint loads into this model). The checkpoint's semantic
    branch calls every pixel a car and its center map passes the threshold everywhere, so that
    its outputs hold tracked things (a random model predicts none)."""
    root = module_tmp_path
    generate_synthetic_dvps(str(root), "semkitti_dvps", "val", 2, 2, H, W, seed=0)
    cfg = small_model_cfg("synthetic_semkitti_dvps_val", (H, W))
    config = root / "small.yaml"
    config.write_text(cfg.dump())
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.sem_seg_head.predictor.bias[0] += 100.0  # class 0, car, a thing
        model.ins_embed_head.center_predictor.bias += 1.0
    weights = model.state_dict()
    full = root / "full.pth"
    torch.save({"model": weights}, full)
    no_depth = root / "no_depth.pth"
    kept = {
        k: v for k, v in weights.items() if not k.startswith(("depth_head.", "next_frame_head."))
    }
    torch.save({"model": kept}, no_depth)
    split = root / "video_sequence" / "val"
    return {"root": root, "split": split, "config": config, "full": full, "no_depth": no_depth}


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def demo_log() -> Iterator[list[str]]:
    """The messages panoptic_depthlab logs during the test (the tool's setup_logger stops them
    from reaching pytest's caplog)."""
    handler = _Lines()
    package_logger = logging.getLogger("panoptic_depthlab")
    package_logger.addHandler(handler)
    yield handler.lines
    package_logger.removeHandler(handler)


def frames_of(data, sequence: int) -> list[Path]:
    return sorted(data["split"].glob(f"{sequence:06d}_*_leftImg8bit.png"))


def folder_of(data, tmp_path: Path, name: str, sequence: int) -> Path:
    """A folder ``name`` holding copies of one sequence's frames."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    for path in frames_of(data, sequence):
        shutil.copy(path, folder / path.name)
    return folder


def write_video(path: Path, images: list[np.ndarray]) -> Path:
    """An MP4 (mp4v) of (H, W, 3) BGR images, 5 frames per second."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = (images[0].shape[1], images[0].shape[0])
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 5, size)
    for image in images:
        writer.write(image)
    writer.release()
    return path


def demo(data, output: Path, *inputs, extra=()) -> int:
    """tools/demo.py's main in this process."""
    return demo_tool.main(
        ["--config-file", str(data["config"]), "--input", *map(str, inputs)]
        + ["--output", str(output), *map(str, extra)]
    )


def user_error(capsys, code: int, *fragments: str) -> str:
    """In-process counterpart of assert_user_error: exit 2, no traceback, the last line of
    stderr holds every fragment."""
    err = capsys.readouterr().err
    assert code == 2, (code, err[-3000:])
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def segments(root: Path, frame: str) -> dict:
    return json.loads((root / "segments" / f"{frame}.json").read_text())


def strip_colors(picture_path: Path) -> list[tuple[int, int, int]]:
    """RGB of the top-left pixel of each panel's title strip: input, panoptic, depth, panoptic
    depth (the 2 x 2 grid of visualize_frame)."""
    bgr = cv2.imread(str(picture_path))
    rows, cols = bgr.shape[0] // 2, bgr.shape[1] // 2
    return [tuple(int(c) for c in bgr[y, x, ::-1]) for y in (0, rows) for x in (0, cols)]


def frame_count(video: Path) -> int:
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    capture.release()
    return count


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or ".partial" in p.name]


# ---- item 2: honest outputs ----------------------------------------------------------------


def test_checkpoint_without_depth_head_is_logged_warned_and_marked(data, tmp_path):
    # Found: no per-part table (the checkpointer's logger was not set up), exit 0, and labels
    # "car 44.0 m" from the untrained depth head.
    out = tmp_path / "out"
    folder = folder_of(data, tmp_path, "seq", 0)
    result = run_tool(
        "demo.py", "--config-file", data["config"], "--input", folder, "--output", out,
        "MODEL.WEIGHTS", data["no_depth"],
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout
    assert "Checkpoint loaded into the model, per part:" in log
    rows = {line.split("|")[1].strip(): line for line in log.splitlines() if line.startswith("|")}
    assert "| loaded" in rows["backbone"] and "| initialized" in rows["depth_head"]
    assert "| initialized" in rows["next_frame_head"]
    warning = next(line for line in log.splitlines() if "Not loaded from" in line)
    assert warning.startswith("WARNING")
    assert (
        f"Not loaded from {data['no_depth']}: depth_head (initialized), next_frame_head " in warning
    )
    assert "untrained outputs: depth and segment distances, track ids across frames" in warning
    assert "Untrained outputs, marked UNTRAINED in the pictures and segments JSON: depth, " in log
    for frame in [p.stem for p in frames_of(data, 0)]:
        assert segments(out / "seq", frame)["untrained"] == ["depth", "tracking"]
        # panoptic (its ids: tracking), depth and panoptic depth are marked; the input is not
        assert strip_colors(out / "seq" / "vis" / f"{frame}.png") == [BLACK, RED, RED, RED]
    assert len(list((out / "seq" / "vis").glob("*.png"))) == 2


def test_full_checkpoint_marks_nothing_and_empty_weights_mark_everything(data, tmp_path):
    frame = frames_of(data, 0)[0]
    assert demo(data, tmp_path / "full", frame, extra=["MODEL.WEIGHTS", data["full"]]) == 0
    assert segments(tmp_path / "full" / "images", frame.stem)["untrained"] == []
    picture = tmp_path / "full" / "images" / "vis" / f"{frame.stem}.png"
    assert strip_colors(picture) == [BLACK] * 4
    assert demo(data, tmp_path / "none", frame) == 0
    assert segments(tmp_path / "none" / "images", frame.stem)["untrained"] == [
        "panoptic",
        "depth",
        "tracking",
    ]
    picture = tmp_path / "none" / "images" / "vis" / f"{frame.stem}.png"
    assert strip_colors(picture) == [BLACK, RED, RED, RED]


def test_labels_of_untrained_outputs():
    info = {"category_id": 1, "depth_median": 44.0}
    names = ["road", "car"]
    assert _thing_label(info, names) == "car 44.0 m"
    assert _thing_label(info, names, ["depth", "tracking"]) == "car (untrained)"
    assert _thing_label(info, names, ["panoptic"]) == "car 44.0 m (untrained)"
    assert _thing_label(info, names, ["tracking"]) == "car 44.0 m"


def test_missing_weights_file_stops_before_any_work(data, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "model_final.pth"
    code = demo(data, out, frames_of(data, 0)[0], extra=["--opts", "MODEL.WEIGHTS", missing])
    user_error(capsys, code, str(missing), "not found")
    assert not out.exists()


def test_unloadable_checkpoints_are_one_line(data, tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    code = demo(data, tmp_path / "a", frames_of(data, 0)[0], extra=["MODEL.WEIGHTS", empty])
    user_error(capsys, code, str(empty), "empty")
    assert not (tmp_path / "a").exists()  # checked before the output folder is made
    other = tmp_path / "other.pth"
    torch.save({"model": {"head.weight": torch.zeros(4, 3)}}, other)
    code = demo(data, tmp_path / "b", frames_of(data, 0)[0], extra=["MODEL.WEIGHTS", other])
    user_error(capsys, code, str(other), "wrong architecture")
    assert list((tmp_path / "b").rglob("*")) == []


# ---- item 3: one output folder per input -----------------------------------------------------


def test_inputs_with_one_base_name_get_their_own_folders(data, tmp_path, demo_log):
    # Found: c1/cam and c2/cam wrote into one folder, the MP4 held the second only, and the
    # demo said "Wrote 2 frames" while one frame's files existed.
    c1 = folder_of(data, tmp_path, "c1/cam", 0)
    c2 = folder_of(data, tmp_path, "c2/cam", 1)
    loose = []
    for folder, sequence in (("a", 0), ("b", 1)):
        (tmp_path / folder).mkdir()
        loose.append(tmp_path / folder / "x.png")
        shutil.copy(frames_of(data, sequence)[0], loose[-1])
    out = tmp_path / "out"
    assert demo(data, out, c1, c2, *loose) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cam", "cam_2", "images"]
    for name, folder, sequence in (("cam", c1, 0), ("cam_2", c2, 1)):
        frames = [p.stem for p in frames_of(data, sequence)]
        assert sorted(p.stem for p in (out / name / "vis").glob("*.png")) == frames
        assert sorted(p.stem for p in (out / name / "segments").glob("*.json")) == frames
        assert segments(out / name, frames[0])["file_name"] == str(folder / f"{frames[0]}.png")
        assert frame_count(out / name / f"{name}.mp4") == 2
    assert sorted(p.stem for p in (out / "images" / "vis").glob("*.png")) == ["x", "x_2"]
    assert segments(out / "images", "x")["file_name"] == str(loose[0])
    assert segments(out / "images", "x_2")["file_name"] == str(loose[1])
    log = "\n".join(demo_log)
    assert f"{c2}: written as cam_2 (cam is already that of {c1})." in log
    assert f"{loose[1]}: written as x_2 (x is already that of {loose[0]})." in log
    assert f"{c2} -> {out}/cam_2/" in log
    assert "Wrote 6 frames of 4 sequence(s)" in log
    assert len(list(out.rglob("vis/*.png"))) == 6
    assert leftovers(out) == []


# ---- item 6: faults ----------------------------------------------------------------------


def test_read_only_output_folder_is_one_line_before_the_model_is_built(
    data, read_only_dir, tmp_path
):
    # Found: a traceback.
    out = read_only_dir / "out"
    result = run_tool(
        "demo.py", "--config-file", data["config"], "--input", frames_of(data, 0)[0],
        "--output", out,
    )  # fmt: skip
    assert_user_error(result, f"output folder {out}: cannot write there", "Read-only file system")
    assert "MODEL.WEIGHTS is empty" not in result.stdout  # no model was built
    assert list(read_only_dir.iterdir()) == []


def test_full_disk_is_one_line_and_leaves_whole_frames_only(data, small_disk, tmp_path, capsys):
    # Found: a traceback. A frame's files take about 60 KiB (its picture 53 KiB): the first
    # fits on this disk, the second not.
    disk = small_disk(100)
    folder = folder_of(data, tmp_path, "seq", 0)
    code = demo(data, disk / "out", folder)
    user_error(capsys, code, str(disk / "out" / "seq"), "No space left on device")
    root = disk / "out" / "seq"
    frames = [p.stem for p in frames_of(data, 0)]
    written = sorted(p.stem for p in root.glob("vis/*.png"))
    assert written == frames[:1]
    # every frame is whole or absent: picture, official files, JSON
    assert sorted(p.stem for p in root.glob("segments/*.json")) == written
    assert sorted(p.name for p in root.glob("depth/*.png")) == [f"{f}.png" for f in written]
    ids = [f.removesuffix("_leftImg8bit") for f in written]
    assert sorted(p.name for p in root.glob("panoptic/*.png")) == sorted(
        f"{i}_{s}.png" for i in ids for s in ("cat", "ins")
    )
    assert not (root / "seq.mp4").exists()
    assert leftovers(disk) == []


# ---- item 8: the smaller ones --------------------------------------------------------------


def test_pointcloud_without_focal_length_stops_before_any_work(data, tmp_path, capsys):
    # Found: failed after the first frame was written.
    image = cv2.imread(str(frames_of(data, 0)[0]))
    video = write_video(tmp_path / "clip.mp4", [image, image])
    code = demo(data, tmp_path / "out", video, extra=["--pointcloud"])
    user_error(capsys, code, str(video), "--pointcloud needs the focal length", "--focal-length")
    assert not (tmp_path / "out").exists()
    # SemKITTI-DVPS frames carry it in their depth file names: the split folder runs
    assert demo(data, tmp_path / "ok", data["split"], extra=["--pointcloud"]) == 0
    assert len(list((tmp_path / "ok").rglob("pointcloud/*.ply"))) == 4


@pytest.mark.parametrize("shape", [(8, 8), (14, 14), (6, 100), (100, 1)])
def test_too_small_image_is_named_before_any_work(data, tmp_path, capsys, shape):
    # Found: "selected index k out of range" from inside Detectron2 (8 x 8). Found by trying:
    # the model needs H x W >= MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE (200; 14 x 14 fails,
    # 15 x 15 runs) and 2 pixels each way; the picture's depth scale bar 7 rows.
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((*shape, 3), 90, np.uint8))
    code = demo(data, tmp_path / "out", small)
    message = user_error(
        capsys, code, str(small), f"{shape[0]} x {shape[1]} pixels (H x W) are too small"
    )
    assert "needs H >= 7, W >= 2 and H x W >= 200 pixels" in message
    assert "(MODEL.PANOPTIC_DEEPLAB.TOP_K_INSTANCE), e.g. 15 x 15." in message
    assert not (tmp_path / "out").exists()


def test_smallest_image_the_check_allows_runs(data, tmp_path):
    for shape in ((15, 15), (7, 29), (100, 2)):
        path = tmp_path / f"{shape[0]}x{shape[1]}.png"
        cv2.imwrite(str(path), np.full((*shape, 3), 90, np.uint8))
        assert demo(data, tmp_path / "out", path) == 0
    assert sorted(p.stem for p in (tmp_path / "out" / "images" / "vis").glob("*.png")) == [
        "100x2",
        "15x15",
        "7x29",
    ]


def test_frame_sizes_are_checked_before_any_frame_is_read(data, tmp_path, capsys):
    # Found: a frame of another size stopped the run only when reached.
    folder = tmp_path / "frames"
    folder.mkdir()
    image = cv2.imread(str(frames_of(data, 0)[0]))
    cv2.imwrite(str(folder / "a.png"), image)
    cv2.imwrite(str(folder / "b.png"), image)
    cv2.imwrite(str(folder / "c.jpg"), cv2.resize(image, (W, H + 32)))
    code = demo(data, tmp_path / "out", folder)
    user_error(
        capsys,
        code,
        f"{folder / 'c.jpg'}: size (H, W) = (96, 128) differs from (64, 128) of",
        "the frames of one sequence must have one size",
    )
    assert not (tmp_path / "out").exists()


def test_image_size_reads_headers(tmp_path):
    for extension in ("png", "jpg", "bmp", "tiff", "webp"):
        for shape in ((37, 91), (91, 37)):
            path = tmp_path / f"{shape[0]}.{extension}"
            cv2.imwrite(str(path), np.zeros((*shape, 3), np.uint8))
            assert image_size(str(path)) == shape, extension
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DemoInputError, match="broken.png: not a readable image"):
        image_size(str(broken))


def test_split_folder_is_tracked_per_sequence(data, tmp_path):
    # Found: a folder of a whole split (sequences 000000 and 000001) was tracked as one video.
    out = tmp_path / "out"
    assert demo(data, out, data["split"], extra=["MODEL.WEIGHTS", data["full"]]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["val_000000", "val_000001"]
    for sequence in (0, 1):
        root = out / f"val_{sequence:06d}"
        frames = [p.stem for p in frames_of(data, sequence)]
        assert sorted(p.stem for p in root.glob("vis/*.png")) == frames
        assert frame_count(root / f"val_{sequence:06d}.mp4") == 2
    # Sequence 000001 starts fresh: the same tracked things and ids as when it is run alone
    # (tracked after sequence 000000, its track numbers would go on from that one's).
    alone = folder_of(data, tmp_path, "alone", 1)
    assert demo(data, tmp_path / "alone_out", alone, extra=["MODEL.WEIGHTS", data["full"]]) == 0
    for frame in [p.stem for p in frames_of(data, 1)]:
        split_run = segments(out / "val_000001", frame)["segments"]
        assert sum(s["isthing"] for s in split_run) > 10
        assert split_run == segments(tmp_path / "alone_out" / "alone", frame)["segments"]


def test_quoted_glob_patterns_are_expanded(data, tmp_path, capsys):
    image = cv2.imread(str(frames_of(data, 0)[0]))
    for name in ("b", "a"):
        write_video(tmp_path / "clips" / f"{name}.mp4", [image, image[::-1]])
    pattern = str(tmp_path / "clips" / "*.mp4")
    assert demo(data, tmp_path / "out", pattern) == 0
    for name in ("a", "b"):
        assert frame_count(tmp_path / "out" / name / f"{name}.mp4") == 2
    nothing = str(tmp_path / "clips" / "*.avi")
    code = demo(data, tmp_path / "none", nothing)
    user_error(capsys, code, f"{nothing}: no file or folder matches this pattern.")


def test_overrides_come_last_as_for_train_net(data, tmp_path, capsys):
    # Found: the demo took overrides only after --opts; train_net takes them positionally.
    frame = frames_of(data, 0)[0]
    extra = ["MODEL.WEIGHTS", data["full"], "MODEL.DEVICE", "cpu"]
    assert demo(data, tmp_path / "out", frame, extra=extra) == 0
    assert segments(tmp_path / "out" / "images", frame.stem)["untrained"] == []
    code = demo(data, tmp_path / "bad", frame, extra=["MODEL.WEIGTHS", data["full"]])
    user_error(capsys, code, str(data["config"]), "Non-existent key: MODEL.WEIGTHS")
    # overrides left among the inputs: the message says where they go
    code = demo_tool.main(
        ["--config-file", str(data["config"]), "--output", str(tmp_path / "x"), "--input"]
        + [str(frame), "MODEL.WEIGHTS", str(data["full"])]
    )
    user_error(capsys, code, "MODEL.WEIGHTS: no such file or folder (a config override?")
    assert not (tmp_path / "bad").exists() and not (tmp_path / "x").exists()


def test_help_reads_whole_sentences(capsys):
    # Found: the description was the docstring's first line, cut mid-sentence.
    with pytest.raises(SystemExit) as exit_info:
        demo_tool.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert (
        "Run a PanopticDepthLab model on images, folders of frames and videos, and write "
        "pictures, an MP4 per sequence, official prediction files, per-frame JSON and, "
        "optionally, point clouds." in text
    )
    assert "Config overrides (KEY VALUE pairs) come last, as for tools/train_net.py" in text


def test_temporaries_of_a_killed_run_are_removed_by_the_next(data, tmp_path, demo_log):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)  # fmt: skip
    stale = tmp_path / "out" / "images" / "vis" / f".x.png.{int(dead.stdout)}.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a picture")
    frame = frames_of(data, 0)[0]
    assert demo(data, tmp_path / "out", frame) == 0
    assert not stale.exists()
    assert f"Removed {stale}, a temporary file left by a killed run." in demo_log
    assert [p.name for p in stale.parent.iterdir()] == [f"{frame.stem}.png"]


def test_focal_length_must_be_finite_pixels(data, tmp_path, capsys):
    for value in ("inf", "nan", "0", "-700"):
        code = demo(data, tmp_path / "out", data["split"], extra=["--focal-length", value])
        user_error(capsys, code, f"--focal-length {float(value)}: expected a finite number")
    assert not (tmp_path / "out").exists()


def test_weights_url_that_cannot_be_downloaded_stops_before_any_work(data, tmp_path, capsys):
    # Found with configs/vip_depth.yaml on a machine without the network: a URLError traceback.
    url = "https://checkpoints.invalid/model_final.pkl"  # .invalid never resolves (RFC 2606)
    code = demo(data, tmp_path / "out", frames_of(data, 0)[0], extra=["MODEL.WEIGHTS", url])
    user_error(capsys, code, f"MODEL.WEIGHTS {url}: cannot download it (", "pass the local file")
    assert not (tmp_path / "out").exists()


def test_pointcloud_takes_the_focal_length_of_the_dataset_metadata(data, tmp_path):
    # The shipped metadata has none; a dataset whose metadata says one needs no --focal-length.
    name = "demo_reliability_with_focal_length"
    if name not in DatasetCatalog.list():
        register_dvps_dataset(name, str(data["root"]), "val", "semkitti_dvps")
        MetadataCatalog.get(name).set(focal_length=500.0)
    cfg = small_model_cfg(name, (H, W))
    config = tmp_path / "focal.yaml"
    config.write_text(cfg.dump())
    image = cv2.imread(str(frames_of(data, 0)[0]))
    video = write_video(tmp_path / "clip.mp4", [image, image])
    out = tmp_path / "out"
    argv = ["--config-file", str(config), "--input", str(video), "--output", str(out)]
    assert demo_tool.main([*argv, "--pointcloud"]) == 0
    assert sorted(p.name for p in (out / "clip" / "pointcloud").glob("*.ply")) == [
        "clip_000000.ply",
        "clip_000001.ply",
    ]
