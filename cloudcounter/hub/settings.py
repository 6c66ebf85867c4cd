"""Settings from ``CLOUDCOUNTER_*`` environment variables, with documented defaults.

Every setting is listed in ``docs/configuration.md``. Secrets are never logged:
``Settings.__repr__`` masks them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

PREFIX = "CLOUDCOUNTER_"
# Fixed, publicly known development secrets: only ever used in demo mode.
DEMO_SECRET_KEY = "demo-secret-key-not-for-production-000000"
DEMO_CUSTOMER_TOKEN_SECRET = "demo-customer-token-secret-not-for-production"
SECRET_FIELDS = frozenset({"secret_key", "customer_token_secret", "at_rest_key",
                           "metrics_token", "credit_token",
                           "audit_key", "turn_secret"})
STAFF_ROLES = frozenset({"agent", "auditor", "admin", "lead"})


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
    queue_backend: str = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_max_connections: int = 64
    # how emits reach clients held by other hub nodes: "local" (one node) or "redis"
    socketio_manager: str = "local"
    socketio_channel: str = "cloudcounter"
    node_lease_s: float = 10.0  # a node silent this long is lapsed (with the Redis manager)
    offer_timeout_s: float = 15.0
    max_missed_offers: int = 2
    wrap_up_s: float = 60.0
    customer_grace_s: float = 20.0
    position_interval_s: float = 1.0
    decline_exclusion_s: float = 30.0  # a declined or missed call avoids that agent this long
    max_queue_wait_s: float = 1800.0  # a call queued this long ends (``timed_out``)
    max_queue_length: int = 5000  # more waiting calls are refused (``queue_full``)
    callback_answer_s: float = 300.0  # a due callback waits this long for the customer
    staff_token_ttl_s: int = 900  # access tokens; the session lives staff_session_ttl_s
    staff_session_ttl_s: int = 8 * 3600
    session_cache_s: float = 2.0
    session_check_interval_s: float = 5.0
    customer_token_ttl_s: int = 600
    customer_token_max_ttl_s: int = 3600
    totp_required_roles: list[str] = field(default_factory=list)
    login_concurrency: int = 2
    login_queue: int = 64
    trusted_proxies: list[str] = field(default_factory=list)
    allowed_origins: list[str] = field(default_factory=list)
    tls_cert: str = ""
    tls_key: str = ""
    at_rest_key: str = ""
    viewing_session_s: float = 1800.0
    body_timeout_s: float = 10.0
    keepalive_timeout_s: float = 75.0
    max_connections_per_address: int = 50
    max_requests_in_flight_per_address: int = 64
    call_requests_per_customer_per_min: int = 10
    call_requests_per_address_per_min: int = 60
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
    log_format: str = "text"  # text | json (one JSON object a line)
    node_id: str = ""  # this hub node's name in logs and metrics (default: host name-pid)
    event_loop: str = "uvloop"
    # operations (docs/operations.md): /metrics, webhooks, the admin console's uploads
    metrics_token: str = ""
    service_level_target: float = 0.8  # wallboard: share answered within the target time
    wallboard_interval_s: float = 2.0  # how often the wallboard is pushed to team leads
    metrics_address: str = ""  # host:port of a separate listener for /metrics
    webhook_timeout_s: float = 10.0
    webhook_retry_base_s: float = 5.0
    webhook_retry_max_s: float = 600.0
    webhook_max_age_s: float = 3 * 86400.0
    webhook_concurrency: int = 8
    webhook_parallel_per_endpoint: int = 4
    webhook_allow_http: bool = False
    webhook_retention_days: int = 30
    webhook_poll_s: float = 1.0
    customer_photos_dir: Path = Path("var/customer-photos")
    max_photo_bytes: int = 8 * 1024 * 1024
    # the bank's credit system (docs/credit-system.md); empty: none (demo mode: the
    # reference credit service at http://127.0.0.1:8090)
    credit_url: str = ""
    credit_token: str = ""
    credit_client_cert: str = ""
    credit_client_key: str = ""
    credit_ca_file: str = ""
    credit_timeout_s: float = 5.0
    credit_retries: int = 2
    credit_breaker_threshold: int = 5
    credit_breaker_reset_s: float = 30.0
    credit_delivery_retry_base_s: float = 5.0
    credit_delivery_retry_max_s: float = 300.0
    credit_income_tolerance: float = 0.2  # an answered income differing more: a contradiction
    # interview appointments (docs/protocol.md, "Appointments")
    appointment_slot_minutes: int = 30
    appointment_days_ahead: int = 14
    appointment_window_s: float = 900.0
    appointment_no_show_after_s: float = 900.0
    appointment_priority_boost: int = 10
    # supervision (docs/supervision.md): the key signing digests and evidence packages
    audit_key: str = ""
    retention_default_days: int = 0  # services without a retention rule (0: keep)
    supervision_interval_s: float = 3600.0  # the supervision job (0: off; cron the CLI)
    # TURN with ephemeral credentials (docs/media.md, "TURN"): coturn's shared secret
    turn_urls: list[str] = field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_s: int = 4 * 3600  # a credential must outlive the call that uses it
    turn_for_hub: bool = False  # the hub's own legs gather relay candidates too
    # media worker processes (docs/media.md, "Media workers"; docs/deploy.md)
    # -1 (the default): one local worker process per core; 0: media in the hub process
    media_workers: int = -1
    media_worker_capacity: int = 15  # calls one worker takes (one core: docs/deploy.md)
    media_worker_lease_s: float = 3.0  # a worker silent this long takes no new call
    media_worker_redis: bool = False  # also use workers registered on Redis (--redis)

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
        media_forwarding(env)  # read where calls are created; a bad value refused now
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
        missing = [PREFIX + n.upper() for n in ("customer_token_secret", "secret_key")
                   if not getattr(s, n)]
        if missing:
            raise SettingsError(
                f"missing secret(s) {', '.join(missing)}: set them in the environment "
                f"(at least 32 random characters each), or set {PREFIX}DEMO=1 for a local demo"
            )
        short = [PREFIX + n.upper() for n in ("customer_token_secret", "secret_key")
                 if len(getattr(s, n)) < 32]
        if short and not s.demo:
            raise SettingsError(f"secret(s) {', '.join(short)} must be at least 32 characters")
        if s.secret_key == s.customer_token_secret:
            raise SettingsError(f"{PREFIX}SECRET_KEY and {PREFIX}CUSTOMER_TOKEN_SECRET must "
                                "differ: whoever holds the customer secret (the bank's app "
                                "backend) must not be able to sign staff tokens")
        if s.demo and not is_loopback(s.host):
            raise SettingsError(f"demo mode serves fixed, public secrets and demo accounts: "
                                f"it only listens on a loopback address, not {s.host!r} "
                                f"(set {PREFIX}HOST=127.0.0.1 or turn {PREFIX}DEMO off)")
        if not 0 < s.customer_token_ttl_s <= s.customer_token_max_ttl_s:
            raise SettingsError(f"{PREFIX}CUSTOMER_TOKEN_TTL_S must be positive and at most "
                                f"{PREFIX}CUSTOMER_TOKEN_MAX_TTL_S ({s.customer_token_max_ttl_s})")
        if not 0 < s.staff_token_ttl_s <= s.staff_session_ttl_s:
            raise SettingsError(f"{PREFIX}STAFF_TOKEN_TTL_S must be positive and at most "
                                f"{PREFIX}STAFF_SESSION_TTL_S")
        unknown = sorted(set(s.totp_required_roles) - STAFF_ROLES)
        if unknown:
            raise SettingsError(f"{PREFIX}TOTP_REQUIRED_ROLES: unknown role(s) "
                                f"{', '.join(unknown)} (roles: {', '.join(sorted(STAFF_ROLES))})")
        if min(s.decline_exclusion_s, s.max_queue_wait_s, s.max_queue_length,
               s.callback_answer_s) <= 0:
            raise SettingsError(f"{PREFIX}DECLINE_EXCLUSION_S, {PREFIX}MAX_QUEUE_WAIT_S and "
                                f"{PREFIX}MAX_QUEUE_LENGTH must be positive")
        if not 0 < s.service_level_target < 1 or s.wallboard_interval_s <= 0:
            raise SettingsError(f"{PREFIX}SERVICE_LEVEL_TARGET is a share between 0 and 1 "
                                f"(e.g. 0.8) and {PREFIX}WALLBOARD_INTERVAL_S is positive")
        if bool(s.tls_cert) != bool(s.tls_key):
            raise SettingsError(f"{PREFIX}TLS_CERT and {PREFIX}TLS_KEY go together")
        for name in ("tls_cert", "tls_key"):
            if getattr(s, name) and not Path(getattr(s, name)).is_file():
                raise SettingsError(f"{PREFIX}{name.upper()}: no file {getattr(s, name)!r}")
        if s.at_rest_key:
            at_rest_key_bytes(s.at_rest_key)
        if s.audit_key and len(s.audit_key) < 32:
            raise SettingsError(f"{PREFIX}AUDIT_KEY must be at least 32 characters")
        for net in s.trusted_proxies:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise SettingsError(f"{PREFIX}TRUSTED_PROXIES: {net!r} is not an address or "
                                    "network") from None
        if min(s.login_concurrency, s.login_queue, s.max_connections_per_address,
               s.max_requests_in_flight_per_address) < 1:
            raise SettingsError(f"{PREFIX}LOGIN_CONCURRENCY, _LOGIN_QUEUE and the per-address "
                                "limits must be at least 1")
        if s.event_loop not in {"uvloop", "asyncio"}:
            raise SettingsError(f"{PREFIX}EVENT_LOOP must be 'uvloop' or 'asyncio'")
        if s.socketio_manager not in {"local", "redis"}:
            raise SettingsError(f"{PREFIX}SOCKETIO_MANAGER must be 'local' or 'redis'")
        if s.node_lease_s < 1:
            raise SettingsError(f"{PREFIX}NODE_LEASE_S must be at least 1 (seconds)")
        if s.queue_backend in {"redis", "postgres"}:  # accepted once, and ignored: no more
            raise SettingsError(
                f"{PREFIX}QUEUE_BACKEND={s.queue_backend}: this hub has only the in-memory "
                "queue of one hub node ('memory'); the shared queue for several nodes "
                "(PostgreSQL, docs/scaling.md) is not built into it yet")
        if s.queue_backend != "memory":
            raise SettingsError(f"{PREFIX}QUEUE_BACKEND must be 'memory'")
        if not 1 <= s.vision_liveness_challenges <= 5:
            raise SettingsError(f"{PREFIX}VISION_LIVENESS_CHALLENGES must be 1 to 5")
        if min(s.media_stall_s, s.media_start_timeout_s) <= 0 or s.media_restarts < 0:
            raise SettingsError(f"{PREFIX}MEDIA_STALL_S and _START_TIMEOUT_S must be positive "
                                f"and {PREFIX}MEDIA_RESTARTS at least 0")
        if s.media_workers == -1:  # one per core this process may use
            import os
            s = replace(s, media_workers=len(os.sched_getaffinity(0)) or 1)
        if s.media_workers < 0 or s.media_worker_capacity < 1 or s.media_worker_lease_s <= 0:
            raise SettingsError(f"{PREFIX}MEDIA_WORKERS must be at least 0, "
                                f"{PREFIX}MEDIA_WORKER_CAPACITY at least 1 and "
                                f"{PREFIX}MEDIA_WORKER_LEASE_S positive")
        s = _checked_operations(s)
        s = _checked_credit(s)
        _checked_turn(s)
        if min(s.vision_idle_fps, s.vision_challenge_fps, s.vision_liveness_window_s) <= 0:
            raise SettingsError(f"{PREFIX}VISION_IDLE_FPS, _CHALLENGE_FPS and "
                                "_LIVENESS_WINDOW_S must be positive")
        if not 0.5 <= s.vision_liveness_onset_s <= s.vision_liveness_window_s:
            raise SettingsError(f"{PREFIX}VISION_LIVENESS_ONSET_S must be from 0.5 to "
                                "_LIVENESS_WINDOW_S")
        return s

    @property
    def audit_key_bytes(self) -> bytes | None:
        return self.audit_key.encode() if self.audit_key else None

    @property
    def at_rest_key_bytes(self) -> bytes | None:
        return at_rest_key_bytes(self.at_rest_key) if self.at_rest_key else None

    @property
    def sync_database_url(self) -> str:
        """The same database for synchronous tools (Alembic)."""
        return self.database_url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def _checked_operations(s: Settings) -> Settings:
    """Logs, metrics and webhooks (docs/operations.md)."""
    if s.log_format not in {"text", "json"}:
        raise SettingsError(f"{PREFIX}LOG_FORMAT must be 'text' or 'json'")
    if not s.node_id:  # the host name and the process id: unique among a machine's nodes
        import os
        import socket
        s = replace(s, node_id=f"{socket.gethostname()[:48] or 'hub'}-{os.getpid()}")
    if s.metrics_token and len(s.metrics_token) < 24 and not s.demo:
        raise SettingsError(f"{PREFIX}METRICS_TOKEN must be at least 24 characters")
    if s.metrics_address:
        metrics_listen(s.metrics_address)
    if min(s.webhook_timeout_s, s.webhook_retry_base_s, s.webhook_poll_s) <= 0 \
            or s.webhook_retry_max_s < s.webhook_retry_base_s:
        raise SettingsError(f"{PREFIX}WEBHOOK_TIMEOUT_S, _RETRY_BASE_S and _POLL_S must be "
                            f"positive and {PREFIX}WEBHOOK_RETRY_MAX_S at least _RETRY_BASE_S")
    if s.webhook_max_age_s < 3600:
        raise SettingsError(f"{PREFIX}WEBHOOK_MAX_AGE_S must be at least 3600 (an hour): a "
                            "receiver down for an hour must lose nothing")
    if min(s.webhook_concurrency, s.webhook_parallel_per_endpoint,
           s.webhook_retention_days) < 1:
        raise SettingsError(f"{PREFIX}WEBHOOK_CONCURRENCY, _PARALLEL_PER_ENDPOINT and "
                            "_RETENTION_DAYS must be at least 1")
    if s.max_photo_bytes < 64 * 1024:
        raise SettingsError(f"{PREFIX}MAX_PHOTO_BYTES must be at least 65536")
    return s


def _checked_turn(s: Settings) -> None:
    """TURN (docs/media.md): URLs and the shared secret go together."""
    from cloudcounter.media.turn import check_uris

    try:
        check_uris(s.turn_urls)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}TURN_URLS: {exc}") from None
    if s.turn_urls and not s.turn_secret:
        raise SettingsError(f"{PREFIX}TURN_URLS needs {PREFIX}TURN_SECRET (coturn's "
                            "static-auth-secret) to mint credentials")
    if s.turn_secret and len(s.turn_secret) < 32 and not s.demo:
        raise SettingsError(f"{PREFIX}TURN_SECRET must be at least 32 characters")
    if not 60 <= s.turn_ttl_s <= 7 * 86400:
        raise SettingsError(f"{PREFIX}TURN_TTL_S must be from 60 to 604800 seconds")
    if s.turn_for_hub and not s.turn_urls:
        raise SettingsError(f"{PREFIX}TURN_FOR_HUB needs {PREFIX}TURN_URLS")


def metrics_listen(value: str) -> tuple[str, int]:
    """``CLOUDCOUNTER_METRICS_ADDRESS``: ``host:port`` (``[::1]:9464`` for IPv6)."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 0 < number < 65536:
        raise SettingsError(f"{PREFIX}METRICS_ADDRESS must be host:port, e.g. 127.0.0.1:9464")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def at_rest_key_bytes(value: str) -> bytes:
    """The at-rest key: 32 bytes, base64 (``openssl rand -base64 32``)."""
    try:
        key = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise SettingsError(f"{PREFIX}AT_REST_KEY must be 32 random bytes in base64 "
                            "(openssl rand -base64 32)")
    return key


