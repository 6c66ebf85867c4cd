"""The hub's security services, shared by the HTTP API and the Socket.IO namespaces.

One object (``HubContext.security``) holds the staff sessions, the security event log,
the trusted proxies, the rate-limited refusal log, and the per-address and per-customer
limits on connections and call requests.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from cloudcounter.agents.sessions import SessionStore
from cloudcounter.db.security_log import SecurityLog
from cloudcounter.errors import CloudCounterError, RateLimited
from cloudcounter.limits import SlidingWindow
from cloudcounter.logs import RefusalLog
from cloudcounter.signaling.clientinfo import Network

log = logging.getLogger("cloudcounter.security")

# Codes that mean "who are you?" or "not you": logged as security events when refused.
TOKEN_CODES = frozenset({"unauthenticated", "token_expired", "session_revoked",
                         "session_expired", "token_lifetime_exceeded", "unknown_customer"})
AUTHZ_CODES = frozenset({"forbidden", "wrong_role", "account_disabled", "service_not_allowed",
                         "bad_origin"})


@dataclass
class Security:
    sessions: SessionStore
    log: SecurityLog
    trusted: tuple[Network, ...] = ()
    max_connections_per_address: int = 50
    call_requests_per_customer_per_min: int = 10
    call_requests_per_address_per_min: int = 60
    clock: Callable[[], float] = time.monotonic
    refusals: RefusalLog = field(default_factory=lambda: RefusalLog(log))
    connections: dict[str, int] = field(default_factory=dict)  # open sockets per address
    in_flight: dict[str, int] = field(default_factory=dict)  # HTTP requests per address
    views: dict[tuple[str, str], float] = field(default_factory=dict)
    _customer_calls: SlidingWindow = field(init=False)
    _address_calls: SlidingWindow = field(init=False)

    def __post_init__(self) -> None:
        self._customer_calls = SlidingWindow(self.call_requests_per_customer_per_min, 60.0)
        self._address_calls = SlidingWindow(self.call_requests_per_address_per_min, 60.0)

    # -- events ---------------------------------------------------------------------
    def refused(self, exc: CloudCounterError, what: str, actor: str, source: str,
                user_id: int | None = None) -> None:
        """A refused request or message: a brief log line (rate-limited), and a security
        event when it is about identity or permission."""
        self.refusals.refused(what, actor or source, exc.code)
        if exc.code in TOKEN_CODES:
            kind = "token.refused"
        elif exc.code in AUTHZ_CODES:
            kind = "auth.refused"
        else:
            return
        self.log.record(kind, "refused", actor or "anonymous", source=source, target=what,
                        user_id=user_id, details={"code": exc.code})

    def event(self, kind: str, outcome: str, actor: str, source: str = "", target: str = "",
              user_id: int | None = None, **details: Any) -> None:
        self.log.record(kind, outcome, actor, source=source, target=target, user_id=user_id,
                        details=details)

    def first_view(self, session_id: str, resource: str, window_s: float) -> bool:
        """Whether this is the first access of this staff session to ``resource`` within
        ``window_s`` (a viewing session): such accesses are logged, later range requests
        of the same viewing are not."""
        now = self.clock()
        key = (session_id, resource)
        until = self.views.get(key)
        if until is not None and until > now:
            return False
        if len(self.views) > 100_000:
            self.views = {k: t for k, t in self.views.items() if t > now}
        self.views[key] = now + window_s
        return True

    # -- per-address connections ------------------------------------------------------
    def connection_opened(self, address: str) -> None:
        """Count a connection; raises ``too_many_connections`` over the limit."""
        n = self.connections.get(address, 0)
        if n >= self.max_connections_per_address:
            raise RateLimited(f"at most {self.max_connections_per_address} connections per "
                              "address", code="too_many_connections")
        self.connections[address] = n + 1

    def connection_closed(self, address: str) -> None:
        n = self.connections.get(address, 0) - 1
        if n > 0:
            self.connections[address] = n
        else:
            self.connections.pop(address, None)

    # -- call requests ----------------------------------------------------------------
    def call_request(self, customer_id: str, address: str) -> None:
        """Count a call request; raises ``rate_limited`` (retryable, with the wait)."""
        now = self.clock()
        wait = max(self._customer_calls.retry_after(customer_id, now),
                   self._address_calls.retry_after(address, now))
        if wait > 0:
            raise RateLimited("too many call requests: try again shortly",
                              retry_after_s=int(wait) + 1)
        self._customer_calls.hit(customer_id, now)
        self._address_calls.hit(address, now)
