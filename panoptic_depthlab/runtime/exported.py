"""Run an exported model folder (``tools/export_model.py``) with PyTorch or onnxruntime.

An exported folder holds the network as two graphs, with dynamic height and width:

=====================  ========================================================================
``manifest.json``      what the runtime needs: graph files, feature and output names,
                       normalization, size divisibility, the post-processing and tracker
                       settings, the dataset metadata, the config as run, and the export's
                       own check
``backbone.<ext>``     normalized padded image (1, 3, H, W) -> backbone features
``heads.<ext>``        features of frame t (and of frame t-1 with a next-frame branch) -> head
                       maps at (H, W): ``sem_seg``, ``center``, ``offset``, ``depth``
                       (and ``next_offset``); ASPP image pooling over the whole map
``heads_window.<ext>`` the same where the ASPP pools over a training-crop window
                       (``MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING: crop``); chosen by frame size
=====================  ========================================================================

``<ext>`` is ``pt2`` (``torch.export``, loaded with ``torch.export.load``) or ``onnx`` (run by
onnxruntime). :class:`ExportedNetwork` normalizes and pads a frame as the eager model does and
runs the graphs; post-processing and tracking stay in PyTorch
(:class:`~panoptic_depthlab.runtime.sequence.SequenceInference`). Nothing here imports
Detectron2.
"""

from __future__ import annotations

import json
import math
import os
import types
from typing import Any

import torch
from torch.nn import functional as F

from .aspp_window import pools_in_windows
from .outputs import PanopticSettings
from .track_memory import TrackerSettings

