"""A smoke run of the benchmark harness: it runs, measures and writes its results.

Only that the figures exist is checked, never how fast they are: the machines are shared and a
timed assertion would fail on a busy one. The targets are judged in bench/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(240)
def test_a_quick_run_of_b2_and_b4_measures_every_figure_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    argv = [sys.executable, "-m", "bench", "--quick", "--only", "B2,B4", "--out", str(out)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=200, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["machine"]["cpus"] >= 1
    assert result["versions"]["asphalt"] and result["git"]["commit"]
    rows = {(r["bench"], r["metric"]): r for r in result["rows"]}
    for key in (("B2", "dispatch p50"), ("B2", "dispatch p99"), ("B4", "get-task req/s")):
        assert rows[key]["value"] > 0, rows[key]
    creates = rows[("B4", "create-task req/s (durable)")]
    assert creates["baseline"] > 0 and creates["ratio"] > 0 and creates["holds"] in (True, False)
    assert result["raw"]["B4"]["asphalt"]["create_errors"] == 0
    assert "| B4 | get-task req/s" in done.stdout  # the table a person reads
