"""Settings from ``CLOUDCOUNTER_*`` environment variables, with documented defaults.

Every setting is listed in ``docs/configuration.md``. Secrets are never logged:
``Settings.__repr__`` masks them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

PREFIX = "CLOUDCOUNTER_"
# Fixed, publicly known development secrets: only ever used in demo mode.
DEMO_SECRET_KEY = "demo-secret-key-not-for-production-000000"
DEMO_CUSTOMER_TOKEN_SECRET = "demo-customer-token-secret-not-for-production"
SECRET_FIELDS = frozenset({"secret_key", "customer_token_secret"})


class SettingsError(Exception):
    """A setting is missing or malformed; start-up stops with this message."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in {"1", "true", "yes", "on"}:
        return True
    if v in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _ice_servers(value: str) -> list[dict[str, Any]]:
    """JSON list of RTCIceServer dicts, or a comma-separated list of URLs."""
    value = value.strip()
    if not value:
        return []
    if value.startswith("["):
        servers = json.loads(value)
        if not isinstance(servers, list) or not all(
            isinstance(s, dict) and "urls" in s for s in servers
        ):
            raise ValueError("expected a JSON list of objects with 'urls'")
        return servers
    return [{"urls": url.strip()} for url in value.split(",") if url.strip()]


def _str_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///var/cloudcounter.db"
    host: str = "127.0.0.1"
    port: int = 8080
    secret_key: str = ""
    customer_token_secret: str = ""
    demo: bool = False
    recordings_dir: Path = Path("var/recordings")
    ice_servers: list[dict[str, Any]] = field(default_factory=list)
    media_host_addresses: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    trusted_proxies: frozenset[str] = frozenset()
    queue_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 64
    offer_timeout_s: float = 15.0
    max_missed_offers: int = 2
    wrap_up_s: float = 60.0
    customer_grace_s: float = 20.0
    position_interval_s: float = 1.0
    staff_token_ttl_s: int = 8 * 3600
    customer_token_ttl_s: int = 600
    max_message_bytes: int = 64 * 1024
    media_stall_s: float = 5.0
    media_start_timeout_s: float = 10.0
    media_restarts: int = 2
    vision_workers: int = 1
    vision_prestart: bool = True
    vision_idle_fps: float = 3.0
    vision_challenge_fps: float = 20.0
    vision_drift_interval_s: float = 5.0
    vision_match_threshold: float = 0.6
    vision_drift_threshold: float = 0.6
    vision_liveness_window_s: float = 5.0
    vision_liveness_onset_s: float = 1.8
    vision_liveness_challenges: int = 3
    vision_alert_hold_s: float = 1.5
    faces_dir: Path = Path("../shared/data/faces")
    web_dir: Path = Path("clients/web")
    node_modules_dir: Path = Path("node_modules")
    log_level: str = "INFO"
    event_loop: str = "uvloop"

    def __repr__(self) -> str:  # never print secrets
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                value = "***" if value else "(unset)"
            parts.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(parts)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Read the environment; raise :class:`SettingsError` with a clear message."""
        env = os.environ if env is None else env
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            key = PREFIX + f.name.upper()
            if key not in env:
                continue
            raw = env[key]
            try:
                kwargs[f.name] = _convert(f.name, f.type, raw)
            except (ValueError, json.JSONDecodeError) as exc:
                raise SettingsError(f"{key}: {exc}") from None
        kwargs.update(overrides)
        return cls(**kwargs).checked()

    def checked(self) -> "Settings":
        """Fill demo secrets in demo mode; refuse to start without secrets otherwise."""
        s = self
        if s.demo:
            s = replace(
                s,
                secret_key=s.secret_key or DEMO_SECRET_KEY,
                customer_token_secret=s.customer_token_secret or DEMO_CUSTOMER_TOKEN_SECRET,
            )
        missing = [PREFIX + n.upper() for n in sorted(SECRET_FIELDS) if not getattr(s, n)]
        if missing:
            raise SettingsError(
                f"missing secret(s) {', '.join(missing)}: set them in the environment "
                f"(at least 32 random characters each), or set {PREFIX}DEMO=1 for a local demo"
            )
        short = [PREFIX + n.upper() for n in sorted(SECRET_FIELDS) if len(getattr(s, n)) < 32]
        if short and not s.demo:
            raise SettingsError(f"secret(s) {', '.join(short)} must be at least 32 characters")
        if s.event_loop not in {"uvloop", "asyncio"}:
            raise SettingsError(f"{PREFIX}EVENT_LOOP must be 'uvloop' or 'asyncio'")
        if s.queue_backend not in {"memory", "redis"}:
            raise SettingsError(f"{PREFIX}QUEUE_BACKEND must be 'memory' or 'redis'")
        if not 1 <= s.vision_liveness_challenges <= 5:
            raise SettingsError(f"{PREFIX}VISION_LIVENESS_CHALLENGES must be 1 to 5")
        if min(s.media_stall_s, s.media_start_timeout_s) <= 0 or s.media_restarts < 0:
            raise SettingsError(f"{PREFIX}MEDIA_STALL_S and _START_TIMEOUT_S must be positive "
                                f"and {PREFIX}MEDIA_RESTARTS at least 0")
        if min(s.vision_idle_fps, s.vision_challenge_fps, s.vision_liveness_window_s) <= 0:
            raise SettingsError(f"{PREFIX}VISION_IDLE_FPS, _CHALLENGE_FPS and "
                                "_LIVENESS_WINDOW_S must be positive")
        if not 0.5 <= s.vision_liveness_onset_s <= s.vision_liveness_window_s:
            raise SettingsError(f"{PREFIX}VISION_LIVENESS_ONSET_S must be from 0.5 to "
                                "_LIVENESS_WINDOW_S")
        return s

    @property
    def sync_database_url(self) -> str:
        """The same database for synchronous tools (Alembic)."""
        return self.database_url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def _convert(name: str, type_: Any, raw: str) -> Any:
    t = str(type_)
    if name == "ice_servers":
        return _ice_servers(raw)
    if name == "media_host_addresses":
        return _str_list(raw)
    if name == "trusted_proxies":
        return frozenset(_str_list(raw))
    if t == "bool":
        return _bool(raw)
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    if t == "Path":
        return Path(raw)
    return raw