__all__ = [
    "GRAPH_FORMATS",
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "ExportedMetadata",
    "ExportedModelError",
    "ExportedNetwork",
    "read_manifest",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 2
"""Version of the folder layout and manifest keys; a runtime reads only its own version."""
GRAPH_FORMATS = ("pt2", "onnx")
_REQUIRED_KEYS = (
    "version",
    "graph_format",
    "graphs",
    "feature_names",
    "map_names",
    "next_frame",
    "input_format",
    "pixel_mean",
    "pixel_std",
    "size_divisibility",
    "min_padded_size",
    "aspp_window",
    "panoptic_settings",
    "tracker_settings",
    "appearance_feature",
    "metadata",
    "untrained",
)


class ExportedModelError(ValueError):
    """An exported folder that cannot be run: missing or foreign files, another version, a bad
    frame. The message names the file or value and what was expected."""


class ExportedMetadata(types.SimpleNamespace):
    """The dataset metadata stored in a manifest, read like Detectron2's ``Metadata``
    (attributes, ``get``, ``as_dict``) without Detectron2."""

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def _int_keys(value: Any) -> Any:
    """JSON object keys that were ints (the ``*_id_to_contiguous_id`` tables) back to ints."""
    if isinstance(value, dict):
        return {
            (int(k) if isinstance(k, str) and k.lstrip("-").isdigit() else k): _int_keys(v)
            for k, v in value.items()
        }
    return value


def read_manifest(folder: str) -> dict[str, Any]:
    """The manifest of an exported folder, checked: this version, every key, every graph file.

    Raises:
        ExportedModelError: naming the folder or file and what is wrong.
    """
    path = os.path.join(folder, MANIFEST_NAME)
    if not os.path.isdir(folder):
        raise ExportedModelError(f"{folder}: no such folder (expected an exported model folder).")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise ExportedModelError(
            f"{path}: missing; {folder} is not a folder written by tools/export_model.py."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ExportedModelError(f"{path}: not a readable manifest ({error}).") from None
    if not isinstance(manifest, dict):
        raise ExportedModelError(f"{path}: expected a JSON object, got {type(manifest).__name__}.")
    if manifest.get("version") != MANIFEST_VERSION:
        raise ExportedModelError(
            f"{path}: manifest version {manifest.get('version')!r} (written by "
            f"panoptic_depthlab {manifest.get('panoptic_depthlab_version', '?')}); this runtime "
            f"reads version {MANIFEST_VERSION}. Export the model again with this version's "
            "tools/export_model.py."
        )
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ExportedModelError(f"{path}: keys {missing} missing; export the model again.")
    if manifest["graph_format"] not in GRAPH_FORMATS:
        raise ExportedModelError(
            f"{path}: graph_format {manifest['graph_format']!r}: expected one of "
            f"{list(GRAPH_FORMATS)}."
        )
    for name, file in manifest["graphs"].items():
        if not os.path.isfile(os.path.join(folder, file)):
            raise ExportedModelError(
                f"{os.path.join(folder, file)}: missing ({name} graph listed in {path}); the "
                "folder is incomplete: copy it whole or export the model again."
            )
    manifest["metadata"] = _int_keys(manifest["metadata"])
    return manifest


class _Pt2Graph:
    """A ``.pt2`` graph: tensors in, tensors out."""

    def __init__(self, path: str, device: torch.device):
        from torch.export.passes import move_to_device_pass

        # constants and device arguments in the graph move too, not only the weights
        self.module = move_to_device_pass(torch.export.load(path), device).module()

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        return list(self.module(*inputs))


class _OnnxGraph:
    """An ONNX graph run by onnxruntime on ``device`` (CPU, or CUDA where onnxruntime has it)."""

    def __init__(self, path: str, device: torch.device):
        import onnxruntime

        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise ExportedModelError(
                    f"{path}: device {device} asked for, but this onnxruntime has no CUDA "
                    "provider (install onnxruntime-gpu, or use the .pt2 format)."
                )
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only
        self.session = onnxruntime.InferenceSession(path, options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.device = device

    def __call__(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        feeds = {
            name: x.detach().cpu().numpy() for name, x in zip(self.input_names, inputs, strict=True)
        }
        return [torch.from_numpy(y).to(self.device) for y in self.session.run(None, feeds)]


class ExportedNetwork:
    """The graphs of an exported folder, as a *frame maps* function
    (:data:`~panoptic_depthlab.runtime.sequence.FrameMaps`).

    Args:
        folder: written by ``tools/export_model.py``.
        device: where to run (``"cpu"``, ``"cuda"``, ``"cuda:1"``); ONNX graphs on CUDA need
            onnxruntime's CUDA provider.

    Attributes:
        manifest: the checked manifest (:func:`read_manifest`).
        settings: the post-processing settings.
        metadata: the dataset metadata (:class:`ExportedMetadata`).

    Raises:
        ExportedModelError: a folder that cannot be run (see :func:`read_manifest`) or a graph
            file that does not load (another PyTorch / onnxruntime, a damaged file).
    """

    def __init__(self, folder: str, device: str | torch.device = "cpu"):
        self.manifest = manifest = read_manifest(folder)
        self.device = torch.device(device)
        graph_class = _Pt2Graph if manifest["graph_format"] == "pt2" else _OnnxGraph
        self.graphs = {}
        for name, file in manifest["graphs"].items():
            path = os.path.join(folder, file)
            try:
                self.graphs[name] = graph_class(path, self.device)
            except ExportedModelError:
                raise
            except Exception as error:  # each loader has its own exception types
                raise ExportedModelError(
                    f"{path}: cannot be loaded as a {manifest['graph_format']} graph "
                    f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
                    "; export the model again with this version."
                ) from None
        self.settings = PanopticSettings(
            **{
                **manifest["panoptic_settings"],
                "thing_ids": tuple(manifest["panoptic_settings"]["thing_ids"]),
            }
        )
        self.tracker_settings = TrackerSettings(**manifest["tracker_settings"])
        self._appearance_index = manifest["feature_names"].index(manifest["appearance_feature"])
        self.metadata = ExportedMetadata(**manifest["metadata"])
        self.size_divisibility = int(manifest["size_divisibility"])
        self.min_padded_size = int(manifest["min_padded_size"])
        self.window = tuple(manifest["aspp_window"]) if manifest["aspp_window"] else None
        self.mean = torch.tensor(manifest["pixel_mean"], device=self.device).view(-1, 1, 1)
        self.std = torch.tensor(manifest["pixel_std"], device=self.device).view(-1, 1, 1)

    def appearance(self, features: list[torch.Tensor]) -> torch.Tensor:
        """(C, h, w) backbone features of a frame (:meth:`frame_maps`) that the tracker's
        appearance term pools (:data:`~panoptic_depthlab.runtime.sequence.Appearance`)."""
        return features[self._appearance_index][0]

    def _padded_input(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) frame -> (1, 3, Hp, Wp) normalized, zero-padded to the size divisibility
        (the eager model's ``ImageList.from_tensors``), and to at least ``min_padded_size`` (the
        graphs' smallest size: frames smaller than it are padded more than the eager model
        pads them)."""
        if image.ndim != 3 or image.shape[0] != self.mean.shape[0]:
            raise ExportedModelError(
                f"image: expected a ({self.mean.shape[0]}, H, W) tensor, got shape "
                f"{tuple(image.shape)}."
            )
        if image.dtype not in (torch.uint8, torch.float32):
            raise ExportedModelError(f"image: expected uint8 or float32, got {image.dtype}.")
        x = (image.to(self.device, torch.float32) - self.mean) / self.std
        d, least = self.size_divisibility, self.min_padded_size
        pad_h = max(math.ceil(x.shape[1] / d) * d, least) - x.shape[1]
        pad_w = max(math.ceil(x.shape[2] / d) * d, least) - x.shape[2]
        return F.pad(x, (0, pad_w, 0, pad_h))[None]

    def frame_maps(
        self, inputs: dict[str, Any], previous: list[torch.Tensor] | None
    ) -> tuple[tuple[int, int], dict[str, torch.Tensor], list[torch.Tensor]]:
        """One frame's head maps (:data:`~panoptic_depthlab.runtime.sequence.FrameMaps`):
        ``inputs["image"]`` (3, H, W) in the model's input format; ``previous`` the features
        returned for the previous frame."""
        image = inputs["image"]
        x = self._padded_input(image)
        features = self.graphs["backbone"](x)
        heads = "heads"
        if self.window is not None and pools_in_windows(tuple(x.shape[-2:]), self.window):
            heads = "heads_window"
        names = self.manifest["map_names"]
        if self.manifest["next_frame"]:
            maps = self.graphs[heads](*features, *(previous if previous is not None else features))
        else:
            maps = self.graphs[heads](*features)
        output = {name: m[0] for name, m in zip(names, maps, strict=True)}
        if previous is None:
            output.pop("next_offset", None)
        return (int(image.shape[-2]), int(image.shape[-1])), output, features
