"""DVPS evaluation: DVPQ, depth metrics, STQ/DSTQ and the official prediction file formats."""

from .dvpq import DVPQAccumulator, DVPQProtocol, DVPSFrame, FrameStatistics, frame_statistics

__all__ = ["DVPQAccumulator", "DVPQProtocol", "DVPSFrame", "FrameStatistics", "frame_statistics"]
