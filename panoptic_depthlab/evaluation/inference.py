"""Video inference over a registered DVPS dataset, sequence by sequence, into an evaluator."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import DatasetEvaluator, DatasetEvaluators
from detectron2.evaluation.evaluator import inference_context
from detectron2.utils import comm
from detectron2.utils.logger import log_every_n_seconds
from torch.nn.parallel import DistributedDataParallel

from .evaluator import DVPSEvaluator

__all__ = ["inference_on_sequences"]

logger = logging.getLogger(__name__)


def inference_on_sequences(
    model: torch.nn.Module,
    dataset_name: str,
    mapper: Callable[[dict[str, Any]], dict[str, Any]],
    evaluator: DatasetEvaluator,
) -> dict[str, Any]:
    """Run :meth:`PanopticDepthLab.inference_sequence` on every sequence of a dataset and
    evaluate the outputs: Detectron2's ``inference_on_dataset`` for video.

    Each process takes every ``world_size``-th sequence (in sequence id order) and feeds its
    frames, in frame order, through ``mapper`` and the model; each output goes to
    ``evaluator.process`` with its dataset record. Progress is logged every 5 seconds.

    Args:
        model: a PanopticDepthLab (or DistributedDataParallel around one); it is put in eval mode
            for the run and restored after.
        dataset_name: a registered DVPS dataset.
        mapper: turns a dataset record into model input, e.g.
            ``DVPSDatasetMapper(cfg, is_train=False)``.
        evaluator: e.g. :class:`~panoptic_depthlab.evaluation.DVPSEvaluator`; reset here. An
            interrupted run (an exception, Ctrl-C) discards a DVPSEvaluator's partial folder.

    Returns:
        ``evaluator.evaluate()`` (on the main process; what the evaluator returns elsewhere).
    """
    if isinstance(model, DistributedDataParallel):
        model = model.module
    records = sorted(
        DatasetCatalog.get(dataset_name), key=lambda r: (r["sequence_id"], r["frame_index"])
    )
    sequences = [list(g) for _, g in itertools.groupby(records, key=lambda r: r["sequence_id"])]
    mine = sequences[comm.get_rank() :: comm.get_world_size()]
    total = sum(len(s) for s in mine)
    logger.info(
        "Video inference on %s: %d sequences, %d frames in this process.",
        dataset_name,
        len(mine),
        total,
    )
    evaluator.reset()
    done, start = 0, time.perf_counter()
    try:
        with inference_context(model), torch.no_grad():
            for frames in mine:
                outputs = model.inference_sequence(mapper(r) for r in frames)
                for record, output in zip(frames, outputs, strict=True):
                    evaluator.process([record], [output])
                    done += 1
                    seconds = time.perf_counter() - start
                    log_every_n_seconds(
                        logging.INFO,
                        f"Inference done {done}/{total} frames, {seconds / done:.3f} s/frame, "
                        f"ETA {seconds / done * (total - done):.0f} s",
                        n=5,
                        name=__name__,
                    )
    except BaseException:  # Ctrl-C included: no partial prediction folder stays behind
        parts = evaluator._evaluators if isinstance(evaluator, DatasetEvaluators) else [evaluator]
        for part in parts:  # (DatasetEvaluators keeps its list in _evaluators)
            if isinstance(part, DVPSEvaluator):
                part.discard()
        raise
    logger.info("Video inference of %d frames took %.1f s.", done, time.perf_counter() - start)
    return evaluator.evaluate()
