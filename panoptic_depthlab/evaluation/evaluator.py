"""Detectron2 evaluator of DVPS model outputs on a registered dataset: DVPQ, depth, STQ/DSTQ."""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..files import write_json_atomic
from ..panoptic_ids import split_panoptic
from .accumulator import DVPSAccumulator
from .dvpq import DVPSFrame
from .formats import quantize_depth, read_ground_truth, write_prediction
from .report import flatten_dvps_results, format_results_table

__all__ = ["DVPSEvaluator"]

logger = logging.getLogger(__name__)


class DVPSEvaluator(DatasetEvaluator):
    """DVPQ for every (k, lambda), per-class PQ, depth metrics and, for SemKITTI-DVPS, STQ and
    DSTQ of a model's outputs, exactly as ``tools/eval_dvpq.py`` computes them from files.

    Each processed frame goes straight into a
    :class:`~panoptic_depthlab.evaluation.accumulator.DVPSAccumulator` (the file evaluation's
    too); no frame is kept. Frames may arrive in any order and from any process: ``evaluate``
    merges the processes' accumulators, which order the frames by (sequence, frame).

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
        self._meta_dict = self._meta.as_dict()
        self._window_sizes = window_sizes
        self._depth_thresholds = depth_thresholds
        self._output_dir = output_dir
        self._cpu = torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        self._accumulator = DVPSAccumulator(
            self._meta_dict, self._window_sizes, self._depth_thresholds
        )

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        meta = self._meta
        for record, output in zip(inputs, outputs, strict=True):
            panoptic = output["panoptic_seg"][0].to(self._cpu).numpy()
            pred_class, pred_instance = split_panoptic(
                panoptic, meta.label_divisor, meta.num_classes
            )
            pred_depth = quantize_depth(output["depth"].to(self._cpu).numpy())  # as a PNG holds it
            gt_class, gt_instance, gt_depth = read_ground_truth(record, self._meta_dict)
            frame = DVPSFrame(
                pred_class,
                pred_instance,
                pred_depth,
                gt_class,
                gt_instance,
                gt_depth,
                name=record["file_name"],
            )
            self._accumulator.add(frame, record["sequence_id"], record["frame_index"])
            if self._output_dir:
                write_prediction(
                    os.path.join(self._output_dir, "panoptic"),
                    os.path.join(self._output_dir, "depth"),
                    record["file_name"],
                    self._meta_dict,
                    pred_class,
                    pred_instance,
                    pred_depth,
                )

    def evaluate(self) -> OrderedDict:
        parts = comm.gather(self._accumulator, dst=0)
        if not comm.is_main_process():
            return OrderedDict()
        accumulator = parts[0]
        for part in parts[1:]:
            accumulator.merge(part)
        if not accumulator.frames:
            raise ValueError(f"DVPSEvaluator on {self._dataset_name}: no frames were processed.")
        results = accumulator.results()
        logger.info(
            "DVPS evaluation of %d frames of %s:\n%s",
            len(accumulator.frames),
            self._dataset_name,
            format_results_table(results),
        )
        if self._output_dir:
            write_json_atomic(os.path.join(self._output_dir, "dvps_results.json"), results)
        return OrderedDict(dvps=flatten_dvps_results(results))
