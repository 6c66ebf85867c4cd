"""Callbacks: a waiting customer leaves the queue keeping the place.

``call:callback`` turns a queued call into a callback (``Call.callback == "waiting"``, held:
not routed, no grace period). When the call is first in line for its skill the callback is
*due*: the customer's open page is told and the webhook ``callback.due`` tells the bank's
app; the customer has ``callback_answer_s`` to come back, and is then answered first
(``callback_priority``). A due callback not taken up ends ``abandoned`` with cause
``callback_expired``. Every step is on the timeline (``callback.requested``, ``.due``,
``.taken``, ``.cancelled``, ``.expired``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudcounter.errors import Conflict, Forbidden, InvalidState
from cloudcounter.queue import routing
from cloudcounter.queue.model import Call, CallState, EndReason

if TYPE_CHECKING:
    from cloudcounter.queue.dispatcher import Dispatcher

SYSTEM = "system"


class Callbacks:
    """The dispatcher's callback transitions (:attr:`Dispatcher.callbacks`); they run under
    the dispatcher's lock and use its transitions."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.d = dispatcher

    async def request(self, call_id: str, customer_id: str) -> tuple[int, float | None]:
        d = self.d
        async with d._locked():
            call = await d._call(call_id)
            if call.customer_id != customer_id:
                raise Forbidden("not your call")
            if call.state is not CallState.QUEUED:
                raise InvalidState("only a waiting call can become a callback",
                                   code="not_waiting")
            if call.callback is not None:
                raise Conflict("a callback is already requested", code="callback_requested")
            call.callback, call.held = "waiting", True
            call.grace_until = None
            position, eta = await d.positions.position_of(call)
            d._event(call, f"customer:{customer_id}", "callback.requested",
                     position=position, estimated_wait_s=eta)
            return position, eta

    def _due(self, call: Call, now: float) -> None:
        d = self.d
        call.callback = "due"
        call.callback_due_until = now + d.config.callback_answer_s
        d._event(call, SYSTEM, "callback.due", answer_within_s=d.config.callback_answer_s,
                 customer_online=call.customer_online)
        d.outbox.add("callback_due", call, d.config.callback_answer_s)
        if call.customer_online:  # the page is open: answer now
            self.taken(call)

    def taken(self, call: Call) -> None:
        """The customer is back for a due callback: routed first (under the lock)."""
        d = self.d
        call.callback, call.callback_due_until, call.held = None, None, False
        call.priority = max(call.priority, d.config.callback_priority)
        d.positions.changed(call.call_id)
        d._event(call, f"customer:{call.customer_id}", "callback.taken")
        d.positions.resend(call.call_id)
        d._kick.set()

    async def tick(self, now: float) -> None:
        """A waiting callback whose place came up is due; a due one not taken up expires
        (under the lock)."""
        d = self.d
        calls = await d.store.waiting_calls()
        if not any(c.callback for c in calls):
            return
        # the first in line for each skill, not counting callbacks already due (they have
        # their answer window: the next callback's place comes up meanwhile)
        first = routing.first_in_line([d.positions.waiting(c, now) for c in calls
                                       if c.callback != "due"], now, d.config.aging_s)
        for call in calls:
            if call.callback == "waiting" and first.get(call.skill) == call.call_id:
                self._due(call, now)
            elif call.callback == "due" and call.callback_due_until is not None \
                    and now >= call.callback_due_until:
                d._event(call, SYSTEM, "callback.expired")
                await d._end(call, EndReason.ABANDONED, SYSTEM, cause="callback_expired")
