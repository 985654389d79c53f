"""Export a PanopticDepthLab model to ``torch.export`` (``.pt2``) or ONNX graphs, checked against
eager PyTorch: the library behind ``tools/export_model.py``.

The network is split into a backbone graph (one pass per frame) and a heads graph that reads
the features of frames t and t-1, so that video inference keeps one backbone pass per frame (the
folder layout is described in :mod:`panoptic_depthlab.runtime.exported`). Height and width are
dynamic: any frame runs, padded to the size divisibility as the eager model pads it. Where the
config pools its ASPPs over a training-crop window (``MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING:
crop``), that choice depends on the frame size, so a second heads graph (``heads_window``) holds
the window pooling and the runtime picks the graph by the rule of
:class:`~panoptic_depthlab.modeling.aspp_pooling.CropWindowPool2d`.

ONNX graphs come from ``torch.onnx.export(..., dynamo=True)`` (the TorchScript-based exporter is
deprecated in this PyTorch and differed by centimeters in depth). Post-processing and tracking
are data-dependent: they stay in PyTorch, the same code for both paths.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import warnings
from typing import Any

import torch
import torch.fx.experimental._config
from detectron2.config import CfgNode
from tabulate import tabulate
from torch import nn

from . import __version__
from .checkpoint import load_model
from .config import ConfigValueError
from .files import OutputError, check_writable, output_errors, write_json_atomic
from .modeling.aspp_pooling import CropWindowPool2d
from .runtime.exported import (
    GRAPH_FORMATS,
    MANIFEST_NAME,
    MANIFEST_VERSION,
    ExportedNetwork,
)

__all__ = ["DEFAULT_TOLERANCE", "ExportError", "export_model"]

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCE = 1e-3
"""Largest accepted difference between an exported output and eager PyTorch, relative to the
output's largest magnitude (at least 1): 1e-3 of 88 m is 8.8 cm of depth at most; the graphs
differ far less (see README, "Deploy")."""
MAP_NAMES = ("sem_seg", "center", "offset", "depth", "next_offset")


class ExportError(ValueError):
    """An export that cannot be made or that does not match eager PyTorch; nothing is written."""


class _BackboneGraph(nn.Module):
    """Normalized padded image (1, 3, H, W) -> the backbone's features, in ``names`` order."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.backbone = model.backbone
        self.names = names

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(image)
        return tuple(features[name] for name in self.names)


class _HeadsGraph(nn.Module):
    """Features of frame t (then of frame t-1 with a next-frame branch) -> head maps at the
    padded input size, in :data:`MAP_NAMES` order (``next_offset`` last, when present)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n = len(self.names)
        current = dict(zip(self.names, features[:n], strict=True))
        previous = dict(zip(self.names, features[n:], strict=True)) if len(features) > n else None
        maps = self.model._head_maps(current, previous)
        return tuple(maps[name] for name in MAP_NAMES if name in maps)


def _with_pooling(model: nn.Module, window: bool) -> nn.Module:
    """A copy of ``model`` whose crop-window ASPP poolings always pool over their window
    (``window``) or always globally, so that no graph branches on the frame size."""
    model = copy.deepcopy(model)
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, CropWindowPool2d):
                pool = nn.AvgPool2d(child.window, stride=1) if window else nn.AdaptiveAvgPool2d(1)
                setattr(module, name, pool)
    return model


def _aspp_window(model: nn.Module, names: list[str]) -> tuple[int, int] | None:
    """The crop window of the model's ASPP poolings in input pixels, None without one."""
    stride = model.backbone.output_shape()[names[-1]].stride
    windows = {m.window for m in model.modules() if isinstance(m, CropWindowPool2d)}
    heads = [model.sem_seg_head, model.ins_embed_head, model.depth_head, model.next_frame_head]
    if not windows:
        return None
    if len(windows) > 1 or any(h is not None and h.in_features[-1] != names[-1] for h in heads):
        raise ExportError(
            f"the ASPPs of this model pool over different windows ({sorted(windows)}); an "
            "export supports one: set MODEL.PANOPTIC_DEPTHLAB.ASPP_POOLING global or one crop."
        )
    wh, ww = windows.pop()
    return (wh * stride, ww * stride)


def _sample(size: tuple[int, int], seed: int, device: torch.device) -> torch.Tensor:
    """A (3, H, W) float image in 0..255 with smooth structure and noise (a reproducible frame)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, max(size[0] // 16, 2), max(size[1] // 16, 2), generator=g)
    smooth = nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    noise = torch.rand(1, 3, *size, generator=g)
    return ((0.8 * smooth + 0.2 * noise)[0] * 255).round().to(device)


def _normalized(model: nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(3, H, W) image -> (1, 3, H, W) normalized as the model normalizes."""
    return ((image - model.pixel_mean) / model.pixel_std)[None]


def _lcm(a: int, b: int) -> int:
    return a * b // math.gcd(a, b)


