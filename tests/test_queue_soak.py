"""The multi-process failure soak (loadtests/queue_soak.py): three node processes on one
PostgreSQL store, a node SIGKILLed every 20-35 s and restarted, the leader frozen once for
10 s; the verdicts are measured on what committed (the harness's history trigger), never
on timings. About 4-5 minutes; it makes and drops its own database."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.pglab import drop, unreachable

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.integration]
SOAK = ROOT / "loadtests" / "queue_soak.py"


def test_nodes_killed_and_frozen_keep_the_queue_consistent(tmp_path: Path) -> None:
    try:
        drop("cc_soak_probe")  # PostgreSQL reachable?
    except Exception as exc:  # noqa: BLE001 - not reachable, whatever the error
        unreachable(exc)
    name = "cc_soak_" + secrets.token_hex(4)
    out = tmp_path / "soak.json"
    log = tmp_path / "harness.log"
    with log.open("wb") as sink:
        # its own process group: the harness and every node it started go together
        proc = subprocess.Popen(
            [sys.executable, str(SOAK), "--offers", "5000", "--min-kills", "3",
             "--kill-every", "20", "35", "--stop-after", "40", "--stop-s", "10",
             "--db-name", name, "--logs", str(tmp_path / "nodes"), "--json", str(out),
             "--verbose"], cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT,
            start_new_session=True)
        try:
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            else:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # any node left behind
                except ProcessLookupError:
                    pass
            drop(name)
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    result = json.loads(out.read_text())
    v, f = result["verdicts"], result["figures"]
    print(text[-3000:])
    assert f["offers"] >= 5000 and f["kills"] >= 3 and f["freeze"] is not None, f
    assert v == {**v, "overlapping_agent_assignments": 0,
                 "assignments_not_linked_to_the_agent_row": 0,
                 "overlapping_open_calls_per_customer": 0, "calls_never_ended": 0,
                 "offers_committed_by_a_non_leader": 0, "order_unexplained_inversions": 0,
                 "second_open_call_committed": 0, "unexpected_exits": [],
                 "routing_resumed_after_each_leader_loss": True}, v
    assert f["lapses_failed_over"] >= f["kills"], f  # every dead node's lease was acted on
