"""SDP offers are checked before aiortc sees them (issue 13): 100+ malformed offers each
get ``invalid_offer`` (or ``unsupported_codec``), never ``internal_error`` and never a
traceback; an offer without a DTLS fingerprint is refused."""

from __future__ import annotations

import logging
import re

import pytest

from cloudcounter.media.call import check_offer
from cloudcounter.media.errors import InvalidOffer, UnsupportedCodec
from tests.conftest import Hub

# An offer as aiortc 1.16 writes it (audio and video, host candidates on loopback).
OFFER = "\r\n".join([
    "v=0",
    "o=- 4004968986 4004968986 IN IP4 0.0.0.0",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=msid-semantic:WMS *",
    "m=audio 51648 UDP/TLS/RTP/SAVPF 96 9 0 8",
    "c=IN IP4 127.0.0.1",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=mid:0",
    "a=msid:8b1519c2-dc37-4878-a742-fe54c2e49cc5 ae0e78db-31ba-43d2-8521-9a3ce6572cd7",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=ssrc:3732854649 cname:7c574afc-18e5-46a8-948e-574280f5b35d",
    "a=rtpmap:96 opus/48000/2",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=candidate:16572de626da4e5384a0ce2d0d93678a 1 udp 2130706431 127.0.0.1 51648 typ host",
    "a=end-of-candidates",
    "a=ice-ufrag:89Eq",
    "a=ice-pwd:fWNWYQy5a4qndHDz75TA14",
    "a=fingerprint:sha-256 D7:A7:51:14:F9:4E:6F:EA:82:D0:C2:36:E4:EF:A4:7C:5C:94:89:D9:FB:50:"
    "CA:07:2A:1C:C1:CC:5D:8A:43:3B",
    "a=setup:actpass",
    "m=video 47788 UDP/TLS/RTP/SAVPF 97 98",
    "c=IN IP4 127.0.0.1",
    "a=sendrecv",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=mid:1",
    "a=msid:8b1519c2-dc37-4878-a742-fe54c2e49cc5 6b703227-b537-4023-8884-be7c7c21e3db",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=rtcp-mux",
    "a=ssrc-group:FID 2031009659 3768909251",
    "a=ssrc:2031009659 cname:7c574afc-18e5-46a8-948e-574280f5b35d",
    "a=ssrc:3768909251 cname:7c574afc-18e5-46a8-948e-574280f5b35d",
    "a=rtpmap:97 VP8/90000",
    "a=rtcp-fb:97 nack",
    "a=rtcp-fb:97 nack pli",
    "a=rtcp-fb:97 goog-remb",
    "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=97",
    "a=candidate:16572de626da4e5384a0ce2d0d93678a 1 udp 2130706431 127.0.0.1 47788 typ host",
    "a=end-of-candidates",
    "a=ice-ufrag:89Eq",
    "a=ice-pwd:fWNWYQy5a4qndHDz75TA14",
    "a=fingerprint:sha-256 D7:A7:51:14:F9:4E:6F:EA:82:D0:C2:36:E4:EF:A4:7C:5C:94:89:D9:FB:50:"
    "CA:07:2A:1C:C1:CC:5D:8A:43:3B",
    "a=setup:actpass",
]) + "\r\n"
CANDIDATE = OFFER.split("\r\n")[19][len("a=candidate:"):]


def edit(pattern: str, new: str | None, count: int = 0) -> str:
    """The offer with lines matching ``pattern`` replaced by ``new`` (None: removed)."""
    out, n = [], 0
    for line in OFFER.split("\r\n"):
        if re.match(pattern, line) and (count == 0 or n < count):
            n += 1
            if new is not None:
                out.append(new)
        else:
            out.append(line)
    assert n, pattern
    return "\r\n".join(out)


def candidate(*fields: str) -> str:
    return edit(r"a=candidate", "a=candidate:" + " ".join(fields))


