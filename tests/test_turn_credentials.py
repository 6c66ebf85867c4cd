"""Ephemeral TURN credentials: the scheme, the settings and what the hub hands out.
(coturn itself accepting and refusing them: tests/test_network_turn.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from cloudcounter.hub.settings import Settings, SettingsError
from cloudcounter.media.turn import credential_for, ice_servers_for, mint

SECRETS = {"CLOUDCOUNTER_SECRET_KEY": "k" * 40, "CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET": "c" * 40}
TURN = {**SECRETS, "CLOUDCOUNTER_TURN_URLS": "turn:turn.bank.example:3478?transport=udp, "
        "turns:turn.bank.example:5349?transport=tcp", "CLOUDCOUNTER_TURN_SECRET": "t" * 40}


def test_the_rest_api_scheme() -> None:
    username, credential = mint("s3cret", "customer.call-1", 600, now=1_700_000_000)
    assert username == "1700000600:customer.call-1"
    expected = base64.b64encode(hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest())
    assert credential == expected.decode() == credential_for("s3cret", username)
    # the actor can neither inject the separator nor grow without bound
    username, _ = mint("s", "a:b c\u0000" + "x" * 100, 60, now=0)
    assert username.count(":") == 1 and len(username.split(":")[1]) == 64


def test_settings_read_check_and_mask_the_secret() -> None:
    s = Settings.from_env({**TURN, "CLOUDCOUNTER_TURN_TTL_S": "900"})
    assert s.turn_urls == ["turn:turn.bank.example:3478?transport=udp",
                           "turns:turn.bank.example:5349?transport=tcp"]
    assert s.turn_ttl_s == 900 and not s.turn_for_hub
    assert "t" * 40 not in repr(s) and "turn_secret='***'" in repr(s)
    for env, message in (
            ({"CLOUDCOUNTER_TURN_SECRET": ""}, "needs CLOUDCOUNTER_TURN_SECRET"),
            ({"CLOUDCOUNTER_TURN_SECRET": "short"}, "at least 32"),
            ({"CLOUDCOUNTER_TURN_URLS": "stun:x"}, "not a TURN URI"),
            ({"CLOUDCOUNTER_TURN_URLS": "turn:x?transport=sctp"}, "not a TURN URI"),
            ({"CLOUDCOUNTER_TURN_TTL_S": "5"}, "60 to 604800"),
            ({"CLOUDCOUNTER_TURN_URLS": "", "CLOUDCOUNTER_TURN_FOR_HUB": "1"}, "TURN_FOR_HUB")):
        with pytest.raises(SettingsError, match=message):
            Settings.from_env({**TURN, **env})


def test_every_participant_gets_its_own_expiring_credential() -> None:
    s = Settings.from_env({**TURN, "CLOUDCOUNTER_ICE_SERVERS": "stun:stun.bank.example:3478"})
    customer = ice_servers_for(s, "customer.c1", now=1000)
    agent = ice_servers_for(s, "agent.c1", now=1000)
    assert customer[0] == {"urls": "stun:stun.bank.example:3478"}
    assert customer[1]["urls"] == s.turn_urls
    assert customer[1]["username"] == f"{1000 + s.turn_ttl_s}:customer.c1"
    assert agent[1]["username"].endswith(":agent.c1")
    assert customer[1]["credential"] != agent[1]["credential"]
    assert s.turn_secret not in repr(customer + agent)
    customer[0]["urls"] = "changed"  # a copy: the settings are never changed through it
    assert s.ice_servers[0]["urls"] == "stun:stun.bank.example:3478"
    # without TURN settings: the configured servers, unchanged
    plain = Settings.from_env(SECRETS)
    assert ice_servers_for(plain, "customer.c1") == []
