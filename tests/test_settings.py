"""Settings from the environment: defaults, parsing, and refusal without secrets."""

from __future__ import annotations

import pytest

from cloudcounter.hub.settings import DEMO_SECRET_KEY, Settings, SettingsError

SECRETS = {"CLOUDCOUNTER_SECRET_KEY": "k" * 40, "CLOUDCOUNTER_CUSTOMER_TOKEN_SECRET": "c" * 40}


def test_defaults_with_secrets() -> None:
    s = Settings.from_env(SECRETS)
    assert s.database_url.startswith("sqlite+aiosqlite:///var/")
    assert (s.host, s.port, s.demo, s.queue_backend) == ("127.0.0.1", 8080, False, "memory")
    assert s.ice_servers == [] and s.media_host_addresses == ["127.0.0.1"]


def test_missing_secret_outside_demo_stops_with_a_clear_message() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({})
    assert "CLOUDCOUNTER_SECRET_KEY" in str(info.value)
    assert "CLOUDCOUNTER_DEMO=1" in str(info.value)
    with pytest.raises(SettingsError, match="at least 32"):
        Settings.from_env({**SECRETS, "CLOUDCOUNTER_SECRET_KEY": "short"})


def test_demo_mode_fills_development_secrets() -> None:
    s = Settings.from_env({"CLOUDCOUNTER_DEMO": "1"})
    assert s.demo and s.secret_key == DEMO_SECRET_KEY and s.customer_token_secret


def test_parsing_of_typed_values() -> None:
    s = Settings.from_env({**SECRETS, "CLOUDCOUNTER_PORT": "9000",
                           "CLOUDCOUNTER_OFFER_TIMEOUT_S": "7.5",
                           "CLOUDCOUNTER_ICE_SERVERS": "stun:stun.example.org:3478, turn:t.example",
                           "CLOUDCOUNTER_MEDIA_HOST_ADDRESSES": "10.0.0.5,127.0.0.1"})
    assert s.port == 9000 and s.offer_timeout_s == 7.5
    assert s.ice_servers == [{"urls": "stun:stun.example.org:3478"}, {"urls": "turn:t.example"}]
    assert s.media_host_addresses == ["10.0.0.5", "127.0.0.1"]
    turn = '[{"urls": "turn:t.example:3478", "username": "u", "credential": "p"}]'
    assert Settings.from_env({**SECRETS, "CLOUDCOUNTER_ICE_SERVERS": turn}).ice_servers[0][
        "username"] == "u"


@pytest.mark.parametrize("backend", ["redis", "postgres"])
def test_a_queue_backend_this_hub_does_not_have_is_refused_not_ignored(backend: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**SECRETS, "CLOUDCOUNTER_QUEUE_BACKEND": backend})
    assert "QUEUE_BACKEND" in str(info.value) and "not built" in str(info.value)


def test_the_node_id_defaults_to_host_and_process() -> None:
    import os
    assert Settings.from_env(SECRETS).node_id.endswith(f"-{os.getpid()}")
    assert Settings.from_env({**SECRETS, "CLOUDCOUNTER_NODE_ID": "hub-a"}).node_id == "hub-a"


@pytest.mark.parametrize("key,value", [("CLOUDCOUNTER_PORT", "eighty"),
                                       ("CLOUDCOUNTER_DEMO", "maybe"),
                                       ("CLOUDCOUNTER_ICE_SERVERS", "[1, 2]"),
                                       ("CLOUDCOUNTER_QUEUE_BACKEND", "kafka")])
def test_malformed_values_name_the_variable(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**SECRETS, key: value})
    assert key in str(info.value) or "QUEUE_BACKEND" in str(info.value)


@pytest.mark.parametrize("key,value", [
    ("CLOUDCOUNTER_LOG_FORMAT", "xml"), ("CLOUDCOUNTER_METRICS_TOKEN", "short"),
    ("CLOUDCOUNTER_METRICS_ADDRESS", "localhost"), ("CLOUDCOUNTER_METRICS_ADDRESS", "h:99999"),
    ("CLOUDCOUNTER_WEBHOOK_MAX_AGE_S", "60"), ("CLOUDCOUNTER_WEBHOOK_TIMEOUT_S", "0"),
    ("CLOUDCOUNTER_WEBHOOK_RETRY_MAX_S", "1"), ("CLOUDCOUNTER_WEBHOOK_CONCURRENCY", "0"),
    ("CLOUDCOUNTER_MAX_PHOTO_BYTES", "10")])
def test_operations_settings_are_checked(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**SECRETS, key: value})
    assert key.rsplit("_", 2)[0] in str(info.value) or key in str(info.value)


def test_operations_defaults() -> None:
    s = Settings.from_env({**SECRETS, "CLOUDCOUNTER_METRICS_TOKEN": "m" * 30,
                           "CLOUDCOUNTER_METRICS_ADDRESS": "[::1]:9464"})
    assert s.log_format == "text" and s.node_id and s.webhook_max_age_s == 3 * 86400
    assert "m" * 30 not in repr(s) and "metrics_token='***'" in repr(s)


def test_repr_never_shows_secrets() -> None:
    s = Settings.from_env(SECRETS)
    assert "k" * 40 not in repr(s) and "c" * 40 not in str(s)
    assert "secret_key='***'" in repr(s)


def test_liveness_onset_window_is_bounded_by_the_window() -> None:
    assert Settings.from_env({}, demo=True).vision_liveness_onset_s == 1.8
    env = {"CLOUDCOUNTER_VISION_LIVENESS_ONSET_S": "6"}
    with pytest.raises(SettingsError, match="ONSET_S"):
        Settings.from_env(env, demo=True)  # longer than the 5 s window
    assert Settings.from_env({**env, "CLOUDCOUNTER_VISION_LIVENESS_WINDOW_S": "8"},
                             demo=True).vision_liveness_onset_s == 6.0
