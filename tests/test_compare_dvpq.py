"""tools/compare_dvpq.py: the before / after table of make demo, and its answers to bad files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import compare_dvpq  # noqa: E402


def results(mean: float, k1: float, pq: float, abs_rel: float) -> dict:
    """A results dict in the schema of tools/eval_dvpq.py, with the entries the table reads."""
    table = [
        {"k": k, "lambda": lam, "pq": value, "pq_thing": None, "pq_stuff": None}
        for k in (1, 2)
        for lam, value in ((0.0, pq), (0.5, k1 if k == 1 else 0.0))
    ]
    return {"dvpq": table, "dvpq_mean": {"pq": mean}, "depth": {"abs_rel": abs_rel}}


def test_table_rows_change_and_ratio(tmp_path, capsys):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    before.write_text(json.dumps(results(mean=0.0, k1=2.0, pq=4.0, abs_rel=0.5)))
    after.write_text(json.dumps(results(mean=44.37, k1=50.0, pq=60.0, abs_rel=0.125)))
    assert compare_dvpq.main([str(before), str(after)]) == 0
    rows = {
        cells[0]: cells[1:]
        for line in capsys.readouterr().out.splitlines()[2:]
        for cells in [[c.strip() for c in line.strip("|").split("|")]]
    }
    assert rows["DVPQ (mean)"] == ["0", "44.37", "+44.37", "n/a", "higher"]  # no ratio to 0
    assert rows["DVPQ k=1 lambda=0.5"] == ["2", "50", "+48", "25.0x", "higher"]
    assert rows["PQ (k=1, no depth test)"] == ["4", "60", "+56", "15.0x", "higher"]
    assert rows["AbsRel (fraction)"] == ["0.5", "0.125", "-0.375", "0.2x", "lower"]
    assert "DSTQ" not in rows  # Cityscapes-DVPS results have none


def test_missing_or_foreign_files_exit_2_with_the_path(tmp_path, capsys):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(results(1.0, 1.0, 1.0, 0.1)))
    foreign = tmp_path / "coco.json"
    foreign.write_text(json.dumps({"bbox": {"AP": 1.0}}))
    missing = tmp_path / "missing.json"
    assert compare_dvpq.main([str(good), str(missing)]) == 2
    assert f"{missing}: cannot read it as JSON" in capsys.readouterr().err
    assert compare_dvpq.main([str(foreign), str(good)]) == 2
    assert f"{foreign}: no 'dvpq' and 'depth' keys" in capsys.readouterr().err
