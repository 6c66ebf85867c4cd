"""A team lead takes over a call whose agent dropped.

When an agent's connection drops in the middle of a call, the call goes back to its original
place in the queue (``call.requeued``, reason ``agent_disconnected``) and remembers who
dropped it (``Call.dropped_by``). Until it is answered again, a team lead signed in to the
agent console may take it over: the call is answered by the lead at once (no offer, no
timeout), the customer is told who now serves them, the business flow goes on where the agent
left it, and the timeline says ``call.taken_over`` (by whom, from whom, after how long). A
lead on the agent console is never routed a call: it carries only the calls it takes over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudcounter.errors import Forbidden, InvalidState
from cloudcounter.queue.model import Agent, AgentState, Call, CallState

if TYPE_CHECKING:
    from cloudcounter.queue.dispatcher import Dispatcher


class LeadTakeover:
    """The dispatcher's lead-facing transitions (:attr:`Dispatcher.leads`); they run under
    the dispatcher's lock and use its transitions."""

    def __init__(self, dispatcher: "Dispatcher") -> None:
        self.d = dispatcher

    async def lead_online(self, lead_id: int, username: str, display_name: str = "") -> Agent:
        """A team lead opens the agent console: present, away, with no skills (never
        routed, not counted as staffed)."""
        d = self.d
        async with d._locked():
            agent = await d.store.get_agent(lead_id)
            if agent is None:
                agent = Agent(lead_id, username, frozenset(), display_name,
                              state_since=d.clock(), lead=True)
                await d.store.put_agent(agent)
            agent.lead, agent.skills, agent.preferred = True, frozenset(), frozenset()
            agent.display_name = display_name or agent.display_name
            if agent.state is AgentState.OFFLINE:
                d._set_agent(agent, AgentState.AWAY, "signed_in")
            return agent

    async def take_over(self, lead_id: int, call_id: str) -> Call:
        """Answer, as the lead ``lead_id``, a call whose agent dropped while it waits again
        (queued, or offered to another agent: that offer is withdrawn, not the agent's
        fault)."""
        d = self.d
        async with d._locked():
            lead = await d._agent(lead_id)
            if not lead.lead:
                raise Forbidden("only a team lead takes over a call", code="lead_only")
            call = await d._call(call_id)
            if call.dropped_by is None or call.state is CallState.IN_CALL:
                raise InvalidState("this call's agent has not dropped: nothing to take over",
                                   code="not_dropped")
            if lead.state is not AgentState.AWAY or lead.call_id is not None:
                raise InvalidState("finish your current call first", code="lead_busy")
            if call.held or not call.customer_online:
                raise InvalidState("the customer is not connected at the moment",
                                   code="customer_away")
            actor = lead.actor
            if call.state is CallState.OFFERED:
                await d._withdraw(call, "taken_over")
            now = d.clock()
            waited = now - call.dropped_at if call.dropped_at is not None else None
            from_agent = call.dropped_by
            call.transition(CallState.OFFERED)
            call.transition(CallState.IN_CALL)
            call.agent_id, call.offer_expires_at, call.answered_at = lead_id, None, now
            call.dropped_by = call.dropped_at = None
            d.positions.changed(call.call_id)
            d.positions.resend(call.call_id)
            lead.call_id = call.call_id
            d._event(call, actor, "call.taken_over", lead=lead.username,
                        from_agent=from_agent,
                        after_s=round(waited, 1) if waited is not None else None)
            d._set_agent(lead, AgentState.BUSY, "taken_over", call, actor)
            d._event(call, actor, "call.answered", agent=lead.username, taken_over=True)
            d.journal.call_updated(call_id, state=call.state.value, answered_at=d.wall(),
                                      agent_id=lead_id)
            d.outbox.add("call_accepted", call, lead)
            return call
