"""The hub side of the car-loan interview (docs/credit-system.md): the credit adapter, the
interviews, the delivery worker of their results, wired to the timeline, the agent's
sockets and the risk engine.

:class:`HubLoans` is ``ctx.loans``; :func:`loans_ctx` opens and closes it with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cloudcounter.business.credit_client import CreditClient, CreditConfig
from cloudcounter.business.credit_delivery import CreditDelivery, DeliveryConfig
from cloudcounter.business.loan import LOAN_SERVICE, LoanInterviews
from cloudcounter.errors import CloudCounterError, InvalidState, NotFound
from cloudcounter.queue.model import CallState
from cloudcounter.signaling.namespaces import agent_room

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)
#: wrap-up outcomes that need no interview outcome (the interview did not take place)
NO_INTERVIEW = frozenset({"customer_left", "no_show"})
MAX_CLOSED = 10_000


class HubLoanPort:
    def __init__(self, ctx: "HubContext", loans: "HubLoans") -> None:
        self.ctx = ctx
        self.loans = loans

    def journal(self, call_id: str, actor: str, kind: str, payload: dict[str, Any]) -> None:
        self.ctx.journal.event(call_id, actor, kind, payload)

    async def call_row(self) -> None:
        await self.ctx.journal.flush()

    async def risk_signal(self, call_id: str, agent_id: int, contradictions: int) -> None:
        await self.ctx.flows.external_signal(call_id, agent_id, "credit_contradictions",
                                             contradictions)

    def wake_delivery(self) -> None:
        if self.loans.delivery is not None:
            self.loans.delivery.wake()


class HubLoans:
    def __init__(self, ctx: "HubContext") -> None:
        s = ctx.settings
        self.ctx = ctx
        self.client = CreditClient(CreditConfig(
            base_url=s.credit_url, timeout_s=s.credit_timeout_s, retries=s.credit_retries,
            breaker_threshold=s.credit_breaker_threshold,
            breaker_reset_s=s.credit_breaker_reset_s, token=s.credit_token,
            client_cert=s.credit_client_cert, client_key=s.credit_client_key,
            ca_file=s.credit_ca_file)) if s.credit_url else None
        self.interviews = LoanInterviews(ctx.sm, self.client, HubLoanPort(ctx, self),
                                         s.credit_income_tolerance)
        self.delivery = CreditDelivery(ctx.sm, self.client, self._delivery_news, DeliveryConfig(
            retry_base_s=s.credit_delivery_retry_base_s,
            retry_max_s=s.credit_delivery_retry_max_s,
            lease_s=4 * s.credit_timeout_s * (s.credit_retries + 1) + 5.0)
        ) if self.client is not None else None
        self._agent_of: dict[str, int] = {}  # closed interviews: whom to tell of delivery
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        if self.client is not None:
            await self.client.start()
        if self.delivery is not None:
            self.delivery.start()
        self.ctx.journal.listeners.append(self._on_timeline)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self.ctx.journal.listeners.remove(self._on_timeline)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.delivery is not None:
            await self.delivery.stop()
        if self.client is not None:
            await self.client.stop()

    # -- the call --------------------------------------------------------------------
    def answered(self, call: Any, agent_id: int, agent_actor: str) -> bool:
        """A call was answered; True when it is a car-loan interview."""
        if call.service != LOAN_SERVICE:
            return False
        flow = self.ctx.flows.calls.get(call.call_id) if self.ctx.flows else None
        reference = flow.flow.facts.get("reference") if flow is not None else None
        self.interviews.started(call.call_id, call.customer_id, agent_id, agent_actor,
                                reference)
        return True

    async def before_wrapup(self, call_id: str, agent_id: int, outcome: str,
                            skip_reason: str | None) -> None:
        """A loan interview is wrapped up only with its outcome recorded; with a skip
        reason, an interview without an outcome is recorded as ``refer``."""
        if outcome in NO_INTERVIEW or not self.interviews.needs_outcome(call_id, agent_id):
            return
        if not skip_reason:
            raise InvalidState("record the interview's outcome (pass, refer or decline) "
                               "before the wrap-up", code="credit_outcome_required")
        try:
            await self.outcome(call_id, agent_id, "refer", [f"not assessed: {skip_reason}"],
                               None)
        except InvalidState as exc:
            if exc.code != "credit_application_unknown":
                raise
            self.ctx.journal.event(call_id, f"agent:{agent_id}", "credit.not_assessed",
                                   {"reason": skip_reason, "sent": False})

    def wrapped_up(self, call_id: str) -> None:
        self.interviews.forget(call_id)

    def _on_timeline(self, call_id: str, actor: str, kind: str, payload: dict[str, Any],
                     at: float) -> None:
        """The wrap-up time ran out with no outcome: the interview is recorded as
        ``refer`` (not assessed), so that the credit system still hears of it."""
        if kind != "wrap_up.timeout":
            return
        iv = self.interviews.calls.get(call_id)
        if iv is None or iv.outcome is not None:
            return
        task = asyncio.create_task(self._not_assessed(call_id, iv.agent_id),
                                   name=f"credit-not-assessed-{call_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _not_assessed(self, call_id: str, agent_id: int) -> None:
        try:
            await self.outcome(call_id, agent_id, "refer",
                               ["not assessed: the wrap-up time ran out"], None)
        except CloudCounterError as exc:
            if exc.code == "credit_application_unknown":
                self.ctx.journal.event(call_id, "system", "credit.not_assessed",
                                       {"reason": "wrap_up_timeout", "sent": False})
            elif exc.code != "interview_closed":
                log.warning("call %s: interview not recorded after the wrap-up time: %s",
                            call_id, exc.code)
        except Exception:  # noqa: BLE001 - the database: logged, the interview stays open
            log.exception("call %s: interview not recorded after the wrap-up time", call_id)

    async def _live_call(self, call_id: str, agent_id: int) -> None:
        call = await self.ctx.dispatcher.store.get_call(call_id)
        if call is None or call.agent_id != agent_id or call.state is not CallState.IN_CALL:
            raise NotFound("no car-loan interview in progress in this call",
                           code="unknown_call")

    # -- the agent's events ------------------------------------------------------------
    async def lookup(self, call_id: str, agent_id: int) -> dict[str, Any]:
        self.interviews.interview(call_id, agent_id)
        await self._live_call(call_id, agent_id)  # the application only during the call
        return await self.interviews.lookup(call_id, agent_id)

    async def view(self, call_id: str, agent_id: int) -> dict[str, Any]:
        return self.interviews.view(call_id, agent_id)

    async def answer(self, call_id: str, agent_id: int, question: str, answer: str
                     ) -> dict[str, Any]:
        return await self.interviews.answer(call_id, agent_id, question, answer)

    async def outcome(self, call_id: str, agent_id: int, outcome: str, reasons: list[str],
                      application_id: str | None) -> dict[str, Any]:
        out = await self.interviews.close(call_id, agent_id, outcome, reasons, application_id)
        if len(self._agent_of) >= MAX_CLOSED:
            self._agent_of.clear()
        self._agent_of[call_id] = agent_id
        if self.client is None:
            out["delivery_note"] = "no credit system is configured: the result waits"
        return out

    async def _delivery_news(self, call_id: str, state: str, details: dict[str, Any]) -> None:
        kind = {"delivered": "credit.result.delivered", "failed": "credit.result.failed"}.get(
            state, "credit.result.retrying")
        self.ctx.journal.event(call_id, "system", kind, details)
        agent_id = self.interviews.delivery_changed(call_id, state)
        if agent_id is None:
            agent_id = self._agent_of.get(call_id)
        if state == "delivered":
            self._agent_of.pop(call_id, None)
        if agent_id is not None:
            with contextlib.suppress(Exception):  # the console may be gone: it is news only
                await self.ctx.sio.emit("credit:delivery", {"call_id": call_id, "state": state,
                                                            **details},
                                        to=agent_room(agent_id), namespace="/agent")


class LoanMetrics(Collector):
    """``/metrics`` of the credit link and the appointments (registered on the hub's
    registry at start-up): requests to the credit system, the circuit, the write-back's
    deliveries and backlog, no-shows."""

    def __init__(self, ctx: "HubContext") -> None:
        self.ctx = ctx

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        loans = self.ctx.loans
        if loans.client is not None:
            yield CounterMetricFamily("cloudcounter_credit_requests", "Requests (attempts) "
                                      "to the credit system", value=loans.client.requests)
            yield GaugeMetricFamily("cloudcounter_credit_circuit_open", "1 while the circuit "
                                    "breaker to the credit system is open",
                                    value=1 if loans.client.circuit == "open" else 0)
        d = loans.delivery
        if d is not None:
            yield CounterMetricFamily("cloudcounter_credit_results_delivered", "Interview "
                                      "results acknowledged by the credit system",
                                      value=d.delivered)
            yield CounterMetricFamily("cloudcounter_credit_result_failed_attempts",
                                      "Failed attempts to deliver interview results",
                                      value=d.failed_attempts)
            backlog = GaugeMetricFamily("cloudcounter_credit_results_backlog", "Interview "
                                        "results not delivered (pending; failed: refused, "
                                        "an operator must act)", labels=["state"])
            for state, n in sorted(d.backlog.items()):
                backlog.add_metric([state], n)
            yield backlog
        if self.ctx.appointments is not None:
            yield CounterMetricFamily("cloudcounter_appointment_no_shows", "Appointments "
                                      "recorded as no-shows", value=self.ctx.appointments.no_shows)


async def loans_ctx(app: web.Application) -> AsyncIterator[None]:
    from cloudcounter.hub.api import CTX

    ctx = app[CTX]
    if ctx.metrics is not None:
        ctx.metrics.registry.register(LoanMetrics(ctx))
    await ctx.loans.start()
    yield
    await ctx.loans.stop()
