"""Synthetic DVPS datasets: procedural street videos in the official on-disk layouts.

:func:`generate_synthetic_dvps` renders short sequences of a street seen from a car driving
forward and writes them exactly like Cityscapes-DVPS or SemKITTI-DVPS (file names, PNG bit
depths, label encodings, depth scale), so every loader and evaluator runs on real files, or like
plain Cityscapes with disparity and camera files (format ``cityscapes``, see below), or like
KITTI-STEP or Cityscapes-VPS, without depth (formats ``kitti_step`` and ``cityscapes_vps``, see
below).

Scene model (meters; camera frame: x to the right, z forward, y up; the camera moves forward by
a per-sequence speed every frame):

* A flat ground ``cam_height`` below the camera: a road in the middle (lane markings), then
  sidewalk / parking / terrain / other-ground bands on each side, by lateral position ``x``.
* Facades: vertical planes parallel to the street at ``|x| = front_x`` and ``back_x``, split
  along the street into segments of one class each (building, wall, fence, vegetation), and a
  wall across the street at ``z = _Z_FAR`` (the street's end).
* Sprites: flat vertical cut-outs standing on (or mounted above) the ground, facing the camera:
  poles with traffic signs / lights, trees, and the moving things, each with an instance id that
  is constant over its sequence. Things enter and leave the view and occlude each other.

Every pixel gets the class, instance and depth of the nearest surface along its ray; a vertical
surface has the depth of its ground contact (a sprite's depth is constant). Painting goes far to
near with a depth test. Sky (and the Cityscapes ego-car hood, labelled void) has no depth; all
other depths are positive and at most ``_Z_FAR`` = 80 m, inside the datasets' (0, 88] m.

Images: each class has a base color close to its palette color plus a class texture (windows,
lane markings, leaves, fence slats, wheels, ...), haze growing with depth and mild pixel noise.
SemKITTI-DVPS labels and depth are kept only at simulated LiDAR points (64 scan lines, and one
extra point on every segment the scan lines miss), as in the real dataset.

Randomness comes only from ``numpy.random.default_rng([seed, split index, sequence index])``, so
equal arguments give byte-identical files.

Format ``cityscapes``: the Cityscapes-DVPS scene (the same images, labels and depths for equal
arguments), written as the real Cityscapes dataset is laid out once cityscapesScripts'
``createTrainIdLabelImgs`` and ``createPanopticImgs`` have run, i.e. what Detectron2 registers as
``cityscapes_fine_panoptic_{train,val}`` (``load_cityscapes_panoptic``), plus the ``disparity``
and ``camera`` folders of the Cityscapes download. Each frame of a sequence is an independent
Cityscapes image ``<city>_<seq:06d>_<frame:06d>``; the city alternates between ``aachen`` (even
sequences) and ``bochum`` (odd ones). Under the dataset root:

* ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png``: 8-bit RGB image.
* ``gtFine/<split>/<city>/<name>_gtFine_labelTrainIds.png``: 8-bit train ids 0..18, 255 for
  unlabelled pixels (the ego-car hood).
* ``gtFine/cityscapes_panoptic_<split>/<name>_gtFine_panoptic.png``: 8-bit RGB, segment id =
  R + 256 * G + 256 * 256 * B, 0 for unlabelled pixels; and once per split, after all frames,
  ``gtFine/cityscapes_panoptic_<split>.json`` (COCO panoptic: ``images``, ``annotations`` with
  ``segments_info`` [id, category_id, iscrowd, area, bbox], ``categories``). Categories are the
  19 evaluated Cityscapes classes with their label ids (road 7, ..., car 26, ..., bicycle 33):
  ``category_id`` is a label id, not a train id. Segment ids are those of Cityscapes'
  ``*_gtFine_instanceIds.png``, which ``createPanopticImgs`` copies into the panoptic PNG: a stuff
  segment is its label id; a thing instance is label id * 1000 + k, k = 0, 1, ... numbering the
  instances of that class in the image (here in the order of their sequence instance ids); a
  crowd region (thing pixels without an instance) is the label id with ``iscrowd`` 1. (As read
  in cityscapesScripts: ``json2instanceImg`` numbers a class's instances from 0 and gives groups
  the bare label id; ``createPanopticImgs`` keeps these ids, marks ids < 1000 of thing classes as
  crowd and leaves classes ignored in evaluation at 0. Keeping them makes these files what the
  real dataset's are for every reader: Detectron2's loader, mapper and panoptic evaluator.)
* ``disparity/<split>/<city>/<name>_disparity.png``: 16-bit, value p > 0 means a disparity of
  (p - 1) / 256 pixels, i.e. depth = baseline * fx / ((p - 1) / 256); p = round(256 * baseline
  * fx / depth) + 1, clipped to 1..65535. p = 0 (invalid) where the scene has no depth (sky,
  hood) and in the leftmost 5% of the columns, which the right camera of a stereo rig does not
  see (real Cityscapes disparity maps are invalid there too).
* ``camera/<split>/<city>/<name>_camera.json``: ``extrinsic`` (baseline, pitch, roll, x, y,
  yaw, z: m and radians) and ``intrinsic`` (fx, fy, u0, v0: pixels) as in the Cityscapes
  download: a real Cityscapes baseline and mounting position, the renderer's focal length
  (2262.52 * width / 2048, square pixels) and principal point (the image center column and the
  horizon row: the synthetic camera looks level along the street, so pitch = roll = yaw = 0).

Format ``kitti_step``: the Cityscapes-DVPS scene (for equal arguments, the same images, classes
and person and car instances) in DeepLab2's KITTI-STEP layout, without depth files. Under the
dataset root:

* ``images/<split>/<seq:04d>/<frame:06d>.png``: 8-bit RGB image.
* ``panoptic_maps/<split>/<seq:04d>/<frame:06d>.png``: 8-bit RGB, R = train id 0..18 (255 for
  unlabelled pixels, the ego-car hood), G = instance // 256, B = instance % 256. As in
  KITTI-STEP only person and car carry instance (track) ids, those of the Cityscapes-DVPS scene
  (1..999, constant over a sequence; 0 on its crowd persons); every other class has instance 0.

Format ``cityscapes_vps``: the Cityscapes-DVPS scene (for equal arguments, the same images,
classes and instances) in the Cityscapes-VPS layout of its authors' release (mcahny/vps), the
video panoptic format of their val split, here written for both splits, without depth. Sequence
s is video ``<s:04d>``; its frame f has the annotated-frame number 5 (f + 1) (``0005``,
``0010``, ...; at most 1999 frames) and ``<name>`` = ``<s:04d>_<5 (f + 1):04d>_synth_<s:06d>_
<5 f + 4:06d>``. Under the dataset root:

* ``<split>/img/<name>_leftImg8bit.png``: 8-bit RGB image.
* ``<split>/panoptic_video/<name>_gtFine_color.png``: 8-bit RGB, segment id = R + 256 G +
  65536 B, 0 for unlabelled pixels (the ego-car hood). A stuff segment's id is its class color
  (as panopticapi's ``IdGenerator`` gives stuff); a thing instance's is train id * 1000 +
  its Cityscapes-DVPS instance id (1..999), the same in every frame of the video; the crowd
  persons are the id train id * 1000 with ``iscrowd`` 1. No class color is below 19000, so the
  ids never collide.
* ``panoptic_gt_<split>_city_vps.json``, once per split after all frames: ``images`` (``id`` =
  ``<name>``, ``file_name``, ``width``, ``height``), ``annotations`` (``image_id``,
  ``file_name``, ``segments_info``: ``id``, ``category_id`` = train id, ``iscrowd``, ``area``,
  ordered by id) and the 19 ``categories`` with train ids as ids.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from detectron2.data.datasets.builtin_meta import CITYSCAPES_CATEGORIES

from ..files import check_writable, write_json_atomic, write_png_atomic
from .datasets.cityscapes_vps import CITYSCAPES_VPS, cityscapes_vps_json_path
from .datasets.kitti_step import KITTI_STEP, kitti_step_metadata
from .datasets.metadata import CITYSCAPES_DVPS, DVPS_FORMATS, SEMKITTI_DVPS, dvps_metadata

__all__ = [
    "CITYSCAPES",
    "CITYSCAPES_VPS",
    "KITTI_STEP",
    "SYNTHETIC_FORMATS",
    "cityscapes_panoptic_paths",
    "generate_synthetic_dvps",
]

CITYSCAPES = "cityscapes"  # plain Cityscapes (panoptic, disparity, camera): see the module doc
SYNTHETIC_FORMATS = (*DVPS_FORMATS, CITYSCAPES, KITTI_STEP, CITYSCAPES_VPS)
_SCENES = {
    CITYSCAPES_DVPS: CITYSCAPES_DVPS,
    SEMKITTI_DVPS: SEMKITTI_DVPS,
    CITYSCAPES: CITYSCAPES_DVPS,
    KITTI_STEP: CITYSCAPES_DVPS,
    CITYSCAPES_VPS: CITYSCAPES_DVPS,
}
_KITTI_STEP_TRACKED = tuple(kitti_step_metadata()["thing_ids"])  # person, car
_KITTI_STEP_MAX_SEQUENCES = 10_000  # sequence folders are <seq:04d>
_VPS_MAX_FRAMES = 1999  # Cityscapes-VPS frame numbers 5 (f + 1) have four digits

_SPLITS = ("train", "val")
_MIN_SIZE = 64
_CITY = "synth"  # Cityscapes-DVPS city name: lowercase letters only
_CITIES = ("aachen", "bochum")  # plain Cityscapes: city of sequence s is _CITIES[s % 2]
# A real Cityscapes camera (camera/*/aachen/*_camera.json): stereo baseline (m) and mounting
# position in the vehicle frame (m: forward, left; the height is the layout's cam_height).
_BASELINE, _CAMERA_X, _CAMERA_Y = 0.209313, 1.7, 0.1
_DISPARITY_BORDER = 0.05  # fraction of the columns, at the left, without disparity
# Cityscapes label id (the panoptic category_id) of each train id 0..18, and the evaluated
# classes' supercategories (Cityscapes' "category" of a label).
_LABEL_IDS = np.array([c["id"] for c in sorted(CITYSCAPES_CATEGORIES, key=lambda c: c["trainId"])])
_THING_LABEL_IDS = frozenset(c["id"] for c in CITYSCAPES_CATEGORIES if c["isthing"])
_SUPERCATEGORIES = {
    "flat": ("road", "sidewalk"),
    "construction": ("building", "wall", "fence"),
    "object": ("pole", "traffic light", "traffic sign"),
    "nature": ("vegetation", "terrain"),
    "sky": ("sky",),
    "human": ("person", "rider"),
    "vehicle": ("car", "truck", "bus", "train", "motorcycle", "bicycle"),
}
_HORIZON = 0.44  # horizon row as a fraction of the image height
_Z_NEAR, _Z_FAR = 1.5, 80.0  # m: nearest drawn sprite; distance of the wall ending the street
_LANE = 3.2  # m: lane width; the camera drives in the lane at x = 0, oncoming traffic at -_LANE
_ROAD_EDGE = 4.8  # m: |x| of the road's edges (three lanes)
_BIKE_X = 4.2  # m: lateral position of two-wheelers riding along the road's right edge
_LIDAR_ELEVATIONS = (2.0, -24.8)  # degrees: first and last of the 64 scan lines (HDL-64E)
_LIDAR_LINES, _LIDAR_STEP = 64, 4  # scan lines; pixels between the points of one line
_NOISE_SIZE = 64  # side of the per-sequence texture table
_SHIFT = 4  # fractional bits of the sub-pixel coordinates given to OpenCV drawing functions
_ABOVE_VIEW = 1000.0  # m: a facade height reaching above the image top at any visible distance
_HAZE = np.array([200, 205, 212], np.float32)

_Color = np.ndarray | tuple[int, int, int]  # RGB

# RGB colors of sprite parts that do not take the class color.
_TYRE, _GLASS, _TAIL, _PLATE = (30, 30, 33), (52, 66, 84), (185, 28, 28), (232, 232, 220)
_SKIN, _HELMET, _METAL = (214, 172, 142), (226, 226, 232), (150, 150, 156)
_LAMPS = ((232, 40, 30), (240, 180, 30), (40, 205, 90))  # traffic light: red, amber, green

# Sprite kinds: (width, height) in meters.
_SIZES = {
    "car": (1.8, 1.5),
    "truck": (2.5, 3.4),
    "bus": (2.55, 3.1),
    "train": (2.65, 3.7),
    "van": (2.1, 2.3),
    "person": (0.6, 1.75),
    "rider": (0.8, 1.1),
    "bicycle": (1.7, 1.05),
    "motorcycle": (2.0, 1.2),
    "bicyclist": (1.7, 1.65),
    "motorcyclist": (2.0, 1.75),
    "pole": (0.18, 4.0),
    "sign": (0.75, 0.75),
    "light": (0.4, 1.0),
    "trunk": (0.35, 2.6),
    "canopy": (3.4, 3.2),
}
# Riders of two-wheelers: (lateral offset from the vehicle's center, elevation) in meters.
_SADDLES = {"bicycle": (-0.1, 0.55), "motorcycle": (-0.15, 0.65)}
# Facade segment heights (m) per class.
_FACADE_HEIGHTS = {
    "building": (7.0, 16.0),
    "wall": (1.8, 3.0),
    "fence": (1.2, 2.0),
    "vegetation": (2.5, 6.0),
}


@dataclass(frozen=True)
class _Layout:
    """What a street of one format contains, and where (lateral positions x in meters)."""

    cam_height: float  # m
    ground: tuple[tuple[tuple[float, str], ...], ...]  # left, right: (outer |x|, class) bands
    front_x: float
    front_classes: tuple[str, ...]
    back_x: float
    back_classes: tuple[str, ...]
    back_height: tuple[float, float]  # m
    end_class: str
    end_height: tuple[float, float]
    pole_x: tuple[float, float]  # left, right
    pole_attachments: tuple[str, ...]  # sprite kinds mounted on successive poles
    tree_x: tuple[float, ...]  # trees (trunk + canopy) per side; () for none
    walk_x: tuple[float, float]  # sidewalks where pedestrians walk: left, right
    park_x: float  # where two-wheelers are parked
    tall: tuple[str, ...]  # large vehicle kinds
    riding: tuple[tuple[str, str], ...]  # (two-wheeler kind, rider kind or "")
    parked: tuple[str, ...]  # parked two-wheeler kinds
    kinds: dict[str, str]  # sprite kind -> class name


_LAYOUTS = {
    CITYSCAPES_DVPS: _Layout(
        cam_height=1.22,
        ground=(
            ((_ROAD_EDGE, "road"), (7.3, "sidewalk"), (math.inf, "terrain")),
            ((_ROAD_EDGE, "road"), (7.0, "sidewalk"), (math.inf, "terrain")),
        ),
        front_x=10.0,
        front_classes=("building", "wall", "fence", "vegetation"),
        back_x=16.0,
        back_classes=("building",),
        back_height=(12.0, 26.0),
        end_class="building",
        end_height=(5.0, 9.0),
        pole_x=(-5.3, 5.2),
        pole_attachments=("light", "sign"),
        tree_x=(),
        walk_x=(-6.2, 6.0),
        park_x=-6.6,
        tall=("truck", "bus", "train"),
        riding=(("bicycle", "rider"), ("motorcycle", "rider")),
        parked=("bicycle",),
        kinds={
            "car": "car",
            "truck": "truck",
            "bus": "bus",
            "train": "train",
            "person": "person",
            "rider": "rider",
            "bicycle": "bicycle",
            "motorcycle": "motorcycle",
            "pole": "pole",
            "sign": "traffic sign",
            "light": "traffic light",
        },
    ),
    SEMKITTI_DVPS: _Layout(
        cam_height=1.73,
        ground=(
            ((_ROAD_EDGE, "road"), (7.3, "parking"), (9.0, "sidewalk"), (math.inf, "terrain")),
            ((_ROAD_EDGE, "road"), (6.8, "sidewalk"), (8.3, "other-ground"), (math.inf, "terrain")),
        ),
        front_x=11.0,
        front_classes=("building", "fence", "vegetation"),
        back_x=17.0,
        back_classes=("building", "vegetation"),
        back_height=(_ABOVE_VIEW, _ABOVE_VIEW),
        end_class="vegetation",
        end_height=(_ABOVE_VIEW, _ABOVE_VIEW),
        pole_x=(-7.6, 5.3),
        pole_attachments=("sign",),
        tree_x=(-10.0, 9.6),
        walk_x=(-8.2, 5.9),
        park_x=-6.0,
        tall=("truck", "van"),
        riding=(("bicyclist", ""), ("motorcyclist", "")),
        parked=("bicycle", "motorcycle"),
        kinds={
            "car": "car",
            "truck": "truck",
            "van": "other-vehicle",
            "person": "person",
            "bicycle": "bicycle",
            "motorcycle": "motorcycle",
            "bicyclist": "bicyclist",
            "motorcyclist": "motorcyclist",
            "pole": "pole",
            "sign": "traffic-sign",
            "trunk": "trunk",
            "canopy": "vegetation",
        },
    ),
}


@dataclass(frozen=True)
class _Spec:
    """One format at one image size: layout, class ids and colors, camera intrinsics."""

    cityscapes: bool  # Cityscapes-DVPS (dense labels, sky, hood) or SemKITTI-DVPS
    layout: _Layout
    ids: dict[str, int]  # class name -> train id
    things: frozenset[int]  # train ids of thing classes
    colors: np.ndarray  # (num classes, 3) float32 RGB base colors
    void: int  # class of unlabelled pixels in the label files
    divisor: int  # panoptic label divisor; instance ids are in [1, divisor)
    max_depth: float  # m
    depth_scale: float  # PNG value per meter
    height: int
    width: int
    focal: float  # pixels
    focal_name: str  # focal length as written in SemKITTI-DVPS depth file names
    horizon: int  # row
    cx: float  # column of the optical axis


def _make_spec(dataset_format: str, height: int, width: int) -> _Spec:
    meta = dvps_metadata(dataset_format)
    layout = _LAYOUTS[dataset_format]
    palette = np.array(meta["stuff_colors"], np.float32)
    cityscapes = dataset_format == CITYSCAPES_DVPS
    focal_name = f"{meta['focal_ratio'] * width:.3f}"  # the dataset's camera
    return _Spec(
        cityscapes=cityscapes,
        layout=layout,
        ids={name: i for i, name in enumerate(meta["stuff_classes"])},
        things=frozenset(meta["thing_ids"]),
        colors=0.8 * palette + 0.2 * 112.0,  # close to the palette, not equal to it
        void=meta["label_void_id"],
        divisor=meta["label_divisor"],
        max_depth=meta["max_depth"],
        depth_scale=meta["depth_scale"],
        height=height,
        width=width,
        focal=meta["focal_ratio"] * width if cityscapes else float(focal_name),
        focal_name=focal_name,
        horizon=int(_HORIZON * height),
        cx=(width - 1) / 2,
    )


@dataclass(frozen=True)
class _Segments:
    """A facade side split along the street: segment i covers world z in [start[i], start[i+1])."""

    start: np.ndarray  # (n,) m
    cls: np.ndarray  # (n,) train ids
    height: np.ndarray  # (n,) m
    tint: np.ndarray  # (n,) brightness factor


@dataclass(frozen=True)
class _Street:
    """The static part of one sequence."""

    ego_speed: float  # m per frame
    front: tuple[_Segments, _Segments]  # left, right
    back: tuple[_Segments, _Segments]
    end_height: float  # m
    noise: np.ndarray  # (_NOISE_SIZE, _NOISE_SIZE) float32 in [0, 1], smooth texture table
    background: np.ndarray  # (H, W, 3) float32 RGB behind everything: sky, or black (covered)


@dataclass(frozen=True)
class _Sprite:
    """A flat vertical cut-out facing the camera, moving linearly in the camera frame."""

    kind: str
    cls: int
    inst: int
    x: float  # m: lateral center at frame 0
    z: float  # m: distance at frame 0
    vx: float  # m per frame
    vz: float  # m per frame
    width: float  # m
    height: float  # m
    elevation: float  # m: height of the bottom edge above the ground
    color: np.ndarray  # (3,) float32 RGB
    variant: float  # in [0, 1): shape variant and animation phase


def _check_args(
    dataset_format: str,
    split: str,
    num_sequences: int,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
) -> None:
    if dataset_format not in SYNTHETIC_FORMATS:
        raise ValueError(
            f"dataset_format={dataset_format!r} is unknown; expected one of {SYNTHETIC_FORMATS}."
        )
    if split not in _SPLITS:
        raise ValueError(f"split={split!r} is unknown; expected one of {_SPLITS}.")
    for name, value, minimum in (
        ("num_sequences", num_sequences, 1),
        ("num_frames", num_frames, 1),
        ("height", height, _MIN_SIZE),
        ("width", width, _MIN_SIZE),
        ("seed", seed, 0),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}.")
    if dataset_format == KITTI_STEP and num_sequences > _KITTI_STEP_MAX_SEQUENCES:
        raise ValueError(
            f"num_sequences={num_sequences} is invalid for kitti_step, whose sequence folders "
            f"have four digits; expected at most {_KITTI_STEP_MAX_SEQUENCES}."
        )
    if dataset_format == CITYSCAPES_VPS and (
        num_sequences > _KITTI_STEP_MAX_SEQUENCES or num_frames > _VPS_MAX_FRAMES
    ):
        raise ValueError(
            f"num_sequences={num_sequences}, num_frames={num_frames} are invalid for "
            "cityscapes_vps, whose video and frame numbers have four digits; expected at most "
            f"{_KITTI_STEP_MAX_SEQUENCES} sequences and {_VPS_MAX_FRAMES} frames."
        )


def _segments(
    rng: np.random.Generator,
    spec: _Spec,
    classes: tuple[str, ...],
    heights: dict[str, tuple[float, float]],
    length: float,
) -> _Segments:
    """Segments 5-11 m long cycling through ``classes`` in a random order, covering [0, length]."""
    order = [spec.ids[c] for c in rng.permutation(classes)]
    names = {spec.ids[c]: c for c in classes}
    lengths = rng.uniform(5.0, 11.0, int(length // 5.0) + 1)
    cls = np.array([order[i % len(order)] for i in range(len(lengths))])
    bounds = np.array([heights[names[c]] for c in cls])
    return _Segments(
        start=np.concatenate([[-math.inf], np.cumsum(lengths)[:-1]]),
        cls=cls,
        height=rng.uniform(bounds[:, 0], bounds[:, 1]),
        tint=rng.uniform(0.8, 1.15, len(lengths)),
    )


def _build_street(rng: np.random.Generator, spec: _Spec, num_frames: int) -> _Street:
    layout = spec.layout
    ego_speed = float(rng.uniform(1.0, 2.5))
    length = _Z_FAR + ego_speed * num_frames + 20.0
    front_heights = {c: _FACADE_HEIGHTS[c] for c in layout.front_classes}
    back_heights = {c: layout.back_height for c in layout.back_classes}
    noise = cv2.GaussianBlur(rng.random((_NOISE_SIZE, _NOISE_SIZE), np.float32), (0, 0), 1.2)
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return _Street(
        ego_speed=ego_speed,
        front=tuple(
            _segments(rng, spec, layout.front_classes, front_heights, length) for _ in range(2)
        ),
        back=tuple(
            _segments(rng, spec, layout.back_classes, back_heights, length) for _ in range(2)
        ),
        end_height=float(rng.uniform(*layout.end_height)),
        noise=noise,
        background=(
            _sky(spec, noise)
            if spec.cityscapes
            else np.zeros((spec.height, spec.width, 3), np.float32)
        ),
    )


def _build_sprites(
    rng: np.random.Generator, spec: _Spec, num_frames: int, ego: float, crowd: bool
) -> list[_Sprite]:
    """Props and things of one sequence, in painting order for equal depths.

    Every thing class of the format gets a role, and each role starts in view (except the
    overtaking car, which enters); the first oncoming vehicle passes the camera and leaves.
    """
    layout = spec.layout
    ids = iter(rng.choice(spec.divisor - 1, size=256, replace=False) + 1)
    sprites: list[_Sprite] = []

    def add(
        kind: str,
        x: float,
        z: float,
        vx: float,
        vz: float,
        elevation: float = 0.0,
        height: float | None = None,
        inst: int | None = None,
    ) -> _Sprite:
        """Append a sprite; things get a new instance id (unless ``inst``) and size jitter."""
        cls = spec.ids[layout.kinds[kind]]
        is_thing = cls in spec.things
        scale = float(rng.uniform(0.92, 1.08)) if is_thing else 1.0
        jitter = rng.uniform(-18, 18, 3) if is_thing else rng.uniform(-6, 6, 3)
        if inst is None:
            inst = int(next(ids)) if is_thing else 0
        sprite = _Sprite(
            kind=kind,
            cls=cls,
            inst=inst,
            x=float(x),
            z=float(z),
            vx=float(vx),
            vz=float(vz),
            width=_SIZES[kind][0] * scale,
            height=(_SIZES[kind][1] if height is None else height) * scale,
            elevation=elevation,
            color=np.clip(spec.colors[cls] + jitter, 0, 255).astype(np.float32),
            variant=float(rng.random()),
        )
        sprites.append(sprite)
        return sprite

    def in_view(x: float, width: float) -> float:
        """Distance (m) from which a sprite at x is entirely inside the image horizontally."""
        return max(8.0, (abs(x) + width / 2) * spec.focal / spec.cx)

    # Static props along both sides, from behind the camera to the street's end at the last frame.
    length = _Z_FAR + ego * num_frames + 5.0
    for side in (0, 1):
        x = layout.pole_x[side]
        for i, z in enumerate(np.arange(rng.uniform(2.0, 10.0), length, rng.uniform(11.0, 17.0))):
            kind = layout.pole_attachments[i % len(layout.pole_attachments)]
            pole_height, mount = (5.0, 3.9) if kind == "light" else (3.0, 2.2)
            add("pole", x, z, 0.0, -ego, height=pole_height)
            add(kind, x, z, 0.0, -ego, elevation=mount)
        if layout.tree_x:
            x = layout.tree_x[side]
            for z in np.arange(rng.uniform(0.0, 6.0), length, rng.uniform(7.0, 11.0)):
                trunk = add("trunk", x, z, 0.0, -ego)
                add("canopy", x, z, 0.0, -ego, elevation=trunk.height - 0.6)

    # Lead car in the camera's lane and a taller vehicle right behind it (visible above it).
    tall = [str(kind) for kind in rng.permutation(layout.tall)]
    lead = add("car", rng.uniform(-0.3, 0.3), rng.uniform(10.0, 16.0), 0.0, rng.uniform(-0.4, 0.4))
    add(
        tall[0],
        lead.x + rng.uniform(-0.5, 0.5),
        lead.z + rng.uniform(8.0, 18.0),
        0.0,
        lead.vz + rng.uniform(-0.3, 0.3),
    )
    # Oncoming queue: the first one passes the camera (leaves the view) before the last frame.
    z = 0.0
    for i, kind in enumerate(tall[1:]):
        speed = ego + rng.uniform(1.5, 4.0)
        if i == 0:
            first = in_view(-_LANE, _SIZES[kind][0]) / speed
            z = speed * rng.uniform(first, max(first, num_frames - 1.5))
        else:
            z += rng.uniform(18.0, 30.0)
        add(kind, -_LANE, min(z, _Z_FAR - 5.0), 0.0, -speed)
    # Two-wheelers riding along the right edge, one near and one far.
    near, far = (in_view(_BIKE_X, 2.0), 22.0), (28.0, 45.0)
    for (kind, rider), zone in zip(layout.riding, rng.permutation([near, far]), strict=True):
        vehicle = add(kind, _BIKE_X, rng.uniform(*zone), 0.0, -ego + rng.uniform(0.5, 1.5))
        if rider:
            dx, elevation = _SADDLES[kind]
            add(rider, vehicle.x + dx, vehicle.z, 0.0, vehicle.vz, elevation=elevation)
    for kind in layout.parked:
        add(kind, layout.park_x, rng.uniform(in_view(layout.park_x, 2.0), 40.0), 0.0, -ego)
    # Pedestrians: one on the left sidewalk, plus walkers on the right or crossing the road.
    walker_z = rng.uniform(in_view(layout.walk_x[0], 0.6), 32.0)
    add("person", layout.walk_x[0], walker_z, 0.0, -ego + rng.uniform(-0.6, 0.6))
    for _ in range(rng.integers(1, 4)):
        if rng.random() < 0.5:
            x = layout.walk_x[1]
            add("person", x, rng.uniform(in_view(x, 0.6), 40.0), 0.0, -ego + rng.uniform(-0.6, 0.6))
        else:
            x = float(rng.choice([-1, 1])) * rng.uniform(4.5, 5.5)
            vx = -np.sign(x) * rng.uniform(0.3, 0.7)
            add("person", x, rng.uniform(in_view(x, 0.6), 30.0), vx, -ego)
    # A car overtaking from behind the camera: enters the view during the sequence.
    if num_frames >= 4:
        speed = rng.uniform(4.0, 6.0)
        add("car", _LANE, -speed * rng.uniform(0.3, num_frames - 3), 0.0, speed)
    if crowd:  # Cityscapes crowd region: a group of persons labelled with instance 0
        x, z = layout.walk_x[1] + 0.3, rng.uniform(18.0, 30.0)
        for _ in range(5):
            add("person", x + rng.uniform(-0.7, 0.7), z + rng.uniform(0.0, 1.5), 0.0, -ego, inst=0)
    return sprites


class _Canvas:
    """Per-pixel class, instance, depth (m; inf = nothing) and RGB color of a frame being drawn."""

    def __init__(self, spec: _Spec, background_cls: int, background_rgb: np.ndarray):
        shape = (spec.height, spec.width)
        self.label = np.full(shape, background_cls, np.int32)
        self.inst = np.zeros(shape, np.int32)
        self.depth = np.full(shape, np.inf, np.float32)
        self.rgb = background_rgb

    def paint(
        self,
        pixels: np.ndarray,
        depth: np.ndarray | float,
        cls: np.ndarray | int,
        inst: int,
        rgb: np.ndarray,
    ) -> None:
        """Paint the distinct ``pixels`` (flat indices, row * W + column) that are not behind
        what is drawn there (depth test; ties win). ``depth`` (m) and ``cls`` are scalars or
        (n,) arrays, ``rgb`` is (n, 3).
        """
        depth = np.broadcast_to(depth, pixels.shape)
        keep = depth <= self.depth.reshape(-1)[pixels]
        pixels = pixels[keep]
        self.depth.reshape(-1)[pixels] = depth[keep]
        self.label.reshape(-1)[pixels] = np.broadcast_to(cls, keep.shape)[keep]
        self.inst.reshape(-1)[pixels] = inst
        self.rgb.reshape(-1, 3)[pixels] = rgb[keep]


def _lookup(table: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Sample the wrapping texture table at (u, v) (table cells), nearest cell."""
    n = table.shape[0]
    return table[np.floor(v).astype(np.int64) % n, np.floor(u).astype(np.int64) % n]


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def _sky(spec: _Spec, noise: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 RGB sky: brighter toward the horizon, with soft clouds."""
    rows = np.arange(spec.height, dtype=np.float32)[:, None, None]
    gradient = 0.82 + 0.3 * np.minimum(rows / spec.horizon, 1)
    rgb = spec.colors[spec.ids["sky"]] * gradient * np.ones((1, spec.width, 1), np.float32)
    clouds = cv2.resize(noise[:12, :24], (spec.width, spec.height), interpolation=cv2.INTER_CUBIC)
    cover = np.clip((clouds - 0.55) * 2.5, 0, 0.8)[..., None]
    return rgb + (255 - rgb) * cover


def _paint_ground(canvas: _Canvas, spec: _Spec, street: _Street, frame: int) -> None:
    """Road, markings and side bands on the ground plane below the horizon."""
    layout, ids, noise = spec.layout, spec.ids, street.noise
    rows = np.arange(spec.horizon + 1, spec.height, dtype=np.float32)[:, None]
    z = spec.focal * layout.cam_height / (rows - spec.horizon)  # (h, 1)
    x = (np.arange(spec.width, dtype=np.float32) - spec.cx) * z / spec.focal  # (h, W)
    zw = z + street.ego_speed * frame  # along the street, fixed to the world
    ax = np.abs(x)
    cls = np.empty(x.shape, np.int32)
    for side, bands in enumerate(layout.ground):
        edges = np.array([edge for edge, _ in bands[:-1]], np.float32)
        band_ids = np.array([ids[name] for _, name in bands])
        on_side = (x >= 0) if side else (x < 0)
        cls[on_side] = band_ids[np.searchsorted(edges, ax[on_side])]
    shade = 0.92 + 0.16 * _lookup(noise, x * 3, zw * 3)
    white = np.zeros(x.shape, bool)
    road = cls == ids["road"]
    dashes = (np.abs(ax - _LANE / 2) < 0.07) & (_frac(zw / 9.0) < 0.4)
    edge_lines = np.abs(ax - _ROAD_EDGE + 0.18) < 0.07
    white |= road & (dashes | edge_lines)
    tiles = (_frac(x / 0.8) < 0.07) | (_frac(zw / 0.8) < 0.07)
    shade = np.where((cls == ids["sidewalk"]) & tiles, 0.78, shade)
    shade = np.where(cls == ids["terrain"], 0.65 + 0.6 * _lookup(noise, x * 2, zw * 2), shade)
    if "parking" in ids:
        white |= (cls == ids["parking"]) & (_frac(zw / 2.6) < 0.05)
        gravel = 0.7 + 0.6 * _lookup(noise, x * 14, zw * 14)
        shade = np.where(cls == ids["other-ground"], gravel, shade)
    rgb = spec.colors[cls] * shade[..., None]
    rgb[white] = (225, 225, 215)
    pixels = np.arange((spec.horizon + 1) * spec.width, spec.height * spec.width)
    z = np.broadcast_to(z, x.shape).reshape(-1)
    canvas.paint(pixels, z, cls.reshape(-1), 0, rgb.reshape(-1, 3))


def _paint_vertical(
    canvas: _Canvas,
    spec: _Spec,
    noise: np.ndarray,
    z: np.ndarray,
    u: np.ndarray,
    cls: np.ndarray,
    height: np.ndarray,
    tint: np.ndarray,
) -> None:
    """Paint a vertical surface standing on the ground, given per image column (all (W,)):
    its distance ``z`` (m; inf where absent), the coordinate ``u`` (m) along it, its class,
    height (m) and brightness ``tint``.
    """
    ids = spec.ids
    present = np.isfinite(z)
    z, u = np.where(present, z, 0), np.where(present, u, 0)
    crown = 1.2 * (_lookup(noise, u * 1.5, np.zeros_like(u)) - 0.5)  # irregular tree tops
    height = np.where(cls == ids["vegetation"], height + crown, height)
    rows = np.arange(spec.height, dtype=np.float32)[:, None]
    y = spec.layout.cam_height - (rows - spec.horizon) * z / spec.focal
    pixels = np.flatnonzero(present & (y >= 0) & (y <= height))
    # Per painted pixel: its column c, height above the ground y (m) and its column's values.
    c = pixels % spec.width
    y, u, cls, height = y.reshape(-1)[pixels], u[c], cls[c], height[c]
    shade = np.ones(y.shape, np.float32)
    vegetation = cls == ids["vegetation"]
    shade[vegetation] = 0.55 + 0.8 * _lookup(noise, u[vegetation] * 3, y[vegetation] * 3)
    building = cls == ids["building"]
    shade[building] = 0.94 + 0.12 * _lookup(noise, u[building] * 8, y[building] * 8)
    slats = (_frac(u / 0.2) < 0.3) | (np.abs(y - 0.3) < 0.05) | (np.abs(y - height + 0.1) < 0.05)
    shade[(cls == ids["fence"]) & slats] = 0.6
    if "wall" in ids:
        mortar = (_frac(y / 0.3) < 0.12) | (_frac((u + 0.3 * (np.floor(y / 0.3) % 2)) / 0.6) < 0.06)
        shade[(cls == ids["wall"]) & mortar] = 0.75
    windows = (
        building
        & (np.abs(_frac(u / 3.2) - 0.52) < 0.22)
        & (np.abs(_frac(y / 3.0) - 0.57) < 0.22)
        & (y > 3.0)
        & (y < height - 0.8)
    )
    rgb = spec.colors[cls] * (tint[c] * shade)[:, None]
    glass = 0.8 + 0.5 * _lookup(noise, u[windows], y[windows])
    rgb[windows] = np.array(_GLASS, np.float32) * glass[:, None]
    canvas.paint(pixels, z[c], cls, 0, rgb)


def _paint_facades(canvas: _Canvas, spec: _Spec, street: _Street, frame: int) -> None:
    """The wall ending the street, then the back and front facade rows of both sides."""
    layout = spec.layout
    dx = np.arange(spec.width, dtype=np.float32) - spec.cx
    end_cls = np.full(spec.width, spec.ids[layout.end_class])
    end_height = np.full(spec.width, street.end_height, np.float32)
    z = np.full(spec.width, _Z_FAR, np.float32)
    u = dx * _Z_FAR / spec.focal
    _paint_vertical(canvas, spec, street.noise, z, u, end_cls, end_height, np.ones_like(z))
    # Column c sees the facade at |x| = x_facade at distance x_facade * focal / |c - cx|.
    left = dx < 0
    distance = np.abs(dx) / spec.focal
    for x_facade, (left_segs, right_segs) in (
        (layout.back_x, street.back),
        (layout.front_x, street.front),
    ):
        with np.errstate(divide="ignore"):  # the center column of odd widths: z = inf
            z = x_facade / distance
        z = np.where(z <= _Z_FAR, z, np.inf).astype(np.float32)
        u = z + street.ego_speed * frame  # along the street, fixed to the world
        i = np.searchsorted(left_segs.start, u, side="right") - 1
        j = np.searchsorted(right_segs.start, u, side="right") - 1
        cls = np.where(left, left_segs.cls[i], right_segs.cls[j])
        height = np.where(left, left_segs.height[i], right_segs.height[j])
        tint = np.where(left, 0.88 * left_segs.tint[i], right_segs.tint[j])  # lit from the right
        _paint_vertical(canvas, spec, street.noise, z, u, cls, height, tint)


class _Pen:
    """Draws a sprite's parts into a local mask and RGB canvas with OpenCV.

    Coordinates are in meters: x to the right from the sprite's left edge, y up from its bottom
    edge, plus ``offset``; ``scale`` is pixels per meter at the sprite's distance.
    """

    def __init__(self, shape: tuple[int, int], left: float, bottom: float, scale: float):
        self.mask = np.zeros(shape, np.uint8)
        self.rgb = np.zeros(shape + (3,), np.uint8)
        self.left, self.bottom, self.scale = left, bottom, scale
        self.offset = (0.0, 0.0)

    def _point(self, x: float, y: float) -> tuple[int, int]:
        px = self.left + (x + self.offset[0]) * self.scale
        py = self.bottom - (y + self.offset[1]) * self.scale
        return round(px * (1 << _SHIFT)), round(py * (1 << _SHIFT))

    def _width(self, meters: float) -> int:
        return max(1, round(meters * self.scale))

    def poly(self, points: list[tuple[float, float]], color: _Color) -> None:
        pts = np.array([self._point(x, y) for x, y in points], np.int32).reshape(-1, 1, 2)
        cv2.fillPoly(self.mask, [pts], 1, cv2.LINE_8, _SHIFT)
        cv2.fillPoly(self.rgb, [pts], _color(color), cv2.LINE_8, _SHIFT)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: _Color) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], color)

    def ellipse(
        self, x: float, y: float, rx: float, ry: float, color: _Color, line: float = 0.0
    ) -> None:
        """A filled ellipse, or its outline ``line`` meters wide."""
        axes = (round(rx * self.scale * (1 << _SHIFT)), round(ry * self.scale * (1 << _SHIFT)))
        thickness = self._width(line) if line else -1
        for img, value in ((self.mask, 1), (self.rgb, _color(color))):
            cv2.ellipse(
                img, self._point(x, y), axes, 0, 0, 360, value, thickness, cv2.LINE_8, _SHIFT
            )

    def line(
        self, p0: tuple[float, float], p1: tuple[float, float], width: float, color: _Color
    ) -> None:
        a, b, thickness = self._point(*p0), self._point(*p1), self._width(width)
        cv2.line(self.mask, a, b, 1, thickness, cv2.LINE_8, _SHIFT)
        cv2.line(self.rgb, a, b, _color(color), thickness, cv2.LINE_8, _SHIFT)


def _color(color: _Color) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.clip(np.round(color), 0, 255))


def _mirror(pen: _Pen, w: float, x0: float, y0: float, x1: float, y1: float, color: _Color) -> None:
    """A rectangle and its mirror image about the sprite's vertical axis."""
    pen.rect(x0, y0, x1, y1, color)
    pen.rect(w - x1, y0, w - x0, y1, color)


# Sprite drawers: (pen, width w (m), height h (m), class color c (RGB), variant v in [0, 1),
# frame index t). Things face the camera (vehicles from behind, two-wheelers from the side).


def _draw_car(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _mirror(pen, w, 0.05, 0.0, 0.38, 0.4, _TYRE)
    pen.rect(0.0, 0.15, w, 0.85, c)
    pen.poly([(0.12, 0.85), (w - 0.12, 0.85), (w - 0.32, h), (0.32, h)], c * 0.85)
    pen.poly([(0.25, 0.92), (w - 0.25, 0.92), (w - 0.4, h - 0.07), (0.4, h - 0.07)], _GLASS)
    _mirror(pen, w, 0.08, 0.58, 0.38, 0.74, _TAIL)
    pen.rect(w / 2 - 0.26, 0.3, w / 2 + 0.26, 0.44, _PLATE)


def _draw_truck(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _mirror(pen, w, 0.1, 0.0, 0.7, 0.55, _TYRE)
    pen.rect(0.0, 0.35, w, h, c)
    for x in np.arange(0.25, w, 0.42):
        pen.rect(x - 0.03, 0.5, x + 0.03, h - 0.1, c * 0.7)
    pen.rect(w / 2 - 0.02, 0.5, w / 2 + 0.02, h - 0.1, _TYRE)
    pen.rect(0.05, 0.3, w - 0.05, 0.45, _TYRE)
    _mirror(pen, w, 0.1, 0.5, 0.3, 0.7, _TAIL)


def _draw_bus(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _mirror(pen, w, 0.15, 0.0, 0.6, 0.45, _TYRE)
    pen.rect(0.0, 0.15, w, h - 0.1, c)
    pen.rect(0.1, h - 0.1, w - 0.1, h, c)
    pen.rect(0.15, 1.75, w - 0.15, 2.7, _GLASS)
    pen.rect(0.45, 2.75, w - 0.45, 2.95, (230, 170, 40))
    pen.rect(0.0, 1.15, w, 1.3, _PLATE)
    _mirror(pen, w, 0.1, 0.5, 0.35, 0.9, _TAIL)


def _draw_train(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.rect(0.25, 0.0, w - 0.25, 0.35, _TYRE)
    pen.rect(0.0, 0.3, w, h - 0.45, c)
    pen.poly([(0.0, h - 0.45), (w, h - 0.45), (w - 0.3, h - 0.3), (0.3, h - 0.3)], c * 0.8)
    pen.line((w / 2 - 0.6, h - 0.3), (w / 2, h - 0.03), 0.05, _TYRE)  # pantograph
    pen.line((w / 2 + 0.6, h - 0.3), (w / 2, h - 0.03), 0.05, _TYRE)
    pen.line((w / 2 - 0.5, h - 0.03), (w / 2 + 0.5, h - 0.03), 0.04, _TYRE)
    pen.rect(0.2, 1.7, w - 0.2, 3.0, _GLASS)
    pen.rect(0.0, 1.2, w, 1.45, c * 1.35)
    pen.ellipse(0.45, 0.8, 0.12, 0.12, _PLATE)
    pen.ellipse(w - 0.45, 0.8, 0.12, 0.12, _PLATE)


def _draw_van(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _mirror(pen, w, 0.1, 0.0, 0.45, 0.42, _TYRE)
    pen.rect(0.0, 0.2, w, h - 0.1, c)
    pen.rect(0.08, h - 0.1, w - 0.08, h, c)
    _mirror(pen, w, 0.2, 1.45, w / 2 - 0.08, 2.05, _GLASS)
    pen.rect(w / 2 - 0.02, 0.35, w / 2 + 0.02, 2.1, c * 0.6)
    _mirror(pen, w, 0.06, 0.5, 0.28, 0.95, _TAIL)
    pen.rect(0.05, 0.2, w - 0.05, 0.35, _TYRE)


def _draw_person(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    swing = 0.12 * math.sin(2.2 * t + 2 * math.pi * v)
    mid, hip, shoulder = w / 2, 0.5 * h, 0.82 * h
    for side in (-1, 1):
        pen.line((mid + 0.05 * side, hip), (mid + 0.05 * side + side * swing, 0.03), 0.12, c * 0.4)
        arm_end = (mid + 0.2 * side - side * swing, hip)
        pen.line((mid + 0.17 * side, shoulder - 0.03), arm_end, 0.08, c * 0.85)
    pen.poly(
        [
            (mid - 0.19, shoulder),
            (mid + 0.19, shoulder),
            (mid + 0.15, 0.48 * h),
            (mid - 0.15, 0.48 * h),
        ],
        c,
    )
    head = 0.065 * h
    pen.ellipse(mid, h - head, head, head * 1.1, (60, 40, 30))
    pen.ellipse(mid, h - head * 1.2, head * 0.9, head, _SKIN)


def _draw_rider(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.line((0.3, 0.38), (0.6, 0.3), 0.13, c * 0.4)
    pen.line((0.6, 0.3), (0.55, 0.02), 0.11, c * 0.4)
    pen.poly([(0.2, 0.35), (0.42, 0.35), (0.62, 0.85), (0.42, 0.92)], c)
    pen.line((0.5, 0.82), (0.76, 0.5), 0.08, c * 0.85)
    pen.ellipse(0.55, h - 0.13, 0.12, 0.12, _HELMET)


def _draw_bicycle(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    rear, front, crank = (0.36, 0.34), (w - 0.36, 0.34), (0.8, 0.3)
    seat, head = (0.62, 0.82), (w - 0.52, 0.86)
    for hub in (rear, front):  # filled wheels, as Cityscapes' polygon annotations label them
        pen.ellipse(*hub, 0.33, 0.33, _TYRE)
        pen.ellipse(*hub, 0.28, 0.28, np.multiply(_METAL, 0.6))
        pen.line(hub, hub, 0.06, _METAL)
    for a, b in (
        (rear, seat),
        (seat, crank),
        (crank, rear),
        (seat, head),
        (head, crank),
        (head, front),
    ):
        pen.line(a, b, 0.05, c)
    pen.rect(0.52, 0.84, 0.74, 0.9, _TYRE)
    pen.line(head, (head[0] - 0.08, h - 0.02), 0.04, _TYRE)


def _draw_motorcycle(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    for x in (0.34, w - 0.34):
        pen.ellipse(x, 0.32, 0.32, 0.32, _TYRE)
        pen.ellipse(x, 0.32, 0.18, 0.18, _METAL, line=0.05)
    pen.line((w - 0.32, 0.32), (w - 0.42, 0.95), 0.06, _METAL)
    pen.poly([(0.45, 0.45), (1.55, 0.45), (1.7, 0.8), (1.25, 0.95), (0.75, 0.82), (0.3, 0.75)], c)
    pen.rect(0.8, 0.25, 1.25, 0.5, (90, 90, 95))
    pen.poly([(0.35, 0.75), (0.95, 0.82), (0.95, 0.9), (0.4, 0.86)], _TYRE)
    pen.line((w - 0.45, 0.9), (w - 0.4, h - 0.02), 0.05, _TYRE)
    pen.ellipse(w - 0.25, 0.85, 0.07, 0.07, _PLATE)


def _draw_bicyclist(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _draw_bicycle(pen, w, 1.05, c * 0.7, v, t)
    pen.offset = (0.35, 0.55)
    _draw_rider(pen, 0.8, h - 0.55, c, v, t)


def _draw_motorcyclist(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    _draw_motorcycle(pen, w, 1.2, c * 0.7, v, t)
    pen.offset = (0.45, 0.65)
    _draw_rider(pen, 0.8, h - 0.65, c, v, t)


def _draw_pole(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.rect(0.0, 0.0, w, h, c)
    pen.rect(0.0, 0.0, w * 0.35, h, c * 1.2)


def _draw_sign(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    shape = int(v * 3)
    if shape == 0:
        pen.ellipse(w / 2, h / 2, w / 2, h / 2, _PLATE)
        pen.ellipse(w / 2, h / 2, w * 0.38, h * 0.38, c)
    elif shape == 1:
        pen.poly([(0.0, h * 0.1), (w, h * 0.1), (w / 2, h)], _PLATE)
        pen.poly([(w * 0.15, h * 0.2), (w * 0.85, h * 0.2), (w / 2, h * 0.8)], c)
    else:
        pen.rect(0.0, 0.0, w, h, _PLATE)
        pen.rect(w * 0.1, h * 0.1, w * 0.9, h * 0.9, c)
    pen.rect(w * 0.3, h * 0.42, w * 0.7, h * 0.52, _TYRE)


def _draw_light(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.rect(0.0, 0.0, w, h, c)
    lit = int(v * 3)
    for i, lamp in enumerate(_LAMPS):
        pen.ellipse(w / 2, h * (0.8 - 0.3 * i), 0.12, 0.12, lamp if i == lit else (45, 45, 45))


def _draw_trunk(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.rect(0.0, 0.0, w, h, c)
    for x in (0.1, 0.22):
        pen.rect(x, 0.0, x + 0.03, h, c * 0.7)


def _draw_canopy(pen: _Pen, w: float, h: float, c: np.ndarray, v: float, t: int) -> None:
    pen.ellipse(w / 2, h / 2, w / 2, h / 2, c)
    for bx, by, r, k in ((0.3, 0.6, 0.22, 1.25), (0.65, 0.7, 0.2, 0.75), (0.5, 0.3, 0.25, 1.15)):
        pen.ellipse(w * bx, h * by, w * r, h * r, c * k)


_DRAWERS: dict[str, Callable[[_Pen, float, float, np.ndarray, float, int], None]] = {
    "car": _draw_car,
    "truck": _draw_truck,
    "bus": _draw_bus,
    "train": _draw_train,
    "van": _draw_van,
    "person": _draw_person,
    "rider": _draw_rider,
    "bicycle": _draw_bicycle,
    "motorcycle": _draw_motorcycle,
    "bicyclist": _draw_bicyclist,
    "motorcyclist": _draw_motorcyclist,
    "pole": _draw_pole,
    "sign": _draw_sign,
    "light": _draw_light,
    "trunk": _draw_trunk,
    "canopy": _draw_canopy,
}


def _paint_sprite(canvas: _Canvas, spec: _Spec, sprite: _Sprite, frame: int) -> None:
    x = sprite.x + sprite.vx * frame
    z = sprite.z + sprite.vz * frame
    if not _Z_NEAR <= z <= _Z_FAR:
        return
    scale = spec.focal / z
    left = spec.cx + (x - sprite.width / 2) * scale
    right = left + sprite.width * scale
    bottom = spec.horizon + (spec.layout.cam_height - sprite.elevation) * scale
    top = bottom - sprite.height * scale
    c0, c1 = max(0, math.floor(left)), min(spec.width, math.ceil(right) + 1)
    r0, r1 = max(0, math.floor(top)), min(spec.height, math.ceil(bottom) + 1)
    if c0 >= c1 or r0 >= r1:
        return
    pen = _Pen((r1 - r0, c1 - c0), left - c0, bottom - r0, scale)
    _DRAWERS[sprite.kind](pen, sprite.width, sprite.height, sprite.color, sprite.variant, frame)
    r, c = np.nonzero(pen.mask)
    pixels = (r + r0) * spec.width + c + c0
    canvas.paint(pixels, z, sprite.cls, sprite.inst, pen.rgb[r, c].astype(np.float32))


def _paint_hood(canvas: _Canvas, spec: _Spec) -> None:
    """The ego car's hood at the bottom of Cityscapes frames: void, no depth."""
    h, w = spec.height, spec.width
    outline = np.array(
        [(0, h), (0, 0.95 * h), (0.25 * w, 0.915 * h), (0.75 * w, 0.915 * h), (w, 0.95 * h), (w, h)]
    )
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(outline).astype(np.int32)], 1)
    pixels = np.flatnonzero(mask)
    brightness = 1.4 - 0.4 * (pixels // w) / h  # lighter toward the windshield
    rgb = np.array([38, 40, 46], np.float32) * brightness[:, None].astype(np.float32)
    canvas.paint(pixels, 0.0, spec.void, 0, rgb)


def _render(spec: _Spec, street: _Street, sprites: list[_Sprite], frame: int) -> _Canvas:
    """Draw one frame, far to near."""
    background_cls = spec.ids["sky"] if spec.cityscapes else spec.void  # void: never visible
    canvas = _Canvas(spec, background_cls, street.background.copy())
    _paint_facades(canvas, spec, street, frame)
    _paint_ground(canvas, spec, street, frame)
    order = sorted(range(len(sprites)), key=lambda i: -(sprites[i].z + sprites[i].vz * frame))
    for i in order:
        _paint_sprite(canvas, spec, sprites[i], frame)
    if spec.cityscapes:
        _paint_hood(canvas, spec)
    return canvas


def _finish_image(canvas: _Canvas, spec: _Spec, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the canvas colors with haze growing with depth, plus pixel noise."""
    depth = np.where(np.isfinite(canvas.depth), canvas.depth, np.float32(0))
    haze = (0.35 * np.minimum(depth, spec.max_depth) / spec.max_depth)[..., None]
    rgb = canvas.rgb * (1 - haze) + _HAZE * haze
    rgb += rng.integers(-6, 7, rgb.shape, np.int8)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _depth_png(canvas: _Canvas, spec: _Spec) -> np.ndarray:
    """(H, W) uint16: meters * depth_scale, 0 where there is no depth."""
    depth = np.where(np.isfinite(canvas.depth), canvas.depth, 0.0)
    return np.round(np.minimum(depth, spec.max_depth) * spec.depth_scale).astype(np.uint16)


def _lidar_points(canvas: _Canvas, spec: _Spec) -> np.ndarray:
    """(H, W) bool: pixels hit by a simulated 64-line LiDAR, plus one pixel of every labelled
    segment (class, instance) that the scan lines miss, so small and far objects get points."""
    points = np.zeros((spec.height, spec.width), bool)
    elevations = np.deg2rad(np.linspace(*_LIDAR_ELEVATIONS, _LIDAR_LINES))
    rows = np.round(spec.horizon - spec.focal * np.tan(elevations)).astype(int)
    for i, row in enumerate(rows):
        if 0 <= row < spec.height:
            points[row, (2 * i) % _LIDAR_STEP :: _LIDAR_STEP] = True
    labelled = (canvas.label != spec.void) & np.isfinite(canvas.depth)
    segment = np.where(labelled, canvas.label * spec.divisor + canvas.inst, -1).reshape(-1)
    order = np.argsort(segment, kind="stable")
    ids, starts, counts = np.unique(segment[order], return_index=True, return_counts=True)
    missing = (ids >= 0) & ~np.isin(ids, segment[points.reshape(-1)])
    points.reshape(-1)[order[starts[missing] + counts[missing] // 2]] = True  # a middle pixel
    return points & labelled


_Files = dict[str, np.ndarray | dict[str, Any]]  # path -> PNG array (BGR if 3 channels) or JSON


def _dvps_frame(
    split_dir: str, spec: _Spec, seq: int, frame: int, canvas: _Canvas, image: np.ndarray
) -> _Files:
    """One frame's files in the Cityscapes-DVPS or SemKITTI-DVPS layout, the image first."""
    depth = _depth_png(canvas, spec)
    if spec.cityscapes:  # dense panoptic label
        prefix = f"{seq:06d}_{frame:06d}_{_CITY}_{seq:06d}_{5 * frame + 4:06d}"
        panoptic = canvas.label * spec.divisor + canvas.inst
        labels = {"_gtFine_instanceTrainIds.png": panoptic.astype(np.uint16), "_depth.png": depth}
    else:  # SemKITTI-DVPS: sparse class, instance and depth, at LiDAR points
        prefix = f"{seq:06d}_{frame:06d}"
        points = _lidar_points(canvas, spec)
        labels = {
            "_gtFine_class.png": np.where(points, canvas.label, spec.void).astype(np.uint8),
            "_gtFine_instance.png": np.where(points, canvas.inst, 0).astype(np.uint16),
            f"_depth_{spec.focal_name}.png": np.where(points, depth, 0).astype(np.uint16),
        }
    files: _Files = {os.path.join(split_dir, prefix + "_leftImg8bit.png"): image[..., ::-1]}
    for suffix, array in labels.items():
        files[os.path.join(split_dir, prefix + suffix)] = array
    return files


def cityscapes_panoptic_paths(out_dir: str, split: str) -> tuple[str, str, str]:
    """The ``(image_dir, gt_dir, gt_json)`` arguments of Detectron2's
    ``load_cityscapes_panoptic`` for a split of a Cityscapes dataset rooted at ``out_dir``."""
    gt_root = os.path.join(out_dir, "gtFine")
    return (
        os.path.join(out_dir, "leftImg8bit", split),
        os.path.join(gt_root, f"cityscapes_panoptic_{split}"),
        os.path.join(gt_root, f"cityscapes_panoptic_{split}.json"),
    )


def _cityscapes_segments(canvas: _Canvas, spec: _Spec) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(H, W) int64 Cityscapes segment ids (0 = unlabelled) and their ``segments_info``, ordered
    by segment id; the convention is in the module docstring."""
    labelled = canvas.label != spec.void
    label_id = _LABEL_IDS[np.where(labelled, canvas.label, 0)]
    segment = np.where(labelled, label_id, 0).astype(np.int64)
    for cls in sorted(spec.things):
        instance = (canvas.label == cls) & (canvas.inst > 0)
        inst = canvas.inst[instance]
        index = np.searchsorted(np.unique(inst), inst)  # 0, 1, ... in instance id order
        segment[instance] = _LABEL_IDS[cls] * 1000 + index
    info = []
    for segment_id in np.unique(segment[labelled]).tolist():
        rows, cols = np.nonzero(segment == segment_id)
        category = segment_id if segment_id < 1000 else segment_id // 1000
        crowd = segment_id < 1000 and category in _THING_LABEL_IDS
        info.append(
            {
                "id": segment_id,
                "category_id": category,
                "iscrowd": int(crowd),
                "area": len(rows),
                "bbox": [
                    int(cols.min()),
                    int(rows.min()),
                    int(cols.max() - cols.min() + 1),
                    int(rows.max() - rows.min() + 1),
                ],
            }
        )
    return segment, info


def _disparity_png(canvas: _Canvas, spec: _Spec) -> np.ndarray:
    """(H, W) uint16 Cityscapes disparity: round(256 * baseline * fx / depth) + 1 in 1..65535,
    0 where there is no depth and in the left border band."""
    depth = canvas.depth.astype(np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    disparity = np.divide(_BASELINE * spec.focal, depth, out=np.zeros_like(depth), where=valid)
    value = np.where(valid, np.clip(np.round(disparity * 256) + 1, 1, 65535), 0)
    value[:, : math.ceil(_DISPARITY_BORDER * spec.width)] = 0
    return value.astype(np.uint16)


def _camera(spec: _Spec) -> dict[str, Any]:
    """A Cityscapes camera file's content for the renderer's camera."""
    return {
        "extrinsic": {
            "baseline": _BASELINE,
            "pitch": 0.0,
            "roll": 0.0,
            "x": _CAMERA_X,
            "y": _CAMERA_Y,
            "yaw": 0.0,
            "z": spec.layout.cam_height,
        },
        "intrinsic": {
            "fx": spec.focal,
            "fy": spec.focal,
            "u0": spec.cx,
            "v0": float(spec.horizon),
        },
    }


def _cityscapes_frame(
    out_dir: str, split: str, spec: _Spec, seq: int, frame: int, canvas: _Canvas, image: np.ndarray
) -> tuple[_Files, dict[str, Any]]:
    """One frame's files in the plain Cityscapes layout, the image first, and its panoptic
    annotation (an ``annotations`` entry of the split's JSON)."""
    city = _CITIES[seq % len(_CITIES)]
    name = f"{city}_{seq:06d}_{frame:06d}"
    _, panoptic_dir, _ = cityscapes_panoptic_paths(out_dir, split)
    segment, segments_info = _cityscapes_segments(canvas, spec)
    rgb = np.stack([segment % 256, segment // 256 % 256, segment // 65536], -1).astype(np.uint8)
    train_ids = np.where(canvas.label != spec.void, canvas.label, 255).astype(np.uint8)

    def path(folder: str, suffix: str) -> str:
        return os.path.join(out_dir, folder, split, city, name + suffix)

    files: _Files = {
        path("leftImg8bit", "_leftImg8bit.png"): image[..., ::-1],
        path("gtFine", "_gtFine_labelTrainIds.png"): train_ids,
        os.path.join(panoptic_dir, name + "_gtFine_panoptic.png"): rgb[..., ::-1],
        path("disparity", "_disparity.png"): _disparity_png(canvas, spec),
        path("camera", "_camera.json"): _camera(spec),
    }
    annotation = {
        "image_id": name,
        "file_name": name + "_gtFine_panoptic.png",
        "segments_info": segments_info,
    }
    return files, annotation


def _panoptic_json(
    annotations: list[dict[str, Any]], spec: _Spec, category_id: str = "id"
) -> dict[str, Any]:
    """A split's COCO panoptic JSON, as cityscapesScripts' ``createPanopticImgs`` writes it,
    with ``CITYSCAPES_CATEGORIES``' ``category_id`` key as category ids: ``"id"`` (label ids) or
    ``"trainId"`` (Cityscapes-VPS)."""
    supercategory = {name: sup for sup, names in _SUPERCATEGORIES.items() for name in names}
    return {
        "images": [
            {
                "id": a["image_id"],
                "file_name": a["image_id"] + "_leftImg8bit.png",
                "width": spec.width,
                "height": spec.height,
            }
            for a in annotations
        ],
        "annotations": annotations,
        "categories": [
            {
                "id": c[category_id],
                "name": c["name"],
                "color": list(c["color"]),
                "supercategory": supercategory[c["name"]],
                "isthing": c["isthing"],
            }
            for c in sorted(CITYSCAPES_CATEGORIES, key=lambda c: c[category_id])
        ],
    }


def _kitti_step_frame(
    out_dir: str, split: str, spec: _Spec, seq: int, frame: int, canvas: _Canvas, image: np.ndarray
) -> _Files:
    """One frame's files in DeepLab2's KITTI-STEP layout, the image first (module docstring)."""
    name = os.path.join(f"{seq:04d}", f"{frame:06d}.png")
    classes = np.where(canvas.label != spec.void, canvas.label, 255)
    instance = np.where(np.isin(canvas.label, _KITTI_STEP_TRACKED), canvas.inst, 0)
    rgb = np.stack([classes, instance // 256, instance % 256], -1).astype(np.uint8)
    return {
        os.path.join(out_dir, "images", split, name): image[..., ::-1],
        os.path.join(out_dir, "panoptic_maps", split, name): rgb[..., ::-1],
    }


def _cityscapes_vps_frame(
    out_dir: str, split: str, spec: _Spec, seq: int, frame: int, canvas: _Canvas, image: np.ndarray
) -> tuple[_Files, dict[str, Any]]:
    """One frame's files in the Cityscapes-VPS layout, the image first, and its annotation (an
    ``annotations`` entry of the split's JSON); the encoding is in the module docstring."""
    name = f"{seq:04d}_{5 * (frame + 1):04d}_{_CITY}_{seq:06d}_{5 * frame + 4:06d}"
    labelled = canvas.label != spec.void
    classes = np.where(labelled, canvas.label, 0)
    colors = np.asarray(dvps_metadata(CITYSCAPES_DVPS)["stuff_colors"], np.int64)
    color_ids = colors[:, 0] + 256 * colors[:, 1] + 65536 * colors[:, 2]
    is_thing = np.isin(classes, sorted(spec.things))
    segment = np.where(is_thing, classes * 1000 + canvas.inst, color_ids[classes])
    segment = np.where(labelled, segment, 0).astype(np.int64)
    ids, areas = np.unique(segment[labelled], return_counts=True)
    segments_info = []
    for segment_id, area in zip(ids.tolist(), areas.tolist(), strict=True):
        thing = segment_id < 19000
        category = segment_id // 1000 if thing else int(np.flatnonzero(color_ids == segment_id)[0])
        segments_info.append(
            {
                "id": segment_id,
                "category_id": category,
                "iscrowd": int(thing and segment_id % 1000 == 0),
                "area": area,
            }
        )
    rgb = np.stack([segment % 256, segment // 256 % 256, segment // 65536], -1).astype(np.uint8)
    files: _Files = {
        os.path.join(out_dir, split, "img", name + "_leftImg8bit.png"): image[..., ::-1],
        os.path.join(out_dir, split, "panoptic_video", name + "_gtFine_color.png"): rgb[..., ::-1],
    }
    annotation = {
        "image_id": name,
        "file_name": name + "_gtFine_color.png",
        "segments_info": segments_info,
    }
    return files, annotation


def _write_files(files: _Files) -> None:
    """Write a frame's files in order, whole or not at all (a full disk stops it half way: the
    files already written are removed)."""
    written = []
    try:
        for path, data in files.items():
            if isinstance(data, np.ndarray):
                write_png_atomic(path, data)
            else:
                write_json_atomic(path, data)
            written.append(path)
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                os.remove(path)
        raise


def generate_synthetic_dvps(
    out_dir: str,
    dataset_format: str,
    split: str,
    num_sequences: int,
    num_frames: int,
    height: int,
    width: int,
    seed: int,
    *,
    on_frame_written: Callable[[str], None] | None = None,
) -> list[str]:
    """Write a synthetic split in the official layout of ``dataset_format``.

    Cityscapes-DVPS and SemKITTI-DVPS files go to ``<out_dir>/video_sequence/<split>/`` (created
    if missing); see the module docstring for the scene and datasets/README.md for the layouts.
    Every class of the format is placed in every sequence (and is visible at the default size,
    256 x 512); the Cityscapes-DVPS ego-car hood is void, and its even-numbered sequences hold a
    crowd region (persons with instance 0).

    ``cityscapes`` writes the Cityscapes-DVPS scene (the same images, labels and depths as
    ``cityscapes_dvps`` with equal arguments) as plain Cityscapes under ``<out_dir>``:
    ``leftImg8bit``, ``gtFine`` (train ids, panoptic PNGs and the split's panoptic JSON, with
    Cityscapes label ids as categories), ``disparity`` and ``camera``, one image per frame,
    readable by Detectron2's ``load_cityscapes_panoptic``; the module docstring details the
    files. The JSON, listing this run's frames only, is written after the last frame.

    ``kitti_step`` writes the same scene in DeepLab2's KITTI-STEP layout under ``<out_dir>``:
    ``images/<split>/<seq:04d>/<frame:06d>.png`` and the panoptic maps beside them in
    ``panoptic_maps/``, instances on person and car only, no depth (module docstring).

    ``cityscapes_vps`` writes the same scene in the Cityscapes-VPS layout under ``<out_dir>``:
    ``<split>/img/``, ``<split>/panoptic_video/`` and, after the last frame,
    ``panoptic_gt_<split>_city_vps.json`` (module docstring).

    Args:
        out_dir: dataset root.
        dataset_format: ``cityscapes_dvps``, ``semkitti_dvps``, ``cityscapes``,
            ``kitti_step`` or ``cityscapes_vps``.
        split: ``train`` or ``val`` (also seeds the data).
        num_sequences: sequences, >= 1 (``kitti_step``, ``cityscapes_vps``: at most 10000,
            the latter with at most 1999 frames); sequence ids
            0..num_sequences-1.
        num_frames: frames per sequence, >= 1.
        height, width: image size in pixels, each >= 64.
        seed: >= 0; equal arguments write byte-identical files.
        on_frame_written: called with the image path after each frame's files are written.

    Returns:
        The written image paths, ordered by (sequence, frame).

    Raises:
        ValueError: invalid arguments, before anything is written.
        OutputError: the split folder (``cityscapes``, ``kitti_step``, ``cityscapes_vps``:
            ``out_dir``) cannot be written (checked first), or a write failed (e.g. a full
            disk); the frame being written is removed, earlier frames stay (``cityscapes``,
            ``cityscapes_vps``: without the split's JSON).
    """
    _check_args(dataset_format, split, num_sequences, num_frames, height, width, seed)
    spec = _make_spec(_SCENES[dataset_format], height, width)
    cityscapes = dataset_format == CITYSCAPES
    kitti_step = dataset_format == KITTI_STEP
    vps = dataset_format == CITYSCAPES_VPS
    in_root = cityscapes or kitti_step or vps  # layouts whose split folders lie in several places
    split_dir = out_dir if in_root else os.path.join(out_dir, "video_sequence", split)
    check_writable(split_dir, "dataset folder")
    images, annotations = [], []
    for seq in range(num_sequences):
        rng = np.random.default_rng([seed, _SPLITS.index(split), seq])
        street = _build_street(rng, spec, num_frames)
        crowd = spec.cityscapes and seq % 2 == 0
        sprites = _build_sprites(rng, spec, num_frames, street.ego_speed, crowd)
        for frame in range(num_frames):
            canvas = _render(spec, street, sprites, frame)
            image = _finish_image(canvas, spec, rng)
            if cityscapes:
                files, annotation = _cityscapes_frame(
                    out_dir, split, spec, seq, frame, canvas, image
                )
                annotations.append(annotation)
            elif kitti_step:
                files = _kitti_step_frame(out_dir, split, spec, seq, frame, canvas, image)
            elif vps:
                files, annotation = _cityscapes_vps_frame(
                    out_dir, split, spec, seq, frame, canvas, image
                )
                annotations.append(annotation)
            else:
                files = _dvps_frame(split_dir, spec, seq, frame, canvas, image)
            _write_files(files)
            path = next(iter(files))  # the image
            images.append(path)
            if on_frame_written is not None:
                on_frame_written(path)
    if cityscapes:
        write_json_atomic(
            cityscapes_panoptic_paths(out_dir, split)[2], _panoptic_json(annotations, spec)
        )
    if vps:
        write_json_atomic(
            cityscapes_vps_json_path(out_dir, split), _panoptic_json(annotations, spec, "trainId")
        )
    return images
