"""The hub's logs: structured lines (text or JSON, with the call, the agent and the node;
secrets masked), and what clients get wrong logged once, briefly, rate-limited.

A hostile client can send thousands of bad messages a second; each refusal must not cost
a traceback in the log. :class:`RefusalLog` writes one short line per refusal up to
``burst`` lines per ``window_s``, then counts silently and writes one summary line
("... N more refusals not logged") when the window turns.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Sequence


class RefusalLog:
    def __init__(self, logger: logging.Logger, burst: int = 20, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self.clock = clock
        self._window_start = -1e18
        self._logged = 0
        self._suppressed = 0
        self.total = 0

    def _allow(self) -> bool:
        now = self.clock()
        if now - self._window_start >= self.window_s:
            if self._suppressed:
                self.logger.warning("%d more refusals not logged in the last %.0f s",
                                    self._suppressed, self.window_s)
            self._window_start, self._logged, self._suppressed = now, 0, 0
        self.total += 1
        if self._logged < self.burst:
            self._logged += 1
            return True
        self._suppressed += 1
        return False

    def refused(self, what: str, who: str, code: str, level: int = logging.INFO) -> None:
        """One line: what was refused, from whom, with which code (never the input)."""
        if self._allow():
            self.logger.log(level, "refused %s from %s: %s", _short(what), _short(who), code)

    def failed(self, what: str, who: str, exc: BaseException) -> None:
        """An unexpected error while handling a client's input: the first ones in a window
        with their traceback, then counted."""
        if self._allow():
            self.logger.error("handling %s from %s failed: %s", _short(what), _short(who),
                              type(exc).__name__, exc_info=exc)


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    text = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return text + ("…" if len(str(value)) > limit else "")


# -- structured logs ----------------------------------------------------------------------
# One line an event. ``CLOUDCOUNTER_LOG_FORMAT=json``: one JSON object a line with the time,
# level, logger, message and, when known, the call, the agent (or other actor) and the hub
# node; ``text`` (the default): the same fields in a readable line. Secrets never reach the
# output: the settings' secrets and anything shaped like a token are masked.

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar(
    "cloudcounter_log_context", default={})
CALL_ID = re.compile(r"\bcall_[0-9a-f]{16}\b")
TOKEN_SHAPES = [
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWTs
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(rt|whsec)_[A-Za-z0-9_-]{16,}"),  # refresh tokens, webhook secrets
    re.compile(r"(?i)\b(password|passwd|secret|otp|token)(\"?\s*[:=]\s*\"?)[^\s\",;&]+"),
]
FIELDS = ("call_id", "agent", "actor", "node")


@contextlib.contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Name the call, the actor... for every log line written inside (and in the tasks
    started inside)."""
    current = {**_CONTEXT.get(), **{k: str(v) for k, v in fields.items() if v}}
    token = _CONTEXT.set(current)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def actor_fields(actor: str) -> dict[str, str]:
    """``agent:alice`` -> actor and agent; other roles -> actor only."""
    return {"actor": actor, **({"agent": actor.split(":", 1)[1]}
                               if actor.startswith("agent:") else {})}


class ContextFilter(logging.Filter):
    """Adds ``call_id``, ``agent``, ``actor`` and ``node`` to every record: from ``extra``,
    else the log context, else (the call id) the message itself."""

    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _CONTEXT.get()
        for name in FIELDS:
            if not getattr(record, name, None):
                setattr(record, name, ctx.get(name, self.node if name == "node" else ""))
        if not record.call_id:  # type: ignore[attr-defined]
            found = CALL_ID.search(record.getMessage())
            record.call_id = found.group(0) if found else ""
        return True


class Redactor:
    """Masks secrets in a formatted line: the given values and token-shaped strings."""

    def __init__(self, secrets: Sequence[str] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len,
                              reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        for shape in TOKEN_SHAPES:
            text = shape.sub(_mask, text)
        return text


def _mask(m: re.Match[str]) -> str:
    if m.re.groups >= 2 and m.group(2) is not None:  # key=value: keep the key
        return f"{m.group(1)}{m.group(2)}[redacted]"
    if m.re.groups >= 1 and m.group(1) and m.group(1).lower() == "bearer":
        return "Bearer [redacted]"
    return "[redacted]"


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage()}
        for name in FIELDS:
            value = getattr(record, name, "")
            if value:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(out, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(where)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        parts = [f"{n}={getattr(record, n)}" for n in ("call_id", "agent")
                 if getattr(record, n, "")]
        record.where = f" [{' '.join(parts)}]" if parts else ""
        return self.redact(super().format(record))


def configure(level: str = "INFO", fmt: str = "text", node: str = "",
              secrets: Sequence[str] = (), stream: Any = None) -> logging.Handler:
    """The hub's logging: one handler on the root logger (``cloudcounter serve``)."""
    handler = logging.StreamHandler(stream)
    redact = Redactor(secrets)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    handler.addFilter(ContextFilter(node))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aioice", "aiortc", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
