"""Detectron2 evaluator of DVPS model outputs on a registered dataset: DVPQ, depth, STQ/DSTQ."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from ..files import OutputError, process_is_running, write_json_atomic
from ..panoptic_ids import TRACK_LABEL_DIVISOR, split_panoptic
from .accumulator import DVPSAccumulator
from .dvpq import DVPSFrame
from .formats import IMAGE_SUFFIX, quantize_depth, read_ground_truth, write_prediction
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
    ``panoptic_seg`` (the tracked ids of video inference, ``class * TRACK_LABEL_DIVISOR +
    track number``, -1 for void; see :mod:`panoptic_depthlab.panoptic_ids`) and ``depth``
    ((H, W) meters). Instance ids should be consistent across a sequence (video inference);
    per-frame ids are evaluated as they are, which lowers DVPQ for k > 1.

    With an ``output_dir``, a run never mixes with an earlier one: every process writes its
    prediction files into a sibling folder ``<output_dir>.partial-<pid>-<token>`` (the main
    process's pid, one token per :meth:`reset`), the main process writes ``dvps_results.json``
    there after gathering the processes' results, then puts that folder in the place of
    ``output_dir`` by renames. An interrupted run leaves ``output_dir`` as it was; the partial
    folder it leaves (after SIGKILL) is removed by the next evaluation into that folder.
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
                (``panoptic/`` and ``depth/``) and the results as ``dvps_results.json``. The
                folder is the evaluator's own: a completed evaluation replaces it as a whole.
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
        self._final_dir = os.path.normpath(output_dir) if output_dir else None
        # where process() writes: the partial folder of the current run (set by reset)
        self._output_dir: str | None = None
        self._token: str | None = None
        self._cpu = torch.device("cpu")
        self.reset()

    def reset(self) -> None:
        """Start a run: an empty accumulator and, with an ``output_dir``, a new partial folder
        (a collective call in a distributed run: every process must call it)."""
        self._accumulator = DVPSAccumulator(
            self._meta_dict, self._window_sizes, self._depth_thresholds
        )
        if self._final_dir is None:
            return
        # one folder for all processes, named by the main process
        self._token = comm.all_gather(f"{os.getpid()}-{uuid.uuid4().hex[:8]}")[0]
        self._output_dir = f"{self._final_dir}.partial-{self._token}"
        if comm.is_main_process():
            self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Remove what interrupted evaluations into the same folder left beside it: partial
        folders, and the previous results moved aside by a swap that did not finish (put back
        when the swap was cut between its two renames)."""
        parent, base = os.path.split(self._final_dir)
        pattern = re.compile(rf"^{re.escape(base)}\.(partial|old)-(\d+)-([0-9a-f]+)$")
        leftovers = []
        for name in os.listdir(parent or ".") if os.path.isdir(parent or ".") else []:
            match = pattern.match(name)
            if match is None or f"{match[2]}-{match[3]}" == self._token:
                continue
            pid = int(match[2])
            if pid != os.getpid() and process_is_running(pid):
                continue  # a running evaluation into the same folder
            leftovers.append((match[1], os.path.join(parent, name)))
        for kind, path in sorted(leftovers, key=lambda item: item[0] != "old"):
            if kind == "old" and not os.path.lexists(self._final_dir):
                os.rename(path, self._final_dir)
                logger.info(f"Restored {self._final_dir} from {path} (an interrupted swap).")
            else:
                shutil.rmtree(path, ignore_errors=True)
                logger.info(f"Removed {path}, left by an interrupted evaluation.")

    def discard(self) -> None:
        """Remove the current run's partial folder (the run was interrupted); ``output_dir``
        keeps the previous results. Call it on the main process."""
        if self._output_dir is not None and comm.is_main_process():
            shutil.rmtree(self._output_dir, ignore_errors=True)

    def _publish(self) -> None:
        """Put the complete partial folder in the place of ``output_dir``: move the old folder
        aside, rename the new one in, remove the old one."""
        old = f"{self._final_dir}.old-{self._token}"
        try:
            os.makedirs(self._output_dir, exist_ok=True)  # a run without prediction files
            if os.path.lexists(self._final_dir):
                os.rename(self._final_dir, old)
            os.rename(self._output_dir, self._final_dir)
        except OSError as e:
            if os.path.lexists(old) and not os.path.lexists(self._final_dir):
                with contextlib.suppress(OSError):  # else the next reset puts it back
                    os.rename(old, self._final_dir)
            raise OutputError(
                f"{self._final_dir}: cannot replace it with the new results ({e.strerror or e})."
            ) from e
        shutil.rmtree(old, ignore_errors=True)

    def process(self, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]]) -> None:
        meta = self._meta
        for record, output in zip(inputs, outputs, strict=True):
            panoptic = output["panoptic_seg"][0].to(self._cpu).numpy()
            pred_class, pred_instance = split_panoptic(
                panoptic, TRACK_LABEL_DIVISOR, meta.num_classes
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
                write_prediction(  # named by image_id: unique in a split, in every layout
                    os.path.join(self._output_dir, "panoptic"),
                    os.path.join(self._output_dir, "depth"),
                    record["image_id"] + IMAGE_SUFFIX,
                    self._meta_dict,
                    pred_class,
                    pred_instance,
                    pred_depth,
                )

    def evaluate(self) -> OrderedDict:
        parts = comm.gather(self._accumulator, dst=0)
        if not comm.is_main_process():
            return OrderedDict()
        # Every process has written its prediction files before sending its part.
        try:
            accumulator = parts[0]
            for part in parts[1:]:
                accumulator.merge(part)
            if not accumulator.frames:
                raise ValueError(
                    f"DVPSEvaluator on {self._dataset_name}: no frames were processed."
                )
            results = accumulator.results()
            logger.info(
                "DVPS evaluation of %d frames of %s:\n%s",
                len(accumulator.frames),
                self._dataset_name,
                format_results_table(results),
            )
            if self._output_dir:
                write_json_atomic(os.path.join(self._output_dir, "dvps_results.json"), results)
                self._publish()
                self._output_dir = None  # published; the next reset starts a new folder
                logger.info(f"Predictions and dvps_results.json written to {self._final_dir}.")
        except BaseException:
            self.discard()
            raise
        return OrderedDict(dvps=flatten_dvps_results(results))
