"""A strict check of an SDP offer before aiortc parses it.

aiortc's parser trusts its input (a malformed line raises ``ValueError``, ``KeyError`` or
``IndexError`` from deep inside, some only once the answer is being built) and answers an
offer that carries no DTLS fingerprint. :func:`validate_offer` refuses, with a short
reason, anything that is not a well-formed WebRTC offer in the shape the hub negotiates:

* printable ASCII lines ``<letter>=<value>``, ``v=0`` first, then ``o=``, ``s=``, ``t=``;
  at most :data:`MAX_LINES` lines and :data:`MAX_MEDIA` media sections;
* media lines ``m=<audio|video|application> <port> <proto> <formats>`` (RTP payload types
  0-127 for RTP profiles), connection lines ``c=IN IP4|IP6 <address>``;
* the attributes aiortc reads, each in its grammar: ``rtpmap``, ``fmtp``, ``rtcp-fb``,
  ``candidate``, ``fingerprint`` (a known hash with the right number of bytes),
  ``setup``, ``ice-ufrag``, ``ice-pwd``, ``mid``, ``group``, ``ssrc``, ``ssrc-group``,
  ``extmap``, ``rtcp``, ``msid``; others only need a token name and printable text;
* every active media section has ICE credentials, a DTLS fingerprint (its own or the
  session's) and an rtpmap for each of its payload types above 95; BUNDLE names
  existing mids.

Pure and fast (no aiortc): it runs on every ``media:offer``.
"""

from __future__ import annotations

import ipaddress
import re

from cloudcounter.media.errors import InvalidOffer

