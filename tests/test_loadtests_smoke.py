"""The signalling benchmark runs end to end with tiny parameters and prints its figures.

Nothing here is about speed: the benchmark's numbers go to ``docs/performance.md``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "loadtests" / "bench_signaling.py"


@pytest.mark.integration
def test_bench_signaling_completes_calls_and_prints_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--customers", "20", "--agents", "5", "--rate", "20",
         "--duration", "3", "--echo-clients", "10", "--echo-seconds", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for label in ("call setups/s", "request->offer", "KB per client", "echo saturated"):
        assert label in proc.stdout

    figures = json.loads(out.read_text())
    assert figures["connect"] == {**figures["connect"], "agents": 5, "customers": 20,
                                  "errors": []}
    load = figures["load"]
    assert load["setups_total"] > 0
    assert load["calls_ended"] > 0
    assert load["request_to_offer_ms"]["n"] > 0
    assert figures["memory"]["clients"] == 25
    assert figures["echo"]["open"]["answered"] > 0
    assert figures["echo"]["closed"]["echoes_per_s"] > 0
