from cloudcounter.media.keyframes import KeyframeGate, KeyframeThrottle


def test_throttle_lets_one_request_per_interval() -> None:
    throttle = KeyframeThrottle(interval_s=0.5)
    assert throttle.allow(10.0)
    assert not throttle.allow(10.2)
    assert not throttle.allow(10.49)
    assert throttle.allow(10.5)
    assert (throttle.sent, throttle.suppressed) == (2, 2)


def test_gate_drops_deltas_until_a_keyframe() -> None:
    gate = KeyframeGate()
    assert not gate.admit(False)
    assert gate.admit(True)
    assert gate.admit(False)
    gate.reset()
    assert not gate.admit(False)
    assert gate.dropped == 2