MAX_LINES = 600
MAX_MEDIA = 8
MEDIA_KINDS = frozenset({"audio", "video", "application"})
HASH_BYTES = {"sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64}
SETUP = frozenset({"actpass", "active", "passive"})
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})
LINE = re.compile(r"[a-z]=[\x20-\x7e]*")
TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`{|}~-]{1,64}")
ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
MID = re.compile(r"[A-Za-z0-9_.~-]{1,32}")
HOSTNAME = re.compile(r"[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*\.local")
FINGERPRINT = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})*")
ENCODING = re.compile(r"([A-Za-z0-9._-]{1,32})/(\d{1,7})(/(\d{1,2}))?")


def _int(text: str, lo: int, hi: int, what: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise InvalidOffer(f"{what}: not a number")
    value = int(text)
    if not lo <= value <= hi:
        raise InvalidOffer(f"{what}: {value} is out of range")
    return value


def _address(text: str, what: str, hostnames: bool = False) -> None:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not (hostnames and HOSTNAME.fullmatch(text)):
            raise InvalidOffer(f"{what}: not an address") from None


class _Media:
    def __init__(self, kind: str, port: int, proto: str, formats: list[str]) -> None:
        self.kind, self.port, self.proto, self.formats = kind, port, proto, formats
        self.rtpmap: set[int] = set()
        self.fingerprint = False
        self.ufrag = False
        self.pwd = False
        self.mid: str | None = None


class Offer:
    """What :func:`parse_offer` found (enough for :func:`check_complete`)."""

    def __init__(self, session: _Media, media: list[_Media]) -> None:
        self.session, self.media = session, media


def validate_offer(sdp: str) -> None:
    """Raise :class:`InvalidOffer` (code ``invalid_offer``) with the first problem found."""
    check_complete(parse_offer(sdp))


def parse_offer(sdp: str) -> Offer:
    """Check every line's grammar; raise :class:`InvalidOffer` with the first problem."""
    if not isinstance(sdp, str) or not sdp.startswith("v="):
        raise InvalidOffer("an SDP offer starts with v=0")
    lines = sdp.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) > MAX_LINES:
        raise InvalidOffer(f"the offer has more than {MAX_LINES} lines")
    if lines[0] != "v=0":
        raise InvalidOffer("only SDP version 0 (v=0)")
    session = _Media("session", 0, "", [])
    media: list[_Media] = []
    groups: list[list[str]] = []
    seen = {"o": False, "s": False, "t": False}
    for number, line in enumerate(lines[1:], start=2):
        if not LINE.fullmatch(line):
            raise InvalidOffer(f"line {number} is not <letter>=<printable text>")
        key, value = line[0], line[2:]
        current = media[-1] if media else session
        try:
            if key == "m":
                media.append(_media_line(value))
                if len(media) > MAX_MEDIA:
                    raise InvalidOffer(f"at most {MAX_MEDIA} media sections")
            elif key in seen and not media:
                if seen[key]:
                    raise InvalidOffer(f"{key}= appears twice")
                seen[key] = True
                _session_line(key, value)
            elif key == "c":
                _connection(value)
            elif key == "b":
                name, _, bw = value.partition(":")
                if not TOKEN.fullmatch(name):
                    raise InvalidOffer("b=: bad bandwidth type")
                _int(bw, 0, 10**9, "b=")
            elif key == "a":
                _attribute(value, current, groups)
            elif key in "vost":
                raise InvalidOffer(f"{key}= in a media section")
        except InvalidOffer as exc:
            raise InvalidOffer(f"line {number}: {exc.message}") from None
    missing = [k for k, v in seen.items() if not v]
    if missing:
        raise InvalidOffer(f"the offer lacks {', '.join(k + '=' for k in missing)}")
    if not media:
        raise InvalidOffer("the offer has no media section")
    mids = {m.mid for m in media if m.mid is not None}
    for group in groups:
        unknown = [g for g in group if g not in mids]
        if unknown:
            raise InvalidOffer(f"a=group names unknown mids: {', '.join(unknown[:3])}")
    if len(mids) != len([m for m in media if m.mid is not None]):
        raise InvalidOffer("two media sections share a mid")
    return Offer(session, media)


def check_complete(offer: Offer) -> None:
    """Every active audio or video section can be answered securely: a mid, a DTLS
    fingerprint, ICE credentials, an rtpmap for each dynamic payload type."""
    session = offer.session
    for i, m in enumerate(offer.media, start=1):
        if m.port == 0 or m.kind not in ("audio", "video"):
            continue
        where = f"media section {i} ({m.kind})"
        if m.mid is None:
            raise InvalidOffer(f"{where} has no a=mid")
        if not (m.fingerprint or session.fingerprint):
            raise InvalidOffer(f"{where} has no DTLS fingerprint (a=fingerprint)")
        if not ((m.ufrag or session.ufrag) and (m.pwd or session.pwd)):
            raise InvalidOffer(f"{where} has no ICE credentials (a=ice-ufrag, a=ice-pwd)")
        dynamic = {int(f) for f in m.formats if int(f) >= 96}
        if dynamic - m.rtpmap:
            raise InvalidOffer(f"{where}: payload type(s) "
                               f"{sorted(dynamic - m.rtpmap)[:3]} have no a=rtpmap")


def _session_line(key: str, value: str) -> None:
    if key == "o":
        parts = value.split(" ")
        if len(parts) != 6:
            raise InvalidOffer("o= has six fields")
        _int(parts[1], 0, 2**64 - 1, "o= session id")
        _int(parts[2], 0, 2**64 - 1, "o= session version")
        if parts[3] != "IN" or parts[4] not in ("IP4", "IP6"):
            raise InvalidOffer("o= network is IN IP4 or IN IP6")
    elif key == "t":
        parts = value.split(" ")
        if len(parts) != 2:
            raise InvalidOffer("t= has two fields")
        for p in parts:
            _int(p, 0, 2**64 - 1, "t=")


def _media_line(value: str) -> _Media:
    parts = value.split(" ")
    if len(parts) < 4:
        raise InvalidOffer("m= has <media> <port> <proto> <formats>")
    kind, port, proto, formats = parts[0], parts[1], parts[2], parts[3:]
    if kind not in MEDIA_KINDS:
        raise InvalidOffer(f"m=: unknown media {kind[:16]!r}")
    port_number = _int(port.split("/")[0], 0, 65535, "m= port")
    if not re.fullmatch(r"[A-Z]{2,8}(/[A-Z]{2,8}){0,4}", proto):
        raise InvalidOffer("m=: bad protocol")
    if "RTP" in proto.split("/"):
        if len(formats) > 64:
            raise InvalidOffer("m=: too many formats")
        for f in formats:
            _int(f, 0, 127, "m= payload type")
    elif not all(TOKEN.fullmatch(f) for f in formats):
        raise InvalidOffer("m=: bad format")
    return _Media(kind, port_number, proto, formats)


def _connection(value: str) -> None:
    parts = value.split(" ")
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise InvalidOffer("c= is IN IP4|IP6 <address>")
    _address(parts[2].split("/")[0], "c=")


def _attribute(value: str, m: _Media, groups: list[list[str]]) -> None:
    name, sep, rest = value.partition(":")
    if not TOKEN.fullmatch(name):
        raise InvalidOffer("a=: bad attribute name")
    if name == "rtpmap":
        pt, _, enc = rest.partition(" ")
        number = _int(pt, 0, 127, "a=rtpmap payload type")
        if str(number) not in m.formats and pt not in m.formats:
            raise InvalidOffer("a=rtpmap for a payload type not in m=")
        em = ENCODING.fullmatch(enc)
        if em is None:
            raise InvalidOffer("a=rtpmap is <pt> <name>/<clock rate>[/<channels>]")
        _int(em.group(2), 1, 10**6, "a=rtpmap clock rate")
        if em.group(4) is not None:
            _int(em.group(4), 1, 8, "a=rtpmap channels")
        m.rtpmap.add(number)
    elif name == "fmtp":
        pt, _, params = rest.partition(" ")
        _int(pt, 0, 127, "a=fmtp payload type")
        for param in params.split(";"):
            if param.strip() and "=" in param:
                k, _, v = param.strip().partition("=")
                if not TOKEN.fullmatch(k):
                    raise InvalidOffer("a=fmtp: bad parameter")
                if k == "apt":
                    _int(v, 0, 127, "a=fmtp apt")
    elif name == "rtcp-fb":
        parts = rest.split(" ")
        if len(parts) < 2 or not (parts[0] == "*" or parts[0].isdigit()):
            raise InvalidOffer("a=rtcp-fb is <pt> <type> [<subtype>]")
        if parts[0] != "*":
            _int(parts[0], 0, 127, "a=rtcp-fb payload type")
        if not all(TOKEN.fullmatch(p) for p in parts[1:]):
            raise InvalidOffer("a=rtcp-fb: bad type")
    elif name == "candidate":
        _candidate(rest)
    elif name == "fingerprint":
        algorithm, _, digest = rest.partition(" ")
        size = HASH_BYTES.get(algorithm.lower())
        if size is None:
            raise InvalidOffer("a=fingerprint: unknown hash")
        if not FINGERPRINT.fullmatch(digest) or len(digest.split(":")) != size:
            raise InvalidOffer(f"a=fingerprint: {algorithm} has {size} bytes in hex")
        m.fingerprint = True
    elif name == "setup":
        if rest not in SETUP:
            raise InvalidOffer("a=setup is actpass, active or passive")
    elif name == "ice-ufrag":
        if not (4 <= len(rest) <= 256 and ICE_CHARS.fullmatch(rest)):
            raise InvalidOffer("a=ice-ufrag: 4-256 ICE characters")
        m.ufrag = True
    elif name == "ice-pwd":
        if not (22 <= len(rest) <= 256 and ICE_CHARS.fullmatch(rest)):
            raise InvalidOffer("a=ice-pwd: 22-256 ICE characters")
        m.pwd = True
    elif name == "mid":
        if not MID.fullmatch(rest) or m.kind == "session":
            raise InvalidOffer("a=mid: a short token in a media section")
        m.mid = rest
    elif name == "group":
        parts = rest.split(" ")
        if parts[0] != "BUNDLE" or not all(MID.fullmatch(p) for p in parts[1:]):
            raise InvalidOffer("a=group:BUNDLE <mid> ...")
        groups.append(parts[1:])
    elif name == "ssrc":
        ssrc, _, attr = rest.partition(" ")
        _int(ssrc, 0, 2**32 - 1, "a=ssrc")
        if not attr or not TOKEN.fullmatch(attr.partition(":")[0]):
            raise InvalidOffer("a=ssrc is <ssrc> <attribute>[:<value>]")
    elif name == "ssrc-group":
        parts = rest.split(" ")
        if len(parts) < 2 or not TOKEN.fullmatch(parts[0]):
            raise InvalidOffer("a=ssrc-group is <semantics> <ssrc> ...")
        for p in parts[1:]:
            _int(p, 0, 2**32 - 1, "a=ssrc-group")
    elif name == "extmap":
        ident, _, uri = rest.partition(" ")
        _int(ident.split("/")[0], 1, 255, "a=extmap id")
        if not uri.strip():
            raise InvalidOffer("a=extmap is <id> <uri>")
    elif name == "rtcp":
        parts = rest.split(" ")
        _int(parts[0], 0, 65535, "a=rtcp port")
        if len(parts) > 1:
            _connection(" ".join(parts[1:]))
    elif name == "msid":
        if not rest or len(rest.split(" ")) > 2:
            raise InvalidOffer("a=msid is <stream> [<track>]")
    elif sep and not rest:
        raise InvalidOffer(f"a={name}: empty value")


def _candidate(value: str) -> None:
    parts = value.split(" ")
    if len(parts) < 8 or parts[6] != "typ":
        raise InvalidOffer("a=candidate is <foundation> <component> <transport> <priority> "
                           "<address> <port> typ <type> ...")
    foundation, component, transport, priority, address, port = parts[:6]
    if not re.fullmatch(r"[A-Za-z0-9+/]{1,64}", foundation):
        raise InvalidOffer("a=candidate: bad foundation")
    _int(component, 1, 256, "a=candidate component")
    if transport.lower() not in ("udp", "tcp"):
        raise InvalidOffer("a=candidate: transport is udp or tcp")
    _int(priority, 0, 2**32 - 1, "a=candidate priority")
    _address(address, "a=candidate address", hostnames=True)
    _int(port, 0, 65535, "a=candidate port")
    if parts[7] not in CANDIDATE_TYPES:
        raise InvalidOffer("a=candidate: unknown type")
    extra = parts[8:]
    if len(extra) % 2:
        raise InvalidOffer("a=candidate: extensions come in name-value pairs")
    for k, v in zip(extra[::2], extra[1::2]):
        if not TOKEN.fullmatch(k) or not v:
            raise InvalidOffer("a=candidate: bad extension")
        if k == "raddr":
            _address(v, "a=candidate raddr", hostnames=True)
        elif k == "rport":
            _int(v, 0, 65535, "a=candidate rport")