def _export_graph(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    dynamic_shapes: Any,
    fmt: str,
    path: str,
    input_names: list[str],
    output_names: list[str],
) -> None:
    # size-oblivious tracing: no specialization on feature maps of size 1 (a window-pooled map
    # can be one pixel high), no merging of dims that happen to be equal in the sample
    oblivious = torch.fx.experimental._config.patch(
        backed_size_oblivious=True, use_duck_shape=False
    )
    with torch.no_grad(), warnings.catch_warnings(), oblivious:
        warnings.simplefilter("ignore")  # exporter deprecation chatter users cannot act on
        if fmt == "pt2":
            program = torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes)
            torch.export.save(program, path)
        else:
            program = torch.onnx.export(
                module,
                inputs,
                dynamo=True,
                dynamic_shapes=dynamic_shapes,
                input_names=input_names,
                output_names=output_names,
                verbose=False,
            )
            program.save(path)


def _differences(
    model: nn.Module, network: ExportedNetwork, size: tuple[int, int], seed: int
) -> dict[str, tuple[float, float]]:
    """Per output ``(max |eager|, max |exported - eager|)`` over a pair of frames of ``size``
    (the first frame alone, the second with the first as previous frame)."""
    result: dict[str, tuple[float, float]] = {}
    previous_eager = previous_exported = None
    for index in range(2):
        inputs = {"image": _sample(size, seed + index, model.device)}
        with torch.no_grad():
            _, eager, previous_eager = model.frame_maps(inputs, previous_eager)
            _, exported, previous_exported = network.frame_maps(inputs, previous_exported)
        for name, value in eager.items():
            difference = (exported[name].to(value.device) - value).abs().max().item()
            scale = value.abs().max().item()
            old = result.get(name, (0.0, 0.0))
            result[name] = (max(old[0], scale), max(old[1], difference))
    return result


