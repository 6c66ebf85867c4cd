"""The service catalogue: name, skill, priority, automatic checks, target answer time and
routing rules (pool widening, overflow, consecutive offers: docs/routing.md).
Services are never deleted (calls refer to them). The hub reloads its catalogue after each
change (``HubContext.load_services``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import ServiceType
from cloudcounter.errors import Conflict, InvalidMessage, NotFound
from cloudcounter.hub.admin.audit import Actor, audited
from cloudcounter.hub.admin.schemas import RoutingRules, ServiceCreate, ServiceUpdate
from cloudcounter.queue.routing import ServiceRules


async def _check_routing(sm: async_sessionmaker, required_skill: str, rules: ServiceRules
                         ) -> None:
    """The rules' skills are known ones, and not the service's own."""
    known = await repo.known_skills(sm)
    for name, skills in (("fallback_skills", rules.fallback_skills),
                         ("overflow_skills", rules.overflow_skills)):
        unknown = sorted(skills - known)
        if unknown:
            raise InvalidMessage(f"unknown skill(s) in the routing rules: {', '.join(unknown)}"
                                 f" (known: {', '.join(sorted(known))})", code="unknown_skill",
                                 field=f"routing.{name}")
        if required_skill in skills:
            raise InvalidMessage(f"{name.replace('_', ' ')} cannot include the service's own "
                                 f"skill {required_skill!r}: its agents take the calls anyway",
                                 code="invalid_routing", field=f"routing.{name}")


async def _service(s: AsyncSession, code: str) -> ServiceType:
    row = (await s.scalars(select(ServiceType).where(ServiceType.code == code))).first()
    if row is None:
        raise NotFound(f"no service {code!r}", code="unknown_service")
    return row


def _stored(req: RoutingRules | None) -> dict[str, Any] | None:
    return None if req is None else req.rules().to_dict()


async def list_services(sm: async_sessionmaker) -> list[dict[str, Any]]:
    return [s.admin_dict() for s in await repo.list_services(sm)]


async def create_service(sm: async_sessionmaker, who: Actor, req: ServiceCreate
                         ) -> dict[str, Any]:
    try:
        if req.routing is not None:
            await _check_routing(sm, req.required_skill, req.routing.rules())
        async with audited(sm, who, "admin.service_created", req.code) as a:
            row = ServiceType(**req.model_dump(exclude={"routing"}),
                              routing=_stored(req.routing))
            a.session.add(row)
            await a.session.flush()
            a.details = {**req.model_dump(exclude={"routing"}),
                         "routing": repo.service_of(row).routing.to_dict()}
    except IntegrityError:
        raise Conflict(f"a service {req.code!r} exists already", code="duplicate_service",
                       field="code") from None
    return repo.service_of(row).admin_dict()


async def update_service(sm: async_sessionmaker, who: Actor, code: str, req: ServiceUpdate
                         ) -> dict[str, Any]:
    async with sm() as s:
        current = await _service(s, code)
    rules = repo.service_of(current).routing if req.routing is None else req.routing.rules()
    required = req.required_skill or current.required_skill
    if req.routing is not None or required != current.required_skill:
        await _check_routing(sm, required, rules)  # before anything is written
    async with audited(sm, who, "admin.service_updated", code) as a:
        row = await _service(a.session, code)
        before = repo.service_of(row).routing
        changes: dict[str, Any] = {}
        for key, value in req.model_dump(exclude_none=True, exclude={"routing"}).items():
            if getattr(row, key) != value:
                changes[key] = {"from": getattr(row, key), "to": value}
                setattr(row, key, value)
        if rules != before:
            changes["routing"] = {"from": before.to_dict(), "to": rules.to_dict()}
            row.routing = rules.to_dict()
        a.details = {"changes": changes}
        await a.session.flush()
        result = repo.service_of(row).admin_dict()
    return result
