"""Compare two DVPS evaluation JSON files (``tools/eval_dvpq.py`` / ``DVPSEvaluator``'s schema).

    python tools/compare_dvpq.py output/demo/eval_before.json output/demo/eval_after.json

Prints a table of DVPQ (mean over k and lambda > 0), DVPQ at k = 1 and lambda = 0.5, PQ (k = 1,
no depth test), DSTQ when present, and the depth AbsRel, one column per file and the change.
Exit code 2 when a file is missing or not in that schema.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from tabulate import tabulate


def _window(k: int, depth_threshold: float) -> Callable[[dict[str, Any]], float | None]:
    def value(results: dict[str, Any]) -> float | None:
        for entry in results["dvpq"]:
            if entry["k"] == k and entry["lambda"] == depth_threshold:
                return entry["pq"]
        return None

    return value


# (row name, value in a results dict or None, "higher" or "lower" is better)
ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None], str]] = [
    ("DVPQ (mean)", lambda r: r.get("dvpq_mean", {}).get("pq"), "higher"),
    ("DVPQ k=1 lambda=0.5", _window(1, 0.5), "higher"),
    ("PQ (k=1, no depth test)", _window(1, 0.0), "higher"),
    ("DSTQ", lambda r: r.get("dstq"), "higher"),
    ("AbsRel (fraction)", lambda r: r.get("depth", {}).get("abs_rel"), "lower"),
]


def comparison_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """The table printed by this tool (rows without a value in either file are left out)."""
    rows = []
    for name, value, better in ROWS:
        a, b = value(before), value(after)
        if a is None or b is None:
            continue
        ratio = f"{b / a:.1f}x" if a else "n/a"
        rows.append([name, f"{a:.4g}", f"{b:.4g}", f"{b - a:+.4g}", ratio, better])
    return tabulate(
        rows,
        headers=["metric", "before", "after", "change", "after / before", "better"],
        tablefmt="github",
        disable_numparse=True,  # keep the "+" of gains and the formatting above
    )


def _read(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read it as JSON ({e}).") from e
    if not isinstance(results, dict) or "dvpq" not in results or "depth" not in results:
        raise ValueError(
            f"{path}: no 'dvpq' and 'depth' keys; expected the JSON of tools/eval_dvpq.py or "
            "DVPSEvaluator (dvps_results.json)."
        )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="compare_dvpq.py",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    parser.add_argument("before", help="results JSON of the first model")
    parser.add_argument("after", help="results JSON of the second model")
    args = parser.parse_args(argv)
    try:
        before, after = _read(args.before), _read(args.after)
    except ValueError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(comparison_table(before, after))
    return 0


if __name__ == "__main__":
    sys.exit(main())
