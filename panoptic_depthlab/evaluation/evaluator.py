"""Detectron2 evaluator of DVPS model outputs on a registered dataset: DVPQ, depth, STQ/DSTQ."""

from __future__ import annotations

import itertools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..files import write_json_atomic
from .depth_metrics import DepthMetrics
from .dvpq import DVPQProtocol, DVPSFrame
from .evaluate_files import (
    dvps_results,
    format_results_table,
    new_stq,
    reduce_frame,
)
from .formats import quantize_depth, read_ground_truth, write_prediction

__all__ = ["DVPSEvaluator", "flatten_dvps_results"]

logger = logging.getLogger(__name__)


class DVPSEvaluator(DatasetEvaluator):
    """DVPQ for every (k, lambda), per-class PQ, depth metrics and, for SemKITTI-DVPS, STQ and
    DSTQ of a model's outputs, exactly as ``tools/eval_dvpq.py`` computes them from files.

    Each processed frame is reduced at once to its DVPQ overlap tables and added to the depth and
    STQ accumulators; no frame is kept. Frames may arrive in any order and from any process:
    ``evaluate`` gathers the tables and orders them by (sequence, frame) to form the windows.

    Inputs need the dataset record's ``file_name``, ``sequence_id`` and ``frame_index`` (the
    record itself, or what :class:`DVPSDatasetMapper` returns in inference); outputs need
    ``panoptic_seg`` (ids ``class * label_divisor + instance``, -1 for void) and ``depth``
    ((H, W) meters). Instance ids should be consistent across a sequence (video inference);
    per-frame ids are evaluated as they are, which lowers DVPQ for k > 1.
    """

    def __init__(
        self,
        dataset_name: str,
        output_dir: str | None = None,
        window_sizes: Sequence[int] | None = None,
        depth_thresholds: Sequence[float] | None = None,
    ):
        """
        Args:
            dataset_name: a registered DVPS dataset (its metadata names the format).
            output_dir: if given, predictions are also written there in the official formats
                (``panoptic/`` and ``depth/``) and the results as ``dvps_results.json``.
            window_sizes: k values; default the dataset's.
            depth_thresholds: lambda values; default the dataset's plus 0.
        """
        self._meta = MetadataCatalog.get(dataset_name)
        if getattr(self._meta, "evaluator_type", None) != "dvps":
            raise ValueError(
                f"dataset {dataset_name!r} is not a DVPS dataset (its metadata has no "
                "evaluator_type 'dvps'); register it with register_dvps_dataset."
            )
        self._dataset_name = dataset_name
        self._format = self._meta.dataset_format
        self._protocol = DVPQProtocol.from_metadata(
            self._meta.as_dict(), window_sizes, depth_thresholds
        )
        self._output_dir = output_dir
        self._cpu = torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        self._frames: list[tuple[int, int, str, Any]] = []
        self._depth = DepthMetrics()
        self._stq = new_stq(self._format, self._meta.as_dict())

    def _prediction(self, output: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class, instance, depth in meters as a 16-bit PNG stores it) of one output."""
        panoptic = output["panoptic_seg"][0].to(self._cpu).numpy().astype(np.int64)
        divisor = self._meta.label_divisor
        void = (panoptic < 0) | (panoptic // divisor >= self._meta.num_classes)
        pred_class = np.where(void, self._meta.num_classes, panoptic // divisor)
        pred_instance = np.where(void, 0, panoptic % divisor)
        depth = quantize_depth(output["depth"].to(self._cpu).numpy())
        return pred_class, pred_instance, depth

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        for record, output in zip(inputs, outputs, strict=True):
            pred_class, pred_instance, pred_depth = self._prediction(output)
            gt_class, gt_instance, gt_depth = read_ground_truth(record, self._meta.as_dict())
            frame = DVPSFrame(
                pred_class,
                pred_instance,
                pred_depth,
                gt_class,
                gt_instance,
                gt_depth,
                name=record["file_name"],
            )
            stats = reduce_frame(
                frame, record["sequence_id"], self._protocol, self._depth, self._stq
            )
            if self._output_dir:
                write_prediction(
                    os.path.join(self._output_dir, "panoptic"),
                    os.path.join(self._output_dir, "depth"),
                    record["file_name"],
                    self._format,
                    pred_class,
                    pred_instance,
                    pred_depth,
                )
            key = (record["sequence_id"], record["frame_index"], record["file_name"])
            self._frames.append((*key, stats))

    def evaluate(self) -> OrderedDict:
        frames = list(itertools.chain(*comm.gather(self._frames, dst=0)))
        depth_parts = comm.gather(self._depth, dst=0)
        stq_parts = comm.gather(self._stq, dst=0)
        if not comm.is_main_process():
            return OrderedDict()
        if not frames:
            raise ValueError(f"DVPSEvaluator on {self._dataset_name}: no frames were processed.")
        for part in depth_parts[1:]:
            depth_parts[0].merge(part)
        if self._protocol.windows_cross_sequences:  # all frames sorted by name, one stream
            frames.sort(key=lambda f: os.path.basename(f[2]))
            streams = [[f[3] for f in frames]]
        else:
            frames.sort(key=lambda f: f[:2])
            groups = itertools.groupby(frames, key=lambda f: f[0])
            streams = [[f[3] for f in group] for _, group in groups]
        stq = None
        if stq_parts[0] is not None:
            stq = stq_parts[0]
            for part in stq_parts[1:]:
                stq.merge(part)
        results = dvps_results(self._format, self._protocol, streams, depth_parts[0], stq)
        logger.info(
            "DVPS evaluation of %d frames of %s:\n%s",
            len(frames),
            self._dataset_name,
            format_results_table(results),
        )
        if self._output_dir:
            write_json_atomic(os.path.join(self._output_dir, "dvps_results.json"), results)
        return OrderedDict(dvps=flatten_dvps_results(results))


def flatten_dvps_results(results: dict[str, Any]) -> dict[str, float]:
    """Scalars for Detectron2's storage and logs: ``DVPQ``, ``DVPQ_th``, ``DVPQ_st`` (means over
    k and lambda > 0), ``DVPQ@k<k>_l<lambda>``, depth metrics and STQ/DSTQ when present."""
    flat: dict[str, float] = {}
    for suffix, key in (("", "pq"), ("_th", "pq_thing"), ("_st", "pq_stuff")):
        if "dvpq_mean" in results and results["dvpq_mean"][key] is not None:
            flat["DVPQ" + suffix] = results["dvpq_mean"][key]
    for entry in results["dvpq"]:
        if entry["pq"] is not None:
            flat[f"DVPQ@k{entry['k']}_l{entry['lambda']:g}"] = entry["pq"]
    for key, value in results["depth"].items():
        if key not in ("frames", "skipped_frames") and value is not None:
            flat[key] = value
    for key in ("stq", "dstq"):
        if key in results:
            flat[key.upper()] = results[key]
    return flat
