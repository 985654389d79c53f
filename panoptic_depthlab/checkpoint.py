"""Checkpoints: atomic saving, safe loading, one-line errors for files that cannot be loaded,
and an honest report of which parts of the model a checkpoint loaded.

Every load failure is a :class:`CheckpointError` (a ``ValueError``): one line naming the file
and the cause (missing, empty, truncated or damaged, not a checkpoint, refused content, wrong
architecture). :func:`check_checkpoint_file` runs the cheap part of those checks (existence,
size, file format) without loading anything, for tools to call before they start workers.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import re
from collections import Counter
from collections.abc import Mapping
from typing import IO, Any
from urllib.parse import urlparse

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from fvcore.common.checkpoint import _IncompatibleKeys
from tabulate import tabulate

from .files import open_atomic, remove_stale_temporaries

__all__ = [
    "CheckpointError",
    "OUTPUTS",
    "PanopticDepthLabCheckpointer",
    "check_checkpoint_file",
    "check_last_checkpoint",
    "load_model",
    "class_name_key",
    "class_order",
    "class_order_options",
    "download_checkpoint",
    "untrained_outputs",
]

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the file and why."""


# ---------------------------------------------------------------------------------------------
# File checks (no unpickling)

_ZIP_START = b"PK\x03\x04"  # torch.save's format: a zip archive
_ZIP_END = b"PK\x05\x06"  # end-of-central-directory record, the last 22 bytes of a zip
# torch.save(..., _use_new_zipfile_serialization=False): a protocol-2 pickle of torch's magic
# number 0x1950a86a20f9469cfc6c comes first
_TORCH_LEGACY_START = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_AGAIN = "copy or download it again, or use another checkpoint"


def download_checkpoint(path: str) -> None:
    """Download a ``MODEL.WEIGHTS`` URL (``detectron2://``, ``https://``) into Detectron2's
    cache, or find it there, so that a machine without the network fails before any work;
    nothing for a local path.

    Raises:
        CheckpointError: the download failed; the message names the URL and the reason.
    """
    if _local_path(path) is not None:
        return
    try:
        PathManager.get_local_path(urlparse(path)._replace(query="").geturl())
    except OSError as e:
        reason = getattr(e, "reason", None) or e.strerror or e
        raise CheckpointError(
            f"MODEL.WEIGHTS {path}: cannot download it ({reason}). Download it where the "
            "network is reachable and pass the local file: MODEL.WEIGHTS path/to/model.pkl."
        ) from e


def _local_path(path: str) -> str | None:
    """``path`` without a Detectron2 query (``?matching_heuristics=True``); None for a URL,
    which can only be checked once Detectron2 has downloaded it."""
    if "://" in path:
        return None
    return urlparse(path)._replace(query="").geturl()


def _looks_like_pickle(head: bytes) -> bool:
    # protocols 2-5 start with the PROTO opcode; protocols 0-1 (Python 2 files) with MARK,
    # EMPTY_DICT or EMPTY_LIST
    if head[:1] == b"\x80":
        return len(head) > 1 and 2 <= head[1] <= 5
    return head[:1] in (b"(", b"}", b"]")


def _describe_start(head: bytes) -> str:
    text = head.lstrip()
    if text[:1] == b"<":
        return "it looks like an HTML page, e.g. an error page saved by a failed download"
    if text.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer, not the file: fetch it with git lfs pull"
    return f"it starts with {head[:8]!r}"


def _file_format(path: str) -> str:
    """``"zip"`` (torch.save), ``"torch_legacy"`` (torch.save of torch < 1.6) or ``"pickle"``
    (Detectron2 model-zoo ``.pkl``), from the first and last bytes of ``path``.

    Raises:
        CheckpointError: missing, a folder, empty, truncated, or none of those formats.
    """
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: checkpoint file not found.")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file.")
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointError(
            f"{path}: the checkpoint file is empty (0 bytes), e.g. left by an interrupted copy "
            f"or download; {_AGAIN}."
        )
    with open(path, "rb") as f:
        head = f.read(16)
        f.seek(max(0, size - 65536 - 22))
        tail = f.read()
    if head.startswith(_ZIP_START):
        if _ZIP_END not in tail[-65536 - 22 :]:
            raise CheckpointError(
                f"{path}: the checkpoint file is truncated ({size} bytes, without the zip "
                f"directory that ends a complete torch.save file); {_AGAIN}."
            )
        return "zip"
    if head.startswith(_TORCH_LEGACY_START):
        return "torch_legacy"
    if _looks_like_pickle(head):
        if not tail.endswith(b"."):
            raise CheckpointError(
                f"{path}: the checkpoint file is truncated ({size} bytes, without the STOP "
                f"byte that ends a complete pickle); {_AGAIN}."
            )
        return "pickle"
    raise CheckpointError(
        f"{path}: not a checkpoint: neither a PyTorch file (torch.save) nor a Detectron2 "
        f"model-zoo pickle ({_describe_start(head)})."
    )


