"""Ephemeral TURN credentials (coturn's shared-secret "TURN REST API" scheme).

The hub and the TURN server share one secret (coturn: ``use-auth-secret`` and
``static-auth-secret``). For each participant of a call the hub mints

* ``username = "<expiry>:<actor>"``: ``expiry`` is a Unix time in seconds, ``actor`` says
  who it was minted for (``customer.<call id>``, ``agent.<call id>``, ``hub.<call id>``);
* ``credential = base64(HMAC-SHA1(secret, username))``.

The TURN server recomputes the credential from the username and refuses it once the
expiry has passed, so a credential that leaks (it sits in a phone's memory and in
signalling messages) is useless after ``ttl_s`` and names whom it was given to. Nothing
is stored: the secret is the only state, and it never leaves the hub and the TURN server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from typing import Any

# RFC 7064/7065 URIs as aiortc and browsers accept them (host, optional port, transport)
TURN_URI = re.compile(r"turns?:[^?:\s]+(:[0-9]{1,5})?(\?transport=(udp|tcp))?")
ACTOR = re.compile(r"[^A-Za-z0-9._-]")


def credential_for(secret: str, username: str) -> str:
    """base64(HMAC-SHA1(secret, username)), what coturn computes for ``username``."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def mint(secret: str, actor: str, ttl_s: float, now: float | None = None) -> tuple[str, str]:
    """A username valid for ``ttl_s`` seconds from ``now`` and its credential.

    ``actor`` is reduced to letters, digits, ``.``, ``_`` and ``-`` (no separator ``:``,
    nothing a TURN server's log could misread) and to 64 characters."""
    expiry = int((time.time() if now is None else now) + ttl_s)
    username = f"{expiry}:{ACTOR.sub('_', actor)[:64]}"
    return username, credential_for(secret, username)


def check_uris(urls: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the first URL that is not a ``turn:``/``turns:`` URI."""
    for url in urls:
        if not TURN_URI.fullmatch(url):
            raise ValueError(f"not a TURN URI: {url!r} (turn:host[:port][?transport=udp|tcp] "
                             "or turns:...)")


def ice_servers_for(settings: Any, actor: str, now: float | None = None) -> list[dict[str, Any]]:
    """The ``ice_servers`` to send to (or use for) ``actor``: the configured STUN/TURN
    servers (``CLOUDCOUNTER_ICE_SERVERS``) and, when ``CLOUDCOUNTER_TURN_URLS`` is set,
    one entry for those URLs with a freshly minted credential. A new list each time."""
    servers = [dict(s) for s in settings.ice_servers]
    if settings.turn_urls and settings.turn_secret:
        username, credential = mint(settings.turn_secret, actor, settings.turn_ttl_s, now)
        servers.append({"urls": list(settings.turn_urls), "username": username,
                        "credential": credential})
    return servers
