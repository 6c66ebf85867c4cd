"""The service catalogue: name, skill, priority, automatic checks and target answer time.
Services are never deleted (calls refer to them). The hub reloads its catalogue after each
change (``HubContext.load_services``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import ServiceType
from cloudcounter.errors import Conflict, NotFound
from cloudcounter.hub.admin.audit import Actor, audited
from cloudcounter.hub.admin.schemas import ServiceCreate, ServiceUpdate


async def list_services(sm: async_sessionmaker) -> list[dict[str, Any]]:
    return [s.admin_dict() for s in await repo.list_services(sm)]


async def create_service(sm: async_sessionmaker, who: Actor, req: ServiceCreate
                         ) -> dict[str, Any]:
    try:
        async with audited(sm, who, "admin.service_created", req.code) as a:
            row = ServiceType(**req.model_dump())
            a.session.add(row)
            await a.session.flush()
            a.details = req.model_dump()
    except IntegrityError:
        raise Conflict(f"a service {req.code!r} exists already", code="duplicate_service",
                       field="code") from None
    return repo.service_of(row).admin_dict()


async def update_service(sm: async_sessionmaker, who: Actor, code: str, req: ServiceUpdate
                         ) -> dict[str, Any]:
    async with audited(sm, who, "admin.service_updated", code) as a:
        row = (await a.session.scalars(select(ServiceType)
                                       .where(ServiceType.code == code))).first()
        if row is None:
            raise NotFound(f"no service {code!r}", code="unknown_service")
        changes: dict[str, Any] = {}
        for key, value in req.model_dump(exclude_none=True).items():
            if getattr(row, key) != value:
                changes[key] = {"from": getattr(row, key), "to": value}
                setattr(row, key, value)
        a.details = {"changes": changes}
        await a.session.flush()
        result = repo.service_of(row).admin_dict()
    return result