def _checked_credit(s: "Settings") -> "Settings":
    """The credit system's link (docs/credit-system.md)."""
    if not s.credit_url and s.demo:
        s = replace(s, credit_url="http://127.0.0.1:8090")
    if s.credit_url and not s.credit_url.startswith(("http://", "https://")):
        raise SettingsError(f"{PREFIX}CREDIT_URL must be an http:// or https:// URL")
    if min(s.credit_timeout_s, s.credit_breaker_reset_s, s.credit_delivery_retry_base_s) <= 0 \
            or s.credit_delivery_retry_max_s < s.credit_delivery_retry_base_s:
        raise SettingsError(f"{PREFIX}CREDIT_TIMEOUT_S, _BREAKER_RESET_S and _DELIVERY_RETRY_"
                            "BASE_S must be positive, _DELIVERY_RETRY_MAX_S at least the base")
    if not 0 <= s.credit_retries <= 10 or s.credit_breaker_threshold < 1:
        raise SettingsError(f"{PREFIX}CREDIT_RETRIES must be 0 to 10 and "
                            f"{PREFIX}CREDIT_BREAKER_THRESHOLD at least 1")
    if not 0 < s.credit_income_tolerance < 1:
        raise SettingsError(f"{PREFIX}CREDIT_INCOME_TOLERANCE must be between 0 and 1")
    if not 5 <= s.appointment_slot_minutes <= 240 or 1440 % s.appointment_slot_minutes:
        raise SettingsError(f"{PREFIX}APPOINTMENT_SLOT_MINUTES must divide a day (5-240)")
    if s.appointment_days_ahead < 1 or min(s.appointment_window_s,
                                           s.appointment_no_show_after_s) < 0 \
            or s.appointment_priority_boost < 0:
        raise SettingsError(f"{PREFIX}APPOINTMENT_DAYS_AHEAD must be at least 1 and the "
                            "appointment window, no-show time and priority boost not negative")
    if bool(s.credit_client_cert) != bool(s.credit_client_key):
        raise SettingsError(f"{PREFIX}CREDIT_CLIENT_CERT and _CREDIT_CLIENT_KEY go together")
    for name in ("credit_client_cert", "credit_client_key", "credit_ca_file"):
        if getattr(s, name) and not Path(getattr(s, name)).is_file():
            raise SettingsError(f"{PREFIX}{name.upper()}: no file {getattr(s, name)!r}")
    return s


def _convert(name: str, type_: Any, raw: str) -> Any:
    t = str(type_)
    if name == "ice_servers":
        return _ice_servers(raw)
    if t == "list[str]":
        return _str_list(raw)
    if t == "bool":
        return _bool(raw)
    if t == "int":
        return int(raw)
    if t == "float":
        return float(raw)
    if t == "Path":
        return Path(raw)
    return raw


# -- media forwarding (cloudcounter.media.modes, docs/media.md) ---------------------------
def media_forwarding(env: Mapping[str, str] | None = None) -> str:
    """``CLOUDCOUNTER_MEDIA_FORWARDING`` (``frame`` | ``packet``); :class:`SettingsError`
    for anything else."""
    from cloudcounter.media import modes
    try:
        return modes.media_forwarding(env)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
