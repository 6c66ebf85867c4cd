"""The hub's adapter to the bank's credit system (the contract in docs/credit-system.md).

* every request has a timeout (``timeout_s``, for the whole request);
* a failed request is retried a bounded number of times (``retries``) with exponential
  back-off and jitter, when retrying can help: no connection, a timeout, 5xx, 429 (with
  ``Retry-After`` up to the cap); a 4xx refusal or a malformed answer is not retried;
* every write carries an ``Idempotency-Key`` (the caller's, stable across retries and
  restarts), so the credit system records a result once however often it is sent;
* a **circuit breaker**: after ``breaker_threshold`` consecutive failed requests the
  adapter stops calling for ``breaker_reset_s`` and fails at once (``credit_unavailable``,
  ``circuit: open``); then one trial request goes through (half-open): success closes the
  circuit, failure opens it again. A credit system that is down costs an agent no wait.

Errors are :class:`CreditError` with a stable code; the console shows their message in the
credit panel; nothing here ends or blocks a call.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel, ValidationError

from cloudcounter.credit.contract import (
    API_PREFIX, IDEMPOTENCY_HEADER, Application, ApplicationList, InterviewResult, ResultAck,
)
from cloudcounter.errors import CloudCounterError

T = TypeVar("T", bound=BaseModel)
USER_AGENT = "cloudcounter-credit/1"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class CreditError(CloudCounterError):
    """The credit system could not answer. ``code``: ``credit_unavailable`` (no
    connection, 5xx, circuit open), ``credit_timeout``, ``credit_bad_response`` (not the
    contract's JSON), ``credit_not_found``, ``credit_refused`` (another 4xx),
    ``credit_conflict`` (an idempotency key reused with another body)."""

    code = "credit_unavailable"
    http_status = 502

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message, code=code)
        self.retryable = retryable
        self.status = status


@dataclass(frozen=True)
class CreditConfig:
    base_url: str
    timeout_s: float = 5.0
    retries: int = 2
    backoff_base_s: float = 0.2
    backoff_max_s: float = 2.0
    breaker_threshold: int = 5
    breaker_reset_s: float = 30.0
    token: str = ""  # sent as "Authorization: Bearer <token>" when set
    client_cert: str = ""  # mutual TLS: the hub's certificate and key (PEM files)
    client_key: str = ""
    ca_file: str = ""  # the credit system's CA (default: the system's trust store)


class CircuitBreaker:
    """closed → (``threshold`` consecutive failures) → open → (``reset_s``) → half-open:
    one trial; its success closes, its failure opens again. Pure; the time is passed in."""

    def __init__(self, threshold: int, reset_s: float) -> None:
        self.threshold = threshold
        self.reset_s = reset_s
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half_open" if now - self.opened_at >= self.reset_s else "open"

    def allow(self, now: float) -> bool:
        s = self.state(now)
        if s == "closed":
            return True
        if s == "half_open" and not self.trial:
            self.trial = True
            return True
        return False

    def success(self) -> None:
        self.failures, self.opened_at, self.trial = 0, None, False

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.trial or self.failures >= self.threshold:
            self.opened_at, self.trial = now, False

    def retry_in(self, now: float) -> float:
        return 0.0 if self.opened_at is None else max(0.0, self.reset_s - (now - self.opened_at))


class CreditClient:
    """One per hub (``start``/``stop`` open and close its connection pool)."""

    def __init__(self, config: CreditConfig, clock: Callable[[], float] = time.monotonic,
                 rand: Callable[[], float] = random.random) -> None:
        self.config = config
        self.clock = clock
        self.rand = rand
        self.breaker = CircuitBreaker(config.breaker_threshold, config.breaker_reset_s)
        self._http: aiohttp.ClientSession | None = None
        self.requests = 0  # attempts made (for metrics and tests)

    async def start(self) -> None:
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        ctx: ssl.SSLContext | None = None
        if self.config.ca_file or self.config.client_cert:
            ctx = ssl.create_default_context(cafile=self.config.ca_file or None)
            if self.config.client_cert:
                ctx.load_cert_chain(self.config.client_cert, self.config.client_key or None)
        self._http = aiohttp.ClientSession(
            headers=headers, connector=aiohttp.TCPConnector(limit=32, ssl=ctx or True),
            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def circuit(self) -> str:
        return self.breaker.state(self.clock())

    # -- the contract ----------------------------------------------------------------
    async def applications(self, customer_id: str) -> ApplicationList:
        return await self._request("GET", f"/customers/{quote(customer_id, safe='')}"
                                   "/applications", ApplicationList)

    async def application(self, application_id: str) -> Application:
        return await self._request("GET", f"/applications/{quote(application_id, safe='')}",
                                   Application)

    async def post_result(self, result: InterviewResult, idempotency_key: str) -> ResultAck:
        return await self._request(
            "POST", f"/applications/{quote(result.application_id, safe='')}/interview-results",
            ResultAck, body=result.model_dump(mode="json"),
            headers={IDEMPOTENCY_HEADER: idempotency_key})

    # -- transport -------------------------------------------------------------------
    async def _request(self, method: str, path: str, model: type[T],
                       body: Any = None, headers: dict[str, str] | None = None) -> T:
        last: CreditError | None = None
        for attempt in range(self.config.retries + 1):
            if attempt:
                await asyncio.sleep(self._backoff(attempt, last))
            now = self.clock()
            if not self.breaker.allow(now):
                raise CreditError(
                    f"the credit system is unavailable (circuit open, retry in "
                    f"{self.breaker.retry_in(now):.0f} s)", code="credit_unavailable")
            try:
                result = await self._once(method, path, model, body, headers)
            except CreditError as exc:
                if exc.retryable or exc.code == "credit_bad_response":
                    self.breaker.failure(self.clock())
                else:  # the system answered: it is up, even if it refused this one
                    self.breaker.success()
                last = exc
                if not exc.retryable:
                    raise
                continue
            self.breaker.success()
            return result
        assert last is not None
        raise last

    def _backoff(self, attempt: int, last: CreditError | None) -> float:
        delay = min(self.config.backoff_max_s,
                    self.config.backoff_base_s * 2 ** (attempt - 1)) * (0.5 + self.rand())
        retry_after = getattr(last, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.backoff_max_s))
        return delay

    async def _once(self, method: str, path: str, model: type[T], body: Any,
                    headers: dict[str, str] | None) -> T:
        if self._http is None:
            raise CreditError("the credit adapter is not started", code="credit_unavailable")
        url = self.config.base_url.rstrip("/") + API_PREFIX + path
        self.requests += 1
        try:
            async with self._http.request(method, url, json=body, headers=headers) as r:
                text = await r.text()
                status = r.status
                ra = r.headers.get("Retry-After", "")
        except asyncio.TimeoutError:
            raise CreditError(f"the credit system did not answer within "
                              f"{self.config.timeout_s:g} s", code="credit_timeout",
                              retryable=True) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise CreditError(f"the credit system is unreachable ({type(exc).__name__})",
                              code="credit_unavailable", retryable=True) from None
        if status in RETRY_STATUSES:
            err = CreditError(f"the credit system answered {status}",
                              code="credit_unavailable", retryable=True, status=status)
            err.retry_after = float(ra) if ra.strip().isdigit() else None  # type: ignore[attr-defined]
            raise err
        if status == 404:
            raise CreditError("the credit system has no such record", code="credit_not_found",
                              status=status)
        if status == 409:
            raise CreditError("the credit system refused: " + _message(text),
                              code="credit_conflict", status=status)
        if not 200 <= status < 300:
            raise CreditError(f"the credit system refused the request ({status}): "
                              + _message(text), code="credit_refused", status=status)
        try:
            return model.model_validate_json(text)
        except (ValidationError, ValueError) as exc:
            raise CreditError("the credit system's answer is not what the contract says "
                              f"({_first_error(exc)})", code="credit_bad_response",
                              status=status) from None


def _message(text: str) -> str:
    import json
    try:
        msg = json.loads(text)["error"]["message"]
        return str(msg)[:200]
    except Exception:  # noqa: BLE001 - any body
        return "no details"


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs = exc.errors()
        if errs:
            e = errs[0]
            return f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}"[:200]
    return type(exc).__name__
