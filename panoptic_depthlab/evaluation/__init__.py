"""DVPS evaluation: DVPQ, depth metrics, STQ/DSTQ, one accumulator of them all, the official
prediction file formats and COCO panoptic predictions, the file-based evaluation behind
``tools/eval_dvpq.py``, the Detectron2 evaluator and video inference over a registered dataset."""

from .accumulator import DVPSAccumulator
from .depth_metrics import DepthMetrics
from .dvpq import DVPQAccumulator, DVPQProtocol, DVPSFrame, FrameStatistics, frame_statistics
from .evaluate_files import DVPSInputError, evaluate_prediction_files
from .evaluator import DVPSEvaluator
from .formats import read_ground_truth, write_prediction
from .inference import inference_on_sequences
from .stq import STQAccumulator

__all__ = [
    "DVPQAccumulator",
    "DVPQProtocol",
    "DVPSAccumulator",
    "DVPSEvaluator",
    "DVPSFrame",
    "DVPSInputError",
    "DepthMetrics",
    "FrameStatistics",
    "STQAccumulator",
    "evaluate_prediction_files",
    "frame_statistics",
    "inference_on_sequences",
    "read_ground_truth",
    "write_prediction",
]