def check_checkpoint_file(path: str) -> None:
    """Cheap checks of a checkpoint before any work: the file exists, is not empty, and looks
    like a torch.save file (zip or legacy) or a pickle, complete at its end. Nothing is read
    beyond its first 16 and last 64 KiB; nothing is unpickled.

    Args:
        path: ``MODEL.WEIGHTS`` or a checkpoint path; ``""`` (no weights) and URLs
            (``detectron2://``, ``https://``, downloaded when loaded) pass unchecked; a
            Detectron2 query (``?matching_heuristics=True``) is ignored.

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    local = _local_path(path) if path else None
    if local:
        _file_format(local)


def check_last_checkpoint(save_dir: str) -> None:
    """The check for ``--resume``: if ``<save_dir>/last_checkpoint`` exists, the checkpoint it
    names must pass :func:`check_checkpoint_file`.

    Raises:
        CheckpointError: the tag names a missing file (both are named), or that file is bad.
    """
    tag = os.path.join(save_dir, "last_checkpoint")
    if not os.path.isfile(tag):
        return
    with open(tag) as f:
        name = f.read().strip()
    path = os.path.join(save_dir, name)
    if not name or not os.path.isfile(path):
        raise CheckpointError(
            f"{tag} names {name!r}, but {path} does not exist (deleted or moved?). Point "
            f"{tag} at an existing checkpoint in {save_dir}, or remove it to start from "
            "MODEL.WEIGHTS."
        )
    check_checkpoint_file(path)


# ---------------------------------------------------------------------------------------------
# Restricted unpickling of model-zoo .pkl files

# Everything a Detectron2 / Detectron / Caffe2 model-zoo pickle needs: numpy arrays (and the
# dtype and scalar objects they are built from, in numpy 1 and numpy 2 module names), bytes as
# protocol 2 writes them (_codecs.encode), and OrderedDict. Dicts, lists, tuples, strings and
# numbers need no global.
_ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays in pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),
    }
)


def _numpy_globals() -> list[Any]:
    """What ``torch.load(weights_only=True)`` needs besides its defaults to read numpy arrays
    and scalars (a ``.pth`` may hold some, e.g. an ``iteration`` as ``np.int64``)."""
    major = int(np.__version__.split(".")[0])
    multiarray = importlib.import_module(
        "numpy._core.multiarray" if major >= 2 else "numpy.core.multiarray"
    )
    dtypes = (np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
              np.uint64, np.float16, np.float32, np.float64)  # fmt: skip
    return [
        multiarray._reconstruct,
        multiarray.scalar,
        np.ndarray,
        np.dtype,
        *(type(np.dtype(t)) for t in dtypes),
    ]


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _ModelZooUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`_ALLOWED_GLOBALS`: a pickle that would call or
    build anything else (``os.system``, ``builtins.eval``, a class) stops at that reference,
    before anything of it runs."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise _RefusedGlobal(f"{module}.{name}")
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedGlobal("a persistent id (external object)")


def _refused(path: str, name: str) -> CheckpointError:
    return CheckpointError(
        f"{path}: refused: the file would call or build {name} when loaded, which a checkpoint "
        "never needs (only tensors, numpy arrays, numbers, strings and containers are read); "
        "it may be hostile. Nothing from it was run. If you trust its source, load it with "
        "torch.load and re-save its tensors with torch.save({'model': state_dict}, path)."
    )


def _damaged(path: str, error: BaseException) -> CheckpointError:
    reason = (str(error).strip().splitlines() or [""])[0] or type(error).__name__
    return CheckpointError(
        f"{path}: the checkpoint file is truncated or damaged ({reason}); {_AGAIN}."
    )


def _read_model_zoo_pickle(path: str) -> Any:
    """Unpickle ``path`` as Detectron2 does (``encoding="latin1"`` for Python 2 files), with
    :class:`_ModelZooUnpickler`."""
    try:
        with open(path, "rb") as f:
            return _ModelZooUnpickler(f, encoding="latin1").load()
    except _RefusedGlobal as e:
        raise _refused(path, e.name) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError) as e:
        raise _damaged(path, e) from e


def _as_detectron2_checkpoint(data: Any, path: str) -> dict[str, Any]:
    """A model-zoo pickle as Detectron2 reads it: a Detectron2 file (``model`` and
    ``__author__``) as it is; a Caffe2 / Detectron file (weights at the top level or under
    ``blobs``, optimizer ``*_momentum`` blobs left out) with name-matching heuristics."""
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint: the pickle holds a {type(data).__name__}, not a dict of "
            "weights."
        )
    if "model" in data and "__author__" in data:
        logger.info(f"Reading a file from '{data['__author__']}'")
        return data
    weights = data.get("blobs", data)
    if not isinstance(weights, dict):
        raise CheckpointError(
            f"{path}: not a checkpoint: its 'blobs' is a {type(weights).__name__}, not a dict of "
            "weights."
        )
    weights = {k: v for k, v in weights.items() if not str(k).endswith("_momentum")}
    return {"model": weights, "__author__": "Caffe2", "matching_heuristics": True}


def _check_weights(checkpoint: Any, path: str) -> None:
    weights = checkpoint.get("model") if isinstance(checkpoint, dict) else None
    if not isinstance(weights, Mapping) or not weights:
        raise CheckpointError(
            f"{path}: not a model checkpoint: it holds no weights (a dict of tensors, under "
            "'model' or at its top level)."
        )
    for key, value in weights.items():
        if not isinstance(key, str) or not isinstance(value, (torch.Tensor, np.ndarray)):
            raise CheckpointError(
                f"{path}: not a model checkpoint: its weight {key!r} is a "
                f"{type(value).__name__}, not a tensor."
            )


# ---------------------------------------------------------------------------------------------
# Class order of the semantic classifier

#: The state-dict entries with one row (dim 0) per semantic class: the semantic predictor of
#: Detectron2's ``PanopticDeepLabSemSegHead`` (a 1x1 convolution). No other tensor of the model
#: depends on the class order.
CLASS_ROW_KEYS = ("sem_seg_head.predictor.weight", "sem_seg_head.predictor.bias")

#: Names of class orders that are not registered dataset names. Detectron2's model-zoo
#: Cityscapes checkpoints use the Cityscapes train ids, the order of Cityscapes-DVPS.
_CLASS_ORDER_ALIASES = {"cityscapes": "cityscapes_dvps"}

_CLASSES_KEY = "MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES"


def class_name_key(name: str) -> str:
    """The form in which class names are compared: lower case, with hyphens, underscores and
    runs of spaces alike, so that SemanticKITTI's ``"traffic-sign"`` is Cityscapes' ``"traffic
    sign"``. Names that differ otherwise are different classes (SemanticKITTI's
    ``"bicyclist"`` is not mapped to Cityscapes' ``"rider"``: the official sources do not
    relate them)."""
    return re.sub(r"[\s_-]+", " ", name.strip().lower())


def class_order(name: str) -> list[str]:
    """The class names (in row order) of a class order named as in
    ``MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES``: ``"cityscapes"``, a DVPS format
    (``"cityscapes_dvps"``, ``"semkitti_dvps"``) or a dataset registered in Detectron2's
    ``MetadataCatalog`` with ``stuff_classes``.

    Raises:
        CheckpointError: an unknown name (one line, naming the key and what is expected).
    """
    from detectron2.data import MetadataCatalog

    from .data.datasets.metadata import DVPS_FORMATS, dvps_metadata

    name = _CLASS_ORDER_ALIASES.get(name, name)
    if name in DVPS_FORMATS:
        return list(dvps_metadata(name)["stuff_classes"])
    if name in MetadataCatalog.list():
        names = MetadataCatalog.get(name).get("stuff_classes")
        if names:
            return list(names)
    raise CheckpointError(
        f"{_CLASSES_KEY} {name!r} is not a known class order; expected '' (the checkpoint's own "
        f"class names, else its rows as they are), 'cityscapes', "
        f"{', '.join(repr(f) for f in DVPS_FORMATS)}, or a registered dataset with "
        "stuff_classes."
    )


def class_order_options(cfg: Any) -> dict[str, Any]:
    """The keyword arguments of :class:`PanopticDepthLabCheckpointer` that say in which order
    the model and its checkpoints hold their classes, from a config:

    * ``class_names``: the ``stuff_classes`` of ``DATASETS.TRAIN[0]`` (else ``TEST[0]``), the
      model's classes in row order; ``None`` when that dataset is not registered or does not
      list its ``num_classes`` (else ``MODEL.SEM_SEG_HEAD.NUM_CLASSES``) classes (then nothing
      is moved).
    * ``checkpoint_classes``: ``MODEL.PANOPTIC_DEPTHLAB.CHECKPOINT_CLASSES`` (checked when a
      checkpoint is loaded).

    Use: ``PanopticDepthLabCheckpointer(model, save_dir, **class_order_options(cfg))``.
    """
    from detectron2.data import MetadataCatalog

    names, num_classes = None, cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    datasets = list(cfg.DATASETS.TRAIN) or list(cfg.DATASETS.TEST)
    if datasets and datasets[0] in MetadataCatalog.list():
        meta = MetadataCatalog.get(datasets[0])
        names = meta.get("stuff_classes")
        num_classes = meta.get("num_classes", num_classes)  # the model follows the dataset
    if names is not None and len(names) != num_classes:
        names = None
    return {
        "class_names": list(names) if names else None,
        "checkpoint_classes": cfg.MODEL.PANOPTIC_DEPTHLAB.get("CHECKPOINT_CLASSES", ""),
    }


# ---------------------------------------------------------------------------------------------
# Parts of the model and the outputs they make

#: The outputs a user sees, in this order: "panoptic" (classes and instances), "depth" (depth
#: map and segment distances), "tracking" (instance ids across frames).
OUTPUTS = ("panoptic", "depth", "tracking")
_OUTPUTS_OF_PART = {
    "backbone": OUTPUTS,
    "sem_seg_head": ("panoptic",),
    "ins_embed_head": ("panoptic",),
    "depth_head": ("depth",),
    "next_frame_head": ("tracking",),
    "uncertainty": (),  # loss weights, used in training only
}
_OUTPUT_WORDS = {
    "panoptic": "panoptic segmentation",
    "depth": "depth and segment distances",
    "tracking": "track ids across frames",
}


def untrained_outputs(part_states: Mapping[str, str]) -> list[str]:
    """The outputs (names from :data:`OUTPUTS`) made by a part that was not fully loaded.

    Args:
        part_states: ``{part: "loaded" | "partly loaded" | "initialized"}``, as
            :attr:`PanopticDepthLabCheckpointer.part_states`. A part this function does not
            know is taken to affect every output.
    """
    affected = set()
    for part, state in part_states.items():
        if state != "loaded":
            affected.update(_OUTPUTS_OF_PART.get(part, OUTPUTS))
    return [name for name in OUTPUTS if name in affected]


def _part(key: str) -> str:
    return key.removeprefix("module.").split(".", 1)[0]


def _counted(key: str) -> bool:
    # BatchNorm's step counters are not weights (Detectron2 does not report them missing)
    return not key.endswith("num_batches_tracked")


_RESNET_DEPTHS = {
    (False, (2, 2, 2)): 18,
    (False, (3, 4, 6)): 34,
    (True, (3, 4, 6)): 50,
    (True, (3, 4, 23)): 101,
    (True, (3, 8, 36)): 152,
}
_BLOCK = re.compile(r"(?:^|[._])res([2-5])[._](\d+)[._]")


def _describe_resnet(keys: list[str]) -> str | None:
    """ "ResNet-50 with the DeepLab stem (R-52)" or "ResNet-18" (MODEL.RESNETS.DEPTH) from
    the names of a ResNet's weights (Detectron2 or Caffe2 names); None if not a ResNet."""
    blocks: dict[int, set[int]] = {2: set(), 3: set(), 4: set()}
    for key in keys:
        match = _BLOCK.search(key)
        if match and int(match[1]) in blocks:
            blocks[int(match[1])].add(int(match[2]))
    counts = tuple(len(blocks[stage]) for stage in (2, 3, 4))
    if not all(counts):
        return None
    bottleneck = any(".conv3." in k or "branch2c" in k for k in keys)
    depth = _RESNET_DEPTHS.get((bottleneck, counts))
    if depth is None:
        kind = "bottleneck" if bottleneck else "basic"
        return f"ResNet with {counts[0]}, {counts[1]}, {counts[2]} {kind} blocks in res2-res4"
    if any("stem.conv2." in k for k in keys):
        r52 = ", i.e. R-52" if depth == 50 else ""
        return (
            f"ResNet-{depth} with the DeepLab stem (MODEL.RESNETS.DEPTH {depth}, "
            f'STEM_TYPE "deeplab"{r52})'
        )
    return f"ResNet-{depth} (MODEL.RESNETS.DEPTH {depth})"


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