def malformed() -> list[tuple[str, str]]:
    c = CANDIDATE.split(" ")
    cases = [
        ("no DTLS fingerprint", edit(r"a=fingerprint", None)),
        ("no fingerprint in video", OFFER[::-1].replace(
            OFFER.split("\r\n")[23][::-1] + "\n\r", "", 1)[::-1]),
        ("no ice-ufrag", edit(r"a=ice-ufrag", None)),
        ("no ice-pwd", edit(r"a=ice-pwd", None)),
        ("no mid", edit(r"a=mid", None)),
        ("v=1", edit(r"v=0", "v=1")),
        ("no v=", OFFER[5:]),
        ("no o=", edit(r"o=", None)),
        ("no s=", edit(r"s=", None)),
        ("no t=", edit(r"t=", None)),
        ("o= five fields", edit(r"o=", "o=- 1 1 IN IP4")),
        ("o= id letters", edit(r"o=", "o=- abc 1 IN IP4 0.0.0.0")),
        ("o= network", edit(r"o=", "o=- 1 1 XX IP4 0.0.0.0")),
        ("o= address type", edit(r"o=", "o=- 1 1 IN IP5 0.0.0.0")),
        ("o= twice", edit(r"s=", "o=- 1 1 IN IP4 0.0.0.0")),
        ("t= letters", edit(r"t=", "t=now never")),
        ("t= one field", edit(r"t=", "t=0")),
        ("m= unknown media", edit(r"m=audio", "m=hologram 9 UDP/TLS/RTP/SAVPF 96")),
        ("m= port letters", edit(r"m=audio", "m=audio port UDP/TLS/RTP/SAVPF 96 9 0 8")),
        ("m= port too big", edit(r"m=audio", "m=audio 70000 UDP/TLS/RTP/SAVPF 96 9 0 8")),
        ("m= no formats", edit(r"m=audio", "m=audio 9 UDP/TLS/RTP/SAVPF")),
        ("m= payload type 300", edit(r"m=audio", "m=audio 9 UDP/TLS/RTP/SAVPF 300")),
        ("m= payload type letters", edit(r"m=audio", "m=audio 9 UDP/TLS/RTP/SAVPF opus")),
        ("m= bad protocol", edit(r"m=audio", "m=audio 9 udp/tls 96 9 0 8")),
        ("m= negative port", edit(r"m=audio", "m=audio -1 UDP/TLS/RTP/SAVPF 96 9 0 8")),
        ("c= bad address", edit(r"c=", "c=IN IP4 999.1.1.1", 1)),
        ("c= address letters", edit(r"c=", "c=IN IP4 localhost", 1)),
        ("c= IP9", edit(r"c=", "c=IN IP9 127.0.0.1", 1)),
        ("c= two fields", edit(r"c=", "c=IN 127.0.0.1", 1)),
        ("b= not a number", edit(r"c=", "b=AS:lots", 1)),
        ("rtpmap without clock", edit(r"a=rtpmap:96", "a=rtpmap:96 opus")),
        ("rtpmap clock letters", edit(r"a=rtpmap:96", "a=rtpmap:96 opus/fast/2")),
        ("rtpmap clock zero", edit(r"a=rtpmap:96", "a=rtpmap:96 opus/0/2")),
        ("rtpmap payload type 200", edit(r"a=rtpmap:96", "a=rtpmap:200 opus/48000/2")),
        ("rtpmap payload type letters", edit(r"a=rtpmap:96", "a=rtpmap:x opus/48000/2")),
        ("rtpmap for a type not offered", edit(r"a=rtpmap:9 ", "a=rtpmap:111 G722/8000")),
        ("rtpmap 99 channels", edit(r"a=rtpmap:96", "a=rtpmap:96 opus/48000/99")),
        ("rtpmap empty", edit(r"a=rtpmap:96", "a=rtpmap:")),
        ("rtpmap missing for opus", edit(r"a=rtpmap:96", None)),
        ("rtpmap missing for vp8", edit(r"a=rtpmap:97", None)),
        ("rtpmap name with spaces", edit(r"a=rtpmap:96", "a=rtpmap:96 op us/48000/2")),
        ("fmtp payload type letters", edit(r"a=fmtp:98", "a=fmtp:rtx apt=97")),
        ("fmtp apt letters", edit(r"a=fmtp:98", "a=fmtp:98 apt=vp8")),
        ("fmtp apt 999", edit(r"a=fmtp:98", "a=fmtp:98 apt=999")),
        ("rtcp-fb payload type letters", edit(r"a=rtcp-fb:97 nack$", "a=rtcp-fb:vp8 nack")),
        ("rtcp-fb without type", edit(r"a=rtcp-fb:97 nack$", "a=rtcp-fb:97")),
        ("candidate five fields", candidate(*c[:5])),
        ("candidate bad address", candidate(*c[:4], "300.0.0.1", *c[5:])),
        ("candidate address letters", candidate(*c[:4], "not-an-address", *c[5:])),
        ("candidate port letters", candidate(*c[:5], "port", *c[6:])),
        ("candidate port too big", candidate(*c[:5], "99999", *c[6:])),
        ("candidate without typ", candidate(*c[:6], "kind", *c[7:])),
        ("candidate unknown type", candidate(*c[:7], "wormhole")),
        ("candidate component 0", candidate(c[0], "0", *c[2:])),
        ("candidate priority huge", candidate(*c[:3], "99999999999", *c[4:])),
        ("candidate transport sctp", candidate(c[0], c[1], "sctp", *c[3:])),
        ("candidate odd extension", candidate(*c, "generation")),
        ("candidate bad raddr", candidate(*c, "raddr", "x.y", "rport", "9")),
        ("candidate bad rport", candidate(*c, "raddr", "127.0.0.1", "rport", "x")),
        ("candidate bad foundation", candidate("fo:und", *c[1:])),
        ("candidate empty", candidate("")),
        ("fingerprint unknown hash", edit(r"a=fingerprint", "a=fingerprint:md5 D7:A7")),
        ("fingerprint too short", edit(r"a=fingerprint", "a=fingerprint:sha-256 D7:A7:51")),
        ("fingerprint not hex", edit(r"a=fingerprint", "a=fingerprint:sha-256 " +
                                     ":".join(["ZZ"] * 32))),
        ("fingerprint empty", edit(r"a=fingerprint", "a=fingerprint:")),
        ("fingerprint no digest", edit(r"a=fingerprint", "a=fingerprint:sha-256")),
        ("setup bogus", edit(r"a=setup", "a=setup:maybe")),
        ("setup holdconn", edit(r"a=setup", "a=setup:holdconn")),
        ("setup empty", edit(r"a=setup", "a=setup:")),
        ("ice-ufrag too short", edit(r"a=ice-ufrag", "a=ice-ufrag:ab")),
        ("ice-ufrag bad characters", edit(r"a=ice-ufrag", "a=ice-ufrag:ab$%^&*")),
        ("ice-pwd too short", edit(r"a=ice-pwd", "a=ice-pwd:short")),
        ("ice-pwd bad characters", edit(r"a=ice-pwd", "a=ice-pwd:" + "!" * 24)),
        ("mid too long", edit(r"a=mid:0", "a=mid:" + "m" * 40)),
        ("mid with space", edit(r"a=mid:0", "a=mid:a b")),
        ("duplicate mid", edit(r"a=mid:1", "a=mid:0")),
        ("group names an unknown mid", edit(r"a=group", "a=group:BUNDLE 0 7")),
        ("group not BUNDLE", edit(r"a=group", "a=group:LS 0 1")),
        ("mid at session level", edit(r"a=msid-semantic", "a=mid:9")),
        ("ssrc letters", edit(r"a=ssrc:3732854649", "a=ssrc:abc cname:x")),
        ("ssrc too big", edit(r"a=ssrc:3732854649", "a=ssrc:99999999999 cname:x")),
        ("ssrc without attribute", edit(r"a=ssrc:3732854649", "a=ssrc:3732854649")),
        ("ssrc-group letters", edit(r"a=ssrc-group", "a=ssrc-group:FID a b")),
        ("ssrc-group empty", edit(r"a=ssrc-group", "a=ssrc-group:FID")),
        ("extmap id 0", edit(r"a=extmap", "a=extmap:0 urn:x", 1)),
        ("extmap id letters", edit(r"a=extmap", "a=extmap:x urn:x", 1)),
        ("extmap without uri", edit(r"a=extmap", "a=extmap:1", 1)),
        ("rtcp port letters", edit(r"a=rtcp:", "a=rtcp:x IN IP4 0.0.0.0", 1)),
        ("rtcp bad address", edit(r"a=rtcp:", "a=rtcp:9 IN IP4 nowhere", 1)),
        ("msid three parts", edit(r"a=msid:", "a=msid:a b c", 1)),
        ("line without =", edit(r"a=sendrecv", "a sendrecv", 1)),
        ("upper-case key", edit(r"a=sendrecv", "A=sendrecv", 1)),
        ("non-ASCII text", edit(r"s=", "s=caf\u00e9")),
        ("tab in a line", edit(r"a=sendrecv", "a=send\trecv", 1)),
        ("bad attribute name", edit(r"a=sendrecv", "a=se(nd)recv", 1)),
        ("empty attribute value", edit(r"a=rtcp-mux", "a=rtcp-mux:", 1)),
        ("nine media sections", OFFER + "".join(
            f"m=application {9 + i} UDP/DTLS/SCTP webrtc-datachannel\r\n" for i in range(8))),
        ("too many lines", OFFER + "a=x-padding\r\n" * 600),
        ("only v=0", "v=0\r\n"),
        ("no media section", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"),
        ("JSON, not SDP", '{"type": "offer", "sdp": "v=0"}'),
        ("application only", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
         "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"),
        ("audio without opus", edit(r"m=audio", "m=audio 9 UDP/TLS/RTP/SAVPF 9 0 8").replace(
            "a=rtpmap:96 opus/48000/2\r\n", "")),
        ("video without vp8", edit(r"a=rtpmap:97", "a=rtpmap:97 H264/90000")),
    ]
    cases += [(f"cut at {p}%", OFFER[: len(OFFER) * p // 100]) for p in range(5, 100, 10)]
    return cases


MALFORMED = malformed()


def test_the_reference_offer_is_valid() -> None:
    assert check_offer(OFFER) == {"audio", "video"}


def test_there_are_at_least_96_malformed_offers() -> None:
    assert len(MALFORMED) >= 96 and len({s for _, s in MALFORMED}) == len(MALFORMED)


@pytest.mark.parametrize("name,sdp", MALFORMED, ids=[n for n, _ in MALFORMED])
def test_each_malformed_offer_is_refused_with_a_code(name: str, sdp: str) -> None:
    with pytest.raises((InvalidOffer, UnsupportedCodec)) as info:
        check_offer(sdp)
    assert info.value.code in ("invalid_offer", "unsupported_codec")
    if "fingerprint" in name:
        assert info.value.code == "invalid_offer"


def test_mutations_of_every_line_never_escape_as_other_errors() -> None:
    """Each line deleted, emptied, cut in half or doubled: the check accepts it or says
    invalid_offer / unsupported_codec, nothing else."""
    lines = OFFER.split("\r\n")
    accepted = 0
    for i in range(len(lines)):
        for variant in (None, lines[i][:2], lines[i][: len(lines[i]) // 2],
                        lines[i] + lines[i][2:]):
            mutated = lines[:i] + ([variant] if variant is not None else []) + lines[i + 1:]
            try:
                check_offer("\r\n".join(mutated))
                accepted += 1
            except (InvalidOffer, UnsupportedCodec):
                pass
    assert accepted > 0  # some lines are optional


@pytest.mark.integration
async def test_malformed_offers_through_the_hub_get_invalid_offer(
        hub: Hub, caplog: pytest.LogCaptureFixture) -> None:
    from tests.test_hub_media import answered_call

    agent, cust, call_id = await answered_call(hub)
    caplog.set_level(logging.DEBUG, logger="cloudcounter")
    codes: dict[str, str] = {}
    for name, sdp in MALFORMED:
        reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer",
                                                "sdp": sdp})
        assert reply["ok"] is False, name
        codes[name] = reply["error"]["code"]
    assert set(codes.values()) <= {"invalid_offer", "unsupported_codec", "invalid_message"}, codes
    assert codes["no DTLS fingerprint"] == "invalid_offer"
    assert "internal_error" not in codes.values()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text[-2000:]
    # the call goes on: a real offer is still answered
    reply = await cust.call("media:offer", {"call_id": call_id, "type": "offer", "sdp": OFFER})
    assert reply["ok"] and reply["sdp"].startswith("v=0")
    assert (await agent.call("call:hangup", {"call_id": call_id}))["ok"]
    for c in (agent, cust):
        await c.close()
