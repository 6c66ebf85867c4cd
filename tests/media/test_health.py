"""Media health: when a participant's media is stalled, what the hub does (pure rules)."""

from __future__ import annotations

from cloudcounter.media.health import FlowState, FlowWatch, HealthConfig, LegFlow, assess

CFG = HealthConfig(keyframe_after_s=1.5, stall_after_s=5.0, start_timeout_s=10.0,
                   restart_every_s=10.0, max_restarts=2)


def flow(answered: float = 0.0, video: float | None = None, packet: float | None = None,
         expects_video: bool = True) -> LegFlow:
    return LegFlow(answered_at=answered, expects_video=expects_video,
                   last_packet_at=packet if packet is not None else video, last_video_at=video)


def test_a_flowing_leg_needs_nothing() -> None:
    w = FlowWatch()
    v = assess(w, flow(video=0.5), 1.0, CFG)
    assert v.state is FlowState.FLOWING and not (v.changed or v.restart or v.request_keyframe)


def test_a_leg_that_never_starts_is_stalled_after_the_start_timeout() -> None:
    w = FlowWatch()
    verdicts = [assess(w, flow(), t, CFG) for t in (1.0, 2.0, 9.9)]
    assert all(v.state is FlowState.STARTING and not v.changed for v in verdicts)
    assert [v.request_keyframe for v in verdicts] == [False, True, True]
    v = assess(w, flow(), 10.0, CFG)
    assert v.state is FlowState.STALLED and v.changed and v.restart and w.restarts == 1


def test_video_that_stops_asks_for_a_key_frame_then_a_restart_then_says_so() -> None:
    w = FlowWatch()
    assess(w, flow(video=1.0), 1.0, CFG)
    v = assess(w, flow(video=1.0), 2.6, CFG)  # 1.6 s without video
    assert v.request_keyframe and not v.changed
    assert not assess(w, flow(video=1.0), 3.0, CFG).request_keyframe  # throttled
    v = assess(w, flow(video=1.0), 6.0, CFG)
    assert v.state is FlowState.STALLED and v.changed and v.restart
    v = assess(w, flow(video=1.0), 7.0, CFG)  # still stalled: told once
    assert not v.changed and not v.restart


def test_restarts_are_spaced_and_bounded() -> None:
    w = FlowWatch()
    times = [t / 2 for t in range(1, 100)]  # 50 s of a dead leg, twice a second
    restarts = [t for t in times if assess(w, flow(), t, CFG).restart]
    assert restarts == [10.0, 20.0]  # max_restarts, restart_every_s apart


def test_a_replaced_leg_restores_the_flow_and_resets_the_count() -> None:
    w = FlowWatch()
    assess(w, flow(video=1.0), 1.0, CFG)
    assert assess(w, flow(video=1.0), 6.5, CFG).restart
    # the participant re-offered at 7.0: a new leg, still stalled while it starts
    v = assess(w, flow(answered=7.0, video=1.0), 8.0, CFG)
    assert v.state is FlowState.STALLED and not v.changed and not v.restart
    v = assess(w, flow(answered=7.0, video=8.2), 8.5, CFG)
    assert v.state is FlowState.FLOWING and v.changed
    assert w.restarts == 0


def test_an_audio_only_leg_is_judged_by_its_packets() -> None:
    w = FlowWatch()
    v = assess(w, flow(packet=9.0, expects_video=False), 10.0, CFG)
    assert v.state is FlowState.FLOWING and not v.request_keyframe
    v = assess(w, flow(packet=9.0, expects_video=False), 15.0, CFG)
    assert v.state is FlowState.STALLED and v.restart and not v.request_keyframe
