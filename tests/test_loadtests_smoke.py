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


@pytest.mark.integration
def test_bench_signaling_counts_redis_commands_per_call(tmp_path: Path) -> None:
    """With ``--socketio-manager redis`` the hub's emits cross a private redis-server and the
    benchmark reports what a call costs there (commands, PUBLISH, bytes)."""
    import shutil

    from tests.conftest import CI
    if shutil.which("redis-server") is None:
        if CI:
            pytest.fail("CI=true and redis-server is not installed")
        pytest.skip("redis-server is not installed")
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--customers", "10", "--agents", "3", "--rate", "10",
         "--duration", "2", "--echo-clients", "5", "--echo-seconds", "1",
         "--socketio-manager", "redis", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "REDIS (emits across nodes)" in proc.stdout
    figures = json.loads(out.read_text())
    redis = figures["redis"]
    assert redis["calls"] == figures["load"]["setups_total"] > 0
    # every call's events (offer, accepted, ended, agent state...) were published
    assert redis["commands"]["publish"] >= redis["calls"]
    assert redis["publish_per_call"] >= 1 and redis["bytes_out_per_call"] > 0