class PanopticDepthLabCheckpointer(DetectionCheckpointer):
    """Detectron2's checkpointer (model-zoo ``.pkl`` and ``.pth`` files), made crash-safe and
    safe to load, with one-line errors and an honest report of what was loaded.

    * Saving: a checkpoint and the ``last_checkpoint`` tag are each written to a temporary file,
      flushed to disk and renamed, so a process killed during a save leaves the previous
      checkpoint and tag intact. A failed write (full disk) raises
      :class:`~panoptic_depthlab.files.OutputError` naming the file and the system's reason, and
      leaves nothing behind. The temporary files of killed runs in ``save_dir`` are removed
      (:meth:`remove_stale_temporaries`) before the first save.
    * Loading: torch.save files are read with ``torch.load(weights_only=True)`` (tensors,
      numbers, strings and containers only); pickles (model-zoo ``.pkl``) with an unpickler
      that builds nothing but dicts, lists, tuples, strings, numbers, numpy arrays and
      OrderedDicts, refusing anything else before it runs. Every failure is a
      :class:`CheckpointError`.
    * Architecture: a checkpoint whose backbone does not fit the model's (other shapes, missing
      or extra blocks), or of which nothing fits, is refused with the first mismatching names
      and, for ResNets, the depth each side has. Heads may differ (fine-tuning from a model-zoo
      Panoptic-DeepLab: no depth / next-frame head, another number of classes): they keep their
      initialization, with a warning. The model may already hold part of the checkpoint when
      the error is raised; do not use it afterwards.
    * Report: after loading, one table (through the ``panoptic_depthlab.checkpoint`` logger,
      which the tools set up) lists every top-level part of the model with how many of its
      tensors came from the checkpoint, how many kept their initialization, and how many were
      skipped because their shapes differ. :attr:`part_states` holds each part's state and
      :attr:`untrained_outputs` the outputs made by a part not fully loaded; a WARNING names
      those parts and outputs.
    * Class order: given the model's class names (``class_names``, in row order), a checkpoint
      saved here stores them (``"class_names"``), and loading moves the rows of the semantic
      classifier (:data:`CLASS_ROW_KEYS`) from the checkpoint's class order to the model's by
      class name (compared by :func:`class_name_key`). The checkpoint's order is its own
      ``"class_names"``, else ``checkpoint_classes`` (a name for :func:`class_order`, e.g.
      ``"cityscapes"`` for a model-zoo Cityscapes checkpoint), else the model's (rows taken as
      they are). A class without a counterpart keeps the model's initialized row: the head is
      then "partly loaded", and a table (INFO) and a WARNING name the classes.
      :attr:`class_mapping` holds what the last load did. Build both arguments from a config
      with :func:`class_order_options`.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        save_dir: str = "",
        *,
        class_names: list[str] | None = None,
        checkpoint_classes: str = "",
        **kwargs: Any,
    ):
        super().__init__(model, save_dir, **kwargs)
        self.logger = logger
        #: The model's semantic classes in row order (None: unknown, rows never moved).
        self.class_names = list(class_names) if class_names else None
        #: The class order of checkpoints that do not name their classes ("" = the model's).
        self.checkpoint_classes = checkpoint_classes
        #: What the last :meth:`load` did to the classifier rows: None when they were taken as
        #: they are, else ``{"source": <where the checkpoint's order came from>, "mapped":
        #: {model class: checkpoint class}, "rows": {model class: checkpoint row}, "fresh":
        #: [model classes left initialized]}``.
        self.class_mapping: dict[str, Any] | None = None
        #: ``{part: "loaded" | "partly loaded" | "initialized"}`` for each top-level part of the
        #: model (``backbone``, ``sem_seg_head``, ``ins_embed_head``, ``depth_head``,
        #: ``next_frame_head``, ...), as the last :meth:`load` left it; all "initialized" before.
        self.part_states: dict[str, str] = self._initial_states()
        self._loading_path = ""
        self._checkpoint_keys: list[str] = []
        self._stale_checked = False

    @property
    def untrained_outputs(self) -> list[str]:
        """Outputs (of ``"panoptic"``, ``"depth"``, ``"tracking"``) made by a part that the
        last load did not fully load: :func:`untrained_outputs` of :attr:`part_states`."""
        return untrained_outputs(self.part_states)

    def _initial_states(self) -> dict[str, str]:
        parts = dict.fromkeys(_part(k) for k in self.model.state_dict() if _counted(k))
        return {part: "initialized" for part in parts}

    # ---- saving -----------------------------------------------------------------------------

    def remove_stale_temporaries(self) -> list[str]:
        """Remove the temporary checkpoint files that killed runs left in ``save_dir`` (one
        log line each); only the process that saves does. Returns the removed paths."""
        self._stale_checked = True
        if not self.save_dir or not self.save_to_disk:
            return []
        removed = remove_stale_temporaries(self.save_dir)
        for path in removed:
            self.logger.info(f"Removed {path}, a temporary file left by a run killed while saving.")
        return removed

    def save(self, name: str, **kwargs: Any) -> None:
        """Write ``<save_dir>/<name>.pth`` (model, checkpointables, ``kwargs``) atomically and
        tag it as the last checkpoint. Only the process with ``save_to_disk`` writes.

        Raises:
            OutputError: the file cannot be written ("No space left on device", ...); neither
                it nor a temporary file is left, and the previous tag stays.
        """
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._stale_checked:
            self.remove_stale_temporaries()
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        if self.class_names:
            data["class_names"] = list(self.class_names)
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {path}")
        with open_atomic(path) as f:
            writer = _WriteErrorKeeper(f)
            try:
                torch.save(data, writer)
            except Exception as e:
                # torch's zip writer reports a failed write as "unexpected pos ..." and hides
                # the operating system's reason; raise that (open_atomic reports it)
                if writer.error is not None:
                    raise writer.error from e
                raise
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        """Point ``<save_dir>/last_checkpoint`` at ``last_filename_basename``, atomically."""
        with open_atomic(os.path.join(self.save_dir, "last_checkpoint"), "w") as f:
            f.write(last_filename_basename)

    # ---- loading ----------------------------------------------------------------------------

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """Detectron2's: with ``resume``, the checkpoint ``last_checkpoint`` names (a missing one
        is a :class:`CheckpointError` naming both), otherwise ``path``."""
        if resume and self.has_checkpoint():
            check_last_checkpoint(self.save_dir)
        return super().resume_or_load(path, resume=resume)

    def load(self, path: str, checkpointables: list[str] | None = None) -> dict[str, Any]:
        """Detectron2's :meth:`load` with the checks above; ``""`` loads nothing (every part
        "initialized").

        Raises:
            CheckpointError: the file is missing, empty, truncated or damaged, not a checkpoint,
                refused, or of another architecture.
        """
        self.part_states = self._initial_states()
        self._loading_path = path
        if path:
            check_checkpoint_file(path)
        try:
            return super().load(path, checkpointables)
        finally:
            # Detectron2 leaves it set when loading fails, and then refuses every later load
            self._parsed_url_during_load = None

    def _load_file(self, filename: str) -> dict[str, Any]:
        kind = _file_format(filename)
        if kind == "pickle":
            checkpoint = _as_detectron2_checkpoint(_read_model_zoo_pickle(filename), filename)
        elif filename.endswith(".pkl"):  # a torch.save file named .pkl: not a pickle to read
            checkpoint = self._torch_load(filename)
            checkpoint = checkpoint if "model" in checkpoint else {"model": checkpoint}
        else:
            checkpoint = super()._load_file(filename)
        _check_weights(checkpoint, filename)
        return checkpoint

    def _torch_load(self, f: str) -> dict[str, Any]:
        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                data = torch.load(f, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
            if match:
                raise _refused(f, match[1]) from None
            detail = re.search(r"WeightsUnpickler error: ([^\n]*)", str(e))
            raise _damaged(f, ValueError(detail[1] if detail else str(e))) from e
        except (RuntimeError, OSError, EOFError, ValueError) as e:
            raise _damaged(f, e) from e
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{f}: not a model checkpoint: it holds a {type(data).__name__}, not a dict of "
                "weights."
            )
        return data

    def _load_model(self, checkpoint: Any) -> _IncompatibleKeys:
        self._checkpoint_keys = [k.removeprefix("module.") for k in checkpoint["model"]]
        self.class_mapping = None
        self._map_class_rows(checkpoint)
        return super()._load_model(checkpoint)

    def _checkpoint_class_order(self, checkpoint: dict[str, Any]) -> tuple[list[str], str] | None:
        """(the checkpoint's class names in row order, where they come from), or None."""
        names = checkpoint.get("class_names")
        if names is not None:
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise CheckpointError(
                    f"{self._loading_path}: its 'class_names' entry is a "
                    f"{type(names).__name__}, not a list of class names."
                )
            return list(names), "the checkpoint's class_names"
        if self.checkpoint_classes:
            return class_order(self.checkpoint_classes), (
                f"{_CLASSES_KEY} {self.checkpoint_classes!r}"
            )
        return None

    def _map_class_rows(self, checkpoint: dict[str, Any]) -> None:
        """Move the classifier rows of ``checkpoint["model"]`` (in place) from the checkpoint's
        class order to the model's, by class name; rows of classes the checkpoint lacks are the
        model's current (initialized) rows. Sets :attr:`class_mapping`."""
        if not self.class_names:
            return
        order = self._checkpoint_class_order(checkpoint)
        if order is None:
            return
        source, origin = order
        if source == self.class_names:
            return
        weights = checkpoint["model"]
        model_state = self.model.state_dict()
        row_of: dict[str, int] = {}
        for row, name in enumerate(source):
            row_of.setdefault(class_name_key(name), row)
        rows = [row_of.get(class_name_key(name)) for name in self.class_names]
        moved = False
        for key in list(weights):
            bare = key.removeprefix("module.")
            if bare not in CLASS_ROW_KEYS or bare not in model_state:
                continue
            value = torch.as_tensor(weights[key])
            if value.shape[0] != len(source):
                raise CheckpointError(
                    f"{self._loading_path}: {bare} has {value.shape[0]} class rows, but "
                    f"{origin} names {len(source)} classes; set {_CLASSES_KEY} to the class "
                    "order the checkpoint was trained with."
                )
            target = model_state[bare]
            if value.shape[1:] != target.shape[1:]:
                continue  # another head width: reported as a shape mismatch
            mapped = target.detach().to("cpu", value.dtype, copy=True)
            for row, found in enumerate(rows):
                if found is not None:
                    mapped[row] = value[found]
            weights[key] = mapped
            moved = True
        if moved:
            self.class_mapping = {
                "source": origin,
                "mapped": {
                    name: source[row]
                    for name, row in zip(self.class_names, rows, strict=True)
                    if row is not None
                },
                "rows": {
                    name: row
                    for name, row in zip(self.class_names, rows, strict=True)
                    if row is not None
                },
                "fresh": [
                    name for name, row in zip(self.class_names, rows, strict=True) if row is None
                ],
            }

    def _log_class_mapping(self) -> None:
        """The class mapping table (INFO) and, for classes left initialized, a WARNING."""
        mapping = self.class_mapping
        if mapping is None:
            return
        source = mapping["source"]
        rows = []
        for row, name in enumerate(self.class_names or []):
            found = mapping["mapped"].get(name)
            text = f"{found} (row {mapping['rows'][name]})" if found is not None else None
            rows.append((row, name, text or "(initialized)"))
        table = tabulate(
            rows, headers=["row", "class", f"from checkpoint class ({source})"], tablefmt="pipe"
        )
        self.logger.info(f"Semantic classifier rows moved by class name:\n{table}")
        fresh = mapping["fresh"]
        if fresh:
            self.logger.warning(
                f"{self._loading_path}: {len(fresh)} of {len(self.class_names or [])} classes "
                f"have no counterpart among the checkpoint's classes ({source}) and start from "
                f"initialization: {', '.join(fresh)}. Fine-tune them."
            )

    def _log_incompatible_keys(self, incompatible: _IncompatibleKeys) -> None:
        mismatched_keys = {k for k, *_ in incompatible.incorrect_shapes}
        # load_state_dict also lists the skipped (mismatched) tensors as missing
        missing_keys = set(incompatible.missing_keys) - mismatched_keys
        model_keys = [k for k in self.model.state_dict() if _counted(k)]
        total = Counter(_part(k) for k in model_keys)
        mismatched = Counter(_part(k) for k in mismatched_keys)
        missing = Counter(_part(k) for k in missing_keys if _counted(k))
        rows = []
        for name, count in total.items():
            fresh = missing[name] + mismatched[name]
            loaded = count - fresh
            state = "loaded" if fresh == 0 else "initialized" if loaded == 0 else "partly loaded"
            self.part_states[name] = state
            rows.append((name, state, loaded, missing[name], mismatched[name]))
        if self.class_mapping and self.class_mapping["fresh"]:
            # classifier rows of classes the checkpoint lacks kept their initialization
            for i, row in enumerate(rows):
                if row[0] == "sem_seg_head" and row[1] == "loaded":
                    self.part_states["sem_seg_head"] = "partly loaded"
                    rows[i] = (row[0], "partly loaded", *row[2:])
        table = tabulate(
            rows,
            headers=["part", "state", "tensors loaded", "not in checkpoint", "shape mismatch"],
            tablefmt="pipe",
        )
        problem = self._architecture_problem(incompatible, model_keys, missing_keys)
        if problem is None:
            super()._log_incompatible_keys(incompatible)
        self.logger.info(f"Checkpoint loaded into the model, per part:\n{table}")
        if problem is not None:
            raise CheckpointError(f"{self._loading_path}: wrong architecture: {problem}")
        self._log_class_mapping()
        not_loaded = [(p, s) for p, s in self.part_states.items() if s != "loaded"]
        if not_loaded:
            parts = ", ".join(f"{p} ({s})" for p, s in not_loaded)
            outputs = [_OUTPUT_WORDS[o] for o in self.untrained_outputs]
            effect = f"untrained outputs: {', '.join(outputs)}" if outputs else "no output affected"
            self.logger.warning(
                f"Not loaded from {self._loading_path}: {parts}; {effect}. Fine-tune them, or "
                "load a checkpoint trained with this config."
            )

    def _architecture_problem(
        self, incompatible: _IncompatibleKeys, model_keys: list[str], missing_keys: set[str]
    ) -> str | None:
        """Why the checkpoint does not fit the model, or None: nothing of it fits, or the
        backbone has other shapes, misses blocks or has blocks the model's stages lack."""
        mismatched_keys = {k for k, *_ in incompatible.incorrect_shapes}
        if all(k in missing_keys or k in mismatched_keys for k in model_keys):
            names = self._checkpoint_keys
            return (
                f"none of the {len(names)} tensors in the file fits the model (their names: "
                f"{', '.join(names[:3])}, ...; the model's: {', '.join(model_keys[:3])}, ...)."
            )
        backbone = [k for k in model_keys if _part(k) == "backbone"]
        if not backbone:
            return None
        stages = {k.split(".")[1] for k in backbone if k.count(".") > 1}
        differences = [
            (k, f"{k} {_shape(c)} in the file, {_shape(m)} in the model")
            for k, c, m in incompatible.incorrect_shapes
            if _part(k) == "backbone"
        ]
        absent = [(k, f"{k} not in the file") for k in backbone if k in missing_keys]
        extra = [
            (k, f"{k} not in the model")
            for k in incompatible.unexpected_keys
            if _part(k) == "backbone"
            and _counted(k)
            and k.count(".") > 1
            and k.split(".")[1] in stages
        ]
        if not (differences or absent or extra):
            return None
        counts = ", ".join(
            f"{len(found)} {what}"
            for found, what in (
                (differences, "with other shapes"),
                (absent, "missing from the file"),
                (extra, "in the file but not in the model"),
            )
            if found
        )
        # the first few, convolutions before their norms
        examples = sorted(differences + absent + extra, key=lambda item: ".norm." in item[0])
        message = (
            f"its backbone does not fit the model's ({len(backbone)} tensors; {counts}): "
            f"{'; '.join(text for _, text in examples[:3])}"
        )
        in_file = _describe_resnet(self._checkpoint_keys)
        in_model = _describe_resnet(backbone)
        if in_file and in_model and in_file != in_model:
            message += f". The file holds a {in_file}, the config builds a {in_model}"
        return message + ". Use weights made for this config, or the config they were made with."


def load_model(cfg: Any) -> tuple[torch.nn.Module, list[str]]:
    """The config's model in eval mode with ``MODEL.WEIGHTS`` loaded, and its untrained outputs.

    The checkpointer logs its per-part table and a warning naming each part not (fully)
    loaded and the outputs it leaves untrained.

    Returns:
        ``(model, untrained)``: ``untrained`` lists the outputs (of :data:`OUTPUTS`:
        ``"panoptic"``, ``"depth"``, ``"tracking"``) of parts not loaded, or partly loaded, from
        the checkpoint; all of them with ``MODEL.WEIGHTS`` empty.

    Raises:
        CheckpointError: a checkpoint that cannot be loaded (the message names it and why).
    """
    from detectron2.modeling import build_model

    model = build_model(cfg).eval()
    if not cfg.MODEL.WEIGHTS:
        logger.warning(
            "MODEL.WEIGHTS is empty: the model is randomly initialized, so every output "
            f"({', '.join(OUTPUTS)}) is untrained (tools/demo.py marks them UNTRAINED in its "
            "pictures and JSON). Pass trained weights: MODEL.WEIGHTS path/to/model_final.pth."
        )
        return model, list(OUTPUTS)
    checkpointer = PanopticDepthLabCheckpointer(model, **class_order_options(cfg))
    checkpointer.load(cfg.MODEL.WEIGHTS)
    return model, untrained_outputs(checkpointer.part_states)


class _WriteErrorKeeper:
    """A write-only file for ``torch.save`` that keeps the ``OSError`` of a failed write (torch
    replaces it by an "unexpected pos" error)."""

    def __init__(self, f: IO[bytes]):
        self._file = f
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self._file.flush()
