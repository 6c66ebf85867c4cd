"""Turns the queue's notifications into Socket.IO events for customers and agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudcounter.media.turn import ice_servers_for
from cloudcounter.queue.model import Agent, AgentState, Call, CallState
from cloudcounter.signaling.namespaces import AGENTS_ROOM, agent_room, customer_room

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

CUSTOMER_NS = "/customer"
AGENT_NS = "/agent"


class SignalingListener:
    """The queue's notices, as Socket.IO events. Every call and agent passed in is a
    snapshot taken when the queue decided the notice (queue.notices)."""

    def __init__(self, ctx: "HubContext") -> None:
        self.ctx = ctx

    async def _to_customer(self, call: Call, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=customer_room(call.customer_id),
                                namespace=CUSTOMER_NS)

    async def _to_agent(self, agent: Agent, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=agent_room(agent.agent_id), namespace=AGENT_NS)

    async def call_queued(self, call: Call, position: int, eta_s: float | None,
                          requeued: bool) -> None:
        await self._to_customer(call, "call:queued", {
            "call_id": call.call_id, "position": position, "estimated_wait_s": eta_s,
            "requeued": requeued})
        if requeued:
            await self.ctx.flows.call_requeued(call.call_id)
            await self.ctx.media.close_leg(call.call_id, "agent")

    async def position_changed(self, call: Call, position: int, eta_s: float | None) -> None:
        # ``call`` is the snapshot taken when the position was computed: if the live call
        # was answered or ended meanwhile, the update is stale
        live = await self.ctx.dispatcher.store.get_call(call.call_id)
        if live is None or live.state is not CallState.QUEUED:
            return
        await self._to_customer(call, "call:position", {
            "call_id": call.call_id, "position": position, "estimated_wait_s": eta_s})

    async def call_offered(self, call: Call, agent: Agent, expires_in_s: float) -> None:
        service = self.ctx.services.get(call.service)
        await self._to_agent(agent, "call:offer", {
            "call_id": call.call_id, "expires_in_s": expires_in_s, "priority": call.priority,
            "service": service.to_dict() if service else {"code": call.service},
            "customer": await self.ctx.customer_profile(call.customer_id)})

    async def offer_withdrawn(self, call: Call, agent: Agent, reason: str) -> None:
        await self._to_agent(agent, "call:offer_withdrawn",
                             {"call_id": call.call_id, "reason": reason})

    async def callback_due(self, call: Call, answer_within_s: float) -> None:
        # the page, if open (the bank's app hears it by webhook: callback.due)
        await self._to_customer(call, "call:callback_due", {
            "call_id": call.call_id, "answer_within_s": answer_within_s})

    async def call_accepted(self, call: Call, agent: Agent) -> None:
        await self._to_customer(call, "call:accepted", {
            "call_id": call.call_id, "agent": {"display_name": agent.display_name or "Agent"},
            "ice_servers": ice_servers_for(self.ctx.settings, f"customer.{call.call_id}")})

    async def call_ended(self, call: Call, reason: str, by: str, agent: Agent | None) -> None:
        data = {"call_id": call.call_id, "reason": reason, "by": by.split(":")[0]}
        await self._to_customer(call, "call:ended", data)
        if agent is not None:
            await self._to_agent(agent, "call:ended", {
                **data, "wrap_up_s": self.ctx.dispatcher.config.wrap_up_s})
        await self.ctx.flows.call_ended(call.call_id)
        await self.ctx.media.close_call(call.call_id, reason)

    async def agent_state_changed(self, agent: Agent, previous: AgentState, reason: str) -> None:
        if agent.state is not AgentState.OFFLINE:
            await self._to_agent(agent, "agent:state",
                                 self.ctx.agent_state_payload(agent, reason))

    async def queue_stats(self, stats: list[dict[str, Any]]) -> None:
        await self.ctx.sio.emit("queue:stats", {"services": stats}, to=AGENTS_ROOM,
                                namespace=AGENT_NS)