def _replace_folder(partial: str, output_dir: str) -> None:
    """Move the finished export ``partial`` to ``output_dir``, replacing an earlier export."""
    if os.path.isdir(output_dir):
        old = f"{partial}.old"
        os.rename(output_dir, old)
        os.rename(partial, output_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(partial, output_dir)


def export_model(
    cfg: CfgNode,
    fmt: str,
    output_dir: str,
    sample_size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, Any]:
    """Export the config's model (``MODEL.WEIGHTS`` loaded) to ``output_dir`` and check it.

    Every output of the exported graphs, run through the same runtime users run
    (:class:`~panoptic_depthlab.runtime.exported.ExportedNetwork`), is compared with eager
    PyTorch on a pair of frames of a size other than the export size (and, with a
    ``heads_window`` graph, on a pair of a size that pools in windows).

    Args:
        cfg: a PanopticDepthLab config (``MODEL.DEVICE`` is where the export runs).
        fmt: ``"pt2"`` or ``"onnx"``.
        output_dir: the folder to write; an earlier export there is replaced, other content
            is refused.
        sample_size: (H, W) of the example frame the graphs are traced with (default: the
            training crop, else 512 x 1024), rounded up to the size divisibility.
        tolerance: largest accepted difference relative to an output's largest magnitude (at
            least 1).

    Returns:
        The manifest written (``check`` holds the sizes and differences).

    Raises:
        ExportError: a config that cannot be exported, or outputs that differ from eager
            PyTorch by more than the tolerance; nothing is left in ``output_dir``.
        ConfigValueError: ``TEST.AUG.ENABLED`` (the graphs run one view).
        CheckpointError: ``MODEL.WEIGHTS`` cannot be loaded into this config's model.
        OutputError: ``output_dir`` cannot be written.
    """
    if fmt not in GRAPH_FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {list(GRAPH_FORMATS)}.")
    if cfg.TEST.AUG.ENABLED:
        raise ConfigValueError(
            "TEST.AUG.ENABLED True: exported graphs run one view of a frame; export with "
            "TEST.AUG.ENABLED False (test-time augmentation stays an eager-model option)."
        )
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        if not os.path.isfile(os.path.join(output_dir, MANIFEST_NAME)):
            raise OutputError(
                f"{output_dir}: exists and is not an exported model folder (no {MANIFEST_NAME})"
                "; choose an empty or new folder."
            )
    parent = os.path.dirname(os.path.abspath(output_dir))
    check_writable(parent, "the export's parent folder")

    model, untrained = load_model(cfg)
    names = sorted(model.backbone.output_shape())
    divisibility = max(int(model._size_divisibility()), 1)
    if sample_size is None:
        crop = cfg.INPUT.CROP
        sample_size = tuple(crop.SIZE) if crop.ENABLED and crop.TYPE == "absolute" else (512, 1024)
    sample = tuple(math.ceil(s / divisibility) * divisibility for s in sample_size)
    check = (sample[0] + divisibility + 3, sample[1] + 5)  # another size, padded on export
    window = _aspp_window(model, names)
    # the graphs specialize on feature maps of size 1: the deepest must be >= 2 pixels
    stride = max(shape.stride for shape in model.backbone.output_shape().values())
    min_blocks = max(2, math.ceil((stride + 1) / divisibility))
    max_blocks = max(min_blocks + 1, 32768 // divisibility)
    next_frame = model.next_frame_head is not None
    ext = fmt
    graphs = {"backbone": f"backbone.{ext}", "heads": f"heads.{ext}"}
    heads_sizes = {"heads": (sample, check)}
    if window is not None:
        unit = (_lcm(divisibility, window[0]), _lcm(divisibility, window[1]))
        graphs["heads_window"] = f"heads_window.{ext}"
        heads_sizes["heads_window"] = ((2 * unit[0], unit[1]), (unit[0], 2 * unit[1]))

    partial = f"{output_dir.rstrip(os.sep)}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with output_errors(partial):
            os.makedirs(partial)
            block_h = torch.export.Dim("height_blocks", min=min_blocks, max=max_blocks)
            block_w = torch.export.Dim("width_blocks", min=min_blocks, max=max_blocks)
            backbone = _BackboneGraph(model, names)
            image = _normalized(model, _sample(sample, 0, model.device))
            logger.info(f"Exporting the backbone ({fmt}, traced at {sample[0]}x{sample[1]}) ...")
            _export_graph(
                backbone,
                (image,),
                {"image": {2: divisibility * block_h, 3: divisibility * block_w}},
                fmt,
                os.path.join(partial, graphs["backbone"]),
                ["image"],
                names,
            )
            feature_names = names + ([f"previous_{n}" for n in names] if next_frame else [])
            map_names = [n for n in MAP_NAMES if next_frame or n != "next_offset"]
            for graph, (size, _) in heads_sizes.items():
                with torch.no_grad():  # a pair of distinct frames: traced inputs must not alias
                    inputs = backbone(_normalized(model, _sample(size, 1, model.device)))
                    if next_frame:
                        inputs += backbone(_normalized(model, _sample(size, 2, model.device)))
                dims = {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
                logger.info(f"Exporting the {graph} graph ({fmt}, at {size[0]}x{size[1]}) ...")
                _export_graph(
                    _HeadsGraph(_with_pooling(model, graph == "heads_window"), names),
                    inputs,
                    (tuple(dims for _ in inputs),),
                    fmt,
                    os.path.join(partial, graphs[graph]),
                    feature_names,
                    map_names,
                )
            manifest = {
                "format": "panoptic_depthlab exported model",
                "version": MANIFEST_VERSION,
                "panoptic_depthlab_version": __version__,
                "torch_version": torch.__version__,
                "graph_format": fmt,
                "graphs": graphs,
                "feature_names": names,
                "map_names": map_names,
                "next_frame": next_frame,
                "input_format": cfg.INPUT.FORMAT,
                "pixel_mean": model.pixel_mean.flatten().tolist(),
                "pixel_std": model.pixel_std.flatten().tolist(),
                "size_divisibility": divisibility,
                "min_padded_size": min_blocks * divisibility,
                "aspp_window": list(window) if window is not None else None,
                "panoptic_settings": model.panoptic_settings.as_dict(),
                "tracker_settings": model.tracker_settings.as_dict(),
                "appearance_feature": model.appearance_feature,
                "metadata": _json_metadata(model.meta.as_dict()),
                "untrained": untrained,
                "weights": cfg.MODEL.WEIGHTS,
                "exported_on": str(model.device),
                "config": cfg.dump(),
            }
            write_json_atomic(os.path.join(partial, MANIFEST_NAME), manifest)

            network = ExportedNetwork(partial, model.device)
            differences: dict[str, dict[str, Any]] = {}
            for graph, (_, check_size) in heads_sizes.items():
                for name, (scale, diff) in _differences(model, network, check_size, 7).items():
                    differences[f"{graph}/{name}"] = {
                        "size": list(check_size),
                        "max_abs_eager": scale,
                        "max_abs_difference": diff,
                        "relative": diff / max(scale, 1.0),
                    }
            table = [
                (key, "x".join(map(str, d["size"])), d["max_abs_eager"], d["max_abs_difference"])
                for key, d in differences.items()
            ]
            logger.info(
                "Exported vs eager PyTorch (largest differences):\n"
                + tabulate(table, headers=["graph/output", "frame", "max |eager|", "max |diff|"])
            )
            worst = max(differences.items(), key=lambda kv: kv[1]["relative"])
            manifest["check"] = {
                "sample_size": list(sample),
                "tolerance": tolerance,
                "differences": differences,
            }
            if not worst[1]["relative"] <= tolerance:  # NaN fails too
                raise ExportError(
                    f"the {fmt} graphs differ from eager PyTorch: {worst[0]} by "
                    f"{worst[1]['max_abs_difference']:.3g} (max |eager| "
                    f"{worst[1]['max_abs_eager']:.3g}; relative {worst[1]['relative']:.3g} > "
                    f"tolerance {tolerance:g}); nothing was written to {output_dir}."
                )
            write_json_atomic(os.path.join(partial, MANIFEST_NAME), manifest)
            _replace_folder(partial, output_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return manifest


def _json_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The JSON-representable part of a dataset's metadata (tuples become lists)."""
    kept = {}
    for key, value in metadata.items():
        try:
            json.dumps(value)
        except TypeError:
            logger.info(f"Metadata {key!r} is not JSON ({type(value).__name__}): not exported.")
            continue
        kept[key] = value
    return kept
