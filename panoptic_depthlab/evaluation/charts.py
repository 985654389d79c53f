"""PNG charts of a DVPS evaluation's results: per-class PQ and DVPQ against the window size."""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from ..files import write_bytes_atomic

__all__ = ["plot_results"]

logger = logging.getLogger(__name__)


def _save_figure(figure: Any, path: str) -> None:
    """Render a matplotlib figure to PNG in memory and write it atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    write_bytes_atomic(path, buffer.getvalue())


def plot_results(results: Mapping[str, Any], plot_dir: str) -> list[str]:
    """PNG charts of the results: ``per_class_pq.png`` (PQ per class at k = 1, lambda = 0, when
    both were evaluated; classes without TP, FP or FN are marked n/a) and ``dvpq_vs_k.png``
    (PQ against k, one line per lambda). Uses the Agg canvas; no global matplotlib state.

    Returns:
        The written paths.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    os.makedirs(plot_dir, exist_ok=True)
    written = []
    per_class = results.get("per_class")
    if per_class:
        names = list(per_class)
        values = [0.0 if v is None else v["pq"] for v in per_class.values()]
        figure = Figure(figsize=(max(6.0, 0.45 * len(names)), 4.0))
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        bars = ax.bar(range(len(names)), values, color="tab:blue")
        for bar, stats in zip(bars, per_class.values(), strict=True):
            if stats is None:
                ax.text(bar.get_x() + bar.get_width() / 2, 1, "n/a", ha="center", fontsize=7)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 105)
        ax.set_ylabel("PQ (%)")
        ax.set_title(f"{results['dataset']}: per-class PQ, k = 1, lambda = 0")
        figure.tight_layout()
        written.append(os.path.join(plot_dir, "per_class_pq.png"))
        _save_figure(figure, written[-1])
    else:
        logger.warning("no per-class PQ chart: k = 1 and lambda = 0 were not both evaluated")

    figure = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    lambdas = sorted({e["lambda"] for e in results["dvpq"]}, reverse=True)
    for lam in lambdas:
        entries = sorted((e for e in results["dvpq"] if e["lambda"] == lam), key=lambda e: e["k"])
        ks = [e["k"] for e in entries]
        pqs = [math.nan if e["pq"] is None else e["pq"] for e in entries]
        ax.plot(ks, pqs, marker="o", label=f"lambda = {lam:g}")
    ax.set_xticks(sorted({e["k"] for e in results["dvpq"]}))
    ax.set_xlabel("k (frames per window)")
    ax.set_ylabel("DVPQ (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{results['dataset']}: DVPQ against window size")
    ax.legend()
    figure.tight_layout()
    written.append(os.path.join(plot_dir, "dvpq_vs_k.png"))
    _save_figure(figure, written[-1])
    return written
