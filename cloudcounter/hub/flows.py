"""The hub side of the service flows: :class:`HubFlowPort` gives
:class:`~cloudcounter.business.service.FlowService` the timeline, the sockets of a call's
agent and customer and of the supervisors, and the position in the call's recordings."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from cloudcounter.signaling.namespaces import LEADS_ROOM, agent_room, customer_room

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

SUPERVISOR_NS = "/supervisor"


class HubFlowPort:
    def __init__(self, ctx: "HubContext") -> None:
        self.ctx = ctx

    def journal(self, call_id: str, actor: str, kind: str, payload: dict[str, Any]) -> None:
        self.ctx.journal.event(call_id, actor, kind, payload)

    def call_updated(self, call_id: str, **fields: Any) -> None:
        self.ctx.journal.call_updated(call_id, **fields)

    async def call_row(self) -> None:
        """The call's row exists before rows that refer to it (the journal is batched)."""
        await self.ctx.journal.flush()

    def position(self, call_id: str) -> dict[str, Any] | None:
        """Where "now" is in the call's recordings: both files of a segment share their
        time origin, so one offset holds for the customer's and the agent's recording."""
        seg = getattr(self.ctx.media, "segments", {}).get(call_id)
        if seg is None:
            return None
        return {"segment": seg.number, "offset_s": round(time.time() - seg.origin_wall, 3),
                "recording_ids": dict(seg.recording_ids)}

    async def to_agent(self, agent_id: int, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=agent_room(agent_id), namespace="/agent")

    async def to_customer(self, customer_id: str, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=customer_room(customer_id),
                                namespace="/customer")

    async def to_leads(self, event: str, data: dict[str, Any]) -> None:
        await self.ctx.sio.emit(event, data, to=LEADS_ROOM, namespace=SUPERVISOR_NS)
