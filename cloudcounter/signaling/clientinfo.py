"""Who is on the other end of a request: address, HTTPS or not, user agent.

Behind a reverse proxy the transport's peer is the proxy. Only a peer listed in
``CLOUDCOUNTER_TRUSTED_PROXIES`` is believed about the client: its ``X-Forwarded-For``
(the right-most address that is not itself a trusted proxy) and ``X-Forwarded-Proto``
(the last value). Anyone else's forwarding headers are ignored, so a client cannot choose
its own address to dodge the per-address limits or fake HTTPS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ClientInfo:
    address: str
    secure: bool  # HTTPS, as the client sees it
    user_agent: str = ""


KEY: web.RequestKey[ClientInfo] = web.RequestKey("cc_client", ClientInfo)


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_info(request: web.Request, trusted: Sequence[Network]) -> ClientInfo:
    cached = request.get(KEY)
    if cached is not None:
        return cached
    peer = request.remote or ""
    address, secure = peer, request.secure
    if trusted and _trusted(peer, trusted):
        hops = [h.strip() for h in ",".join(request.headers.getall("X-Forwarded-For", []))
                .split(",") if h.strip()]
        for hop in reversed(hops):
            address = hop
            if not _trusted(hop, trusted):
                break
        proto = request.headers.get("X-Forwarded-Proto", "")
        if proto:
            secure = proto.split(",")[-1].strip().lower() == "https"
    try:  # normalise; a junk header value becomes the proxy's address
        address = str(ipaddress.ip_address(address))
    except ValueError:
        address = peer
    info = ClientInfo(address[:64], secure, request.headers.get("User-Agent", "")[:200])
    request[KEY] = info
    return info


def from_environ(environ: dict[str, Any], trusted: Sequence[Network]) -> ClientInfo:
    """The same for a Socket.IO connection (python-socketio's aiohttp environ)."""
    request = environ.get("aiohttp.request")
    if isinstance(request, web.Request):
        return client_info(request, trusted)
    return ClientInfo(str(environ.get("REMOTE_ADDR", ""))[:64], False,
                      str(environ.get("HTTP_USER_AGENT", ""))[:200])
