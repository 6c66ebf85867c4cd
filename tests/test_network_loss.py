"""A call over a bad mobile link (5 % loss, 150 ms ± 30 ms delay, 600 kbps each way on the
customer's side), for real: ``loadtests/bench_network.py`` puts the customer's phone in a
network namespace behind a link emulator and prints its figures as JSON; this test runs
it and checks the verdicts with generous margins (the figures themselves are in
docs/media.md, "Loss and limits"). Slow tier: about a minute.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.netlab import require_netns

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_a_call_over_a_lossy_link_keeps_video_audio_and_a_decodable_recording() -> None:
    require_netns()
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("no /dev/net/tun: the link emulator needs TUN devices")
    run = subprocess.run(
        [sys.executable, str(ROOT / "loadtests/bench_network.py"), "--seconds", "20",
         "--json"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    f = json.loads(run.stdout.strip().splitlines()[-1])
    print(json.dumps(f, indent=1))
    # the link was as bad as asked: packets lost both ways, the cap held
    assert f["uplink_lost"] > 0 and f["downlink_lost"] > 0, f
    assert f["uplink_kbps"] <= 600 * 1.05, f
    # the agent still gets video: lost packets were asked again (NACK) and most came back
    assert f["agent_video_fps"] >= 8, f  # target 15 on a quiet machine; measured 19-30
    assert f["hub_video_packets_nacked"] > 0 and f["customer_retransmitted"] > 0, f
    assert f["hub_video_packets_recovered"] >= f["hub_video_packets_nacked"] * 0.5, f
    # the customer's encoder was told to send less than the link carries (REMB)
    assert 0 < f["customer_encoder_target_kbps"] < 600, f
    # audio goes on: no second without audio at the agent, and what the hub forwarded of
    # the customer's audio reached the agent (counted, not timed: a packet rate moves with
    # the machine's load; the rates are printed above)
    assert f["agent_audio_min_per_s"] > 0, f
    assert f["agent_audio_packets"] >= f["hub_forwarded_audio"] * 0.9 > 0, f
    # the recording decodes, every frame of it, and holds what the hub received
    rec = f["recording_frames"]
    assert rec["undecodable"] == 0, rec
    assert rec["video"] >= f["hub_received_video_frames"] * 0.95 and rec["audio"] > 0, (rec, f)
