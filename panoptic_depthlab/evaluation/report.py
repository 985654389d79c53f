"""The results of a DVPS evaluation as text: a plain-text table for people and flat scalars for
Detectron2's storage and logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tabulate import tabulate

__all__ = ["flatten_dvps_results", "format_results_table"]

_STQ_LABELS = {"stq": "STQ", "aq": "AQ", "iou": "IoU", "dq": "DQ", "dstq": "DSTQ"}


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_results_table(results: Mapping[str, Any]) -> str:
    """Plain-text tables: PQ / PQ_th / PQ_st per (k, lambda) and their mean over lambda > 0,
    then the depth metrics and, when present, STQ, AQ, IoU, DQ and DSTQ."""
    rows = [
        [e["k"], f"{e['lambda']:g}", _fmt(e["pq"]), _fmt(e["pq_thing"]), _fmt(e["pq_stuff"])]
        for e in results["dvpq"]
    ]
    if "dvpq_mean" in results:
        mean = results["dvpq_mean"]
        rows.append(["DVPQ", "mean", *(_fmt(mean[key]) for key in ("pq", "pq_thing", "pq_stuff"))])
    text = tabulate(rows, headers=["k", "lambda", "PQ", "PQ_th", "PQ_st"], tablefmt="github")
    metrics = [
        [key, value if isinstance(value, int) else _fmt(value)]
        for key, value in results.get("depth", {}).items()
    ]
    metrics += [[label, _fmt(results[key])] for key, label in _STQ_LABELS.items() if key in results]
    return text + "\n\n" + tabulate(metrics, headers=["metric", "value"], tablefmt="github")


def flatten_dvps_results(results: dict[str, Any]) -> dict[str, float]:
    """Scalars for Detectron2's storage and logs: ``DVPQ``, ``DVPQ_th``, ``DVPQ_st`` (means over
    k and lambda > 0), ``DVPQ@k<k>_l<lambda>``, depth metrics and STQ, AQ, IoU, DQ, DSTQ when
    present."""
    flat: dict[str, float] = {}
    for suffix, key in (("", "pq"), ("_th", "pq_thing"), ("_st", "pq_stuff")):
        if "dvpq_mean" in results and results["dvpq_mean"][key] is not None:
            flat["DVPQ" + suffix] = results["dvpq_mean"][key]
    for entry in results["dvpq"]:
        if entry["pq"] is not None:
            flat[f"DVPQ@k{entry['k']}_l{entry['lambda']:g}"] = entry["pq"]
    for key, value in results.get("depth", {}).items():
        if key not in ("frames", "skipped_frames") and value is not None:
            flat[key] = value
    for key, label in _STQ_LABELS.items():
        if results.get(key) is not None:
            flat[label] = results[key]
    return flat
