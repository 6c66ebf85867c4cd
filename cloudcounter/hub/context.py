"""The hub's shared services, built by the app factory and handed to the namespaces."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.business.service import FlowService
from cloudcounter.db import repo
from cloudcounter.db.journal import DbJournal
from cloudcounter.errors import NotFound, Unauthenticated
from cloudcounter.hub.settings import Settings
from cloudcounter.media.port import MediaGateway, NoMedia
from cloudcounter.queue.dispatcher import Dispatcher
from cloudcounter.queue.model import Agent
from cloudcounter.signaling.security import Security

PROFILE_TTL_S = 3600.0


@dataclass
class HubContext:
    settings: Settings
    sio: socketio.AsyncServer
    sm: async_sessionmaker
    journal: DbJournal
    dispatcher: Dispatcher = None  # type: ignore[assignment]
    services: dict[str, repo.Service] = field(default_factory=dict)
    media: MediaGateway = field(default_factory=NoMedia)
    analysis: Any = None  # hub.analysis.manager.AnalysisManager, when vision is enabled
    flows: FlowService = None  # type: ignore[assignment]
    security: Security = None  # type: ignore[assignment]  # sessions, security log, limits
    # operations (docs/operations.md): metrics, webhook publishing and delivery
    metrics: Any = None  # hub.metrics.HubMetrics
    webhooks: Any = None  # webhooks.outbox.WebhookPublisher: for the parts that publish
    webhook_timeline: Any = None  # webhooks.outbox.TimelinePublisher (the journal's hook)
    webhook_dispatcher: Any = None  # webhooks.delivery.WebhookDispatcher
    wallboard: Any = None  # hub.wallboard.Wallboard (team leads' live view)
    loans: Any = None  # hub.loans.HubLoans: the car-loan interview (docs/credit-system.md)
    appointments: Any = None  # hub.appointments.HubAppointments: interview appointments
    cluster: Any = None  # hub.cluster.NodeCluster: this node's lease, others' lapses, presence
    _profiles: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    async def load_services(self) -> None:
        self.services = {s.code: s for s in await repo.list_services(self.sm)}

    async def customer_profile(self, customer_id: str, refresh: bool = False) -> dict[str, Any]:
        """What agents see of a customer. Read from the database when the customer connects
        (``refresh``) and kept for ``PROFILE_TTL_S``, so that offers never wait for it."""
        hit = self._profiles.get(customer_id)
        if not refresh and hit is not None and time.monotonic() - hit[0] < PROFILE_TTL_S:
            return hit[1]
        try:
            c = await repo.get_customer(self.sm, customer_id)
        except NotFound:
            raise Unauthenticated("unknown customer", code="unknown_customer") from None
        profile = {"id": c.id, "name": c.name, "id_number_masked": c.id_number_masked,
                   "phone_masked": mask_phone(c.phone), "risk_level": c.risk_level,
                   "card_last4": c.card_last4,
                   "has_reference_photo": c.face_descriptor is not None}
        if len(self._profiles) > 50_000:
            self._profiles.clear()
        self._profiles[customer_id] = (time.monotonic(), profile)
        return profile

    def agent_state_payload(self, agent: Agent, reason: str) -> dict[str, Any]:
        return {"state": agent.state.value, "reason": reason, "call_id": agent.call_id,
                "since_s": round(time.monotonic() - agent.state_since, 1)}


CTX: web.AppKey[HubContext] = web.AppKey("ctx", HubContext)


def mask_phone(phone: str) -> str:
    return phone[:3] + "*" * max(0, len(phone) - 5) + phone[-2:] if len(phone) > 5 else phone
