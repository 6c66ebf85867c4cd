"""Presentation-attack detection in a live call: a face on a screen, re-filmed, that
performs the prompted action on time is refused, with the PAD verdict and its evidence
on the timeline. The attack clip is generated from the shared data at test time."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Hub
from tests.test_hub_vision import answered_call, find_files, no_auto_checks, timeline, video_arrived

pytestmark = [pytest.mark.integration, pytest.mark.vision]

#: ScreenParams.draw(6): a bezel, strong moiré, no glare.
SCREEN_SEED = 6


@pytest.fixture(scope="session")
def screen_mouth_clip(faces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from cloudcounter.media.sources import prepare_vp8_webm
    from cloudcounter.vision.attacks import render_clip

    directory = tmp_path_factory.mktemp("attacks")
    raw = render_clip(faces / "video/mouth_open.mp4", directory / "raw.webm", "screen",
                      SCREEN_SEED)
    return prepare_vp8_webm(raw, directory / "screen.webm", size=(480, 480), gop=30)


async def test_a_face_on_a_screen_doing_the_prompted_action_is_refused(
        hub_factory: Any, screen_mouth_clip: Path) -> None:
    # A recording: the onset window spans the clip's longest gap between openings (5.5 s).
    hub: Hub = await hub_factory(vision_liveness_window_s=8.0, vision_liveness_onset_s=6.0)
    no_auto_checks(hub, "card_loss")
    hub.ctx.analysis.rng = random.Random(1)  # test seam: the challenge is open_mouth
    rig = await answered_call(hub, "card_loss", screen_mouth_clip)
    await video_arrived(hub, rig.call_id)
    ack = await rig.agent.conn.call("check:liveness", {"call_id": rig.call_id, "count": 1})
    assert ack["ok"] and ack["challenges"] == ["open_mouth"], ack
    result = await rig.agent.wait("check:result", check_id=ack["check_id"], timeout=20)
    details = result["details"]
    assert result["verdict"] == "fail", details
    # The replayed mouth opens within the window, so the challenge itself normally passes
    # and PAD is what refuses; on a starved machine frames are dropped and the challenge
    # may time out first. Either way the PAD verdict and its evidence must be there.
    if details["challenge_verdict"] == "pass":
        assert details["reason"] == "presentation_attack", details
    pad = details["pad"]
    assert pad["verdict"] == "attack" and "bezel_or_edge" in pad["cues"], pad
    assert pad["scores"]["bezel_or_edge"] >= 0.5
    assert pad["evidence_url"].endswith(f"{ack['check_id']}-pad.jpg")
    status, body, _ = await hub.get(pad["evidence_url"], user="alice")
    assert status == 200 and body[:2] == b"\xff\xd8"
    assert (await rig.customer.wait("liveness:done"))["verdict"] == "fail"
    await rig.close()
    events = await timeline(hub, rig.call_id)
    (pad_event,) = [e for e in events if e["kind"] == "check.pad"]
    assert pad_event["actor"] == "system"
    assert pad_event["payload"]["check_id"] == ack["check_id"]
    assert pad_event["payload"]["verdict"] == "attack"
    assert await find_files(hub, pad_event["payload"]["evidence"])
    (res,) = [e["payload"] for e in events if e["kind"] == "check.result"]
    assert res["verdict"] == "fail" and res["details"]["pad"]["verdict"] == "attack"
