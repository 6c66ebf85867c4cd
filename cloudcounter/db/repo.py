"""Queries and commands over users, customers and services (the app's data access)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.agents.skills import GENERAL_SKILLS
from cloudcounter.db.models import AgentSkill, Customer, Role, ServiceType, User
from cloudcounter.errors import Conflict, InvalidMessage, NotFound
from cloudcounter.queue.routing import NO_RULES, ServiceRules


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    kind: str
    required_skill: str
    priority: int
    auto_checks: tuple[str, ...]
    target_answer_s: int = 60
    # pool widening, overflow, consecutive offers (cloudcounter.queue.routing.ServiceRules)
    routing: ServiceRules = NO_RULES

    def to_dict(self) -> dict[str, object]:
        return {"code": self.code, "name": self.name, "kind": self.kind,
                "required_skill": self.required_skill,
                "auto_checks": list(self.auto_checks)}

    def admin_dict(self) -> dict[str, object]:
        """Everything an administrator edits (``/api/admin/services``)."""
        return {**self.to_dict(), "priority": self.priority,
                "target_answer_s": self.target_answer_s, "routing": self.routing.to_dict()}


def new_customer_id() -> str:
    return "cus_" + secrets.token_hex(8)


async def list_services(sm: async_sessionmaker) -> list[Service]:
    async with sm() as s:
        rows = (await s.scalars(select(ServiceType).order_by(ServiceType.code))).all()
    return [service_of(r) for r in rows]


def service_of(r: ServiceType) -> Service:
    return Service(r.code, r.name, r.kind, r.required_skill, r.priority,
                   tuple(r.auto_checks or ()), r.target_answer_s,
                   ServiceRules.from_dict(r.routing))


async def known_skills(sm: async_sessionmaker) -> set[str]:
    """The skills services require, and the general ones (``senior``)."""
    return {s.required_skill for s in await list_services(sm)} | set(GENERAL_SKILLS)


async def add_user(
    sm: async_sessionmaker, *, username: str, password_hash: str, role: Role,
    display_name: str | None = None, skills: Sequence[str] = (),
) -> User:
    if role is not Role.AGENT and skills:
        raise InvalidMessage("only agents have skills", code="invalid_skill")
    if skills:
        unknown = sorted(set(skills) - await known_skills(sm))
        if unknown:
            raise InvalidMessage(
                f"unknown skill(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(await known_skills(sm)))})", code="unknown_skill")
    async with sm() as s:
        user = User(username=username, display_name=display_name or username,
                    password_hash=password_hash, role=role.value,
                    skills=[AgentSkill(skill=k) for k in sorted(set(skills))])
        s.add(user)
        try:
            await s.commit()
        except IntegrityError:
            raise Conflict(f"username {username!r} is already taken",
                           code="duplicate_username") from None
        return user


async def get_user(sm: async_sessionmaker, *, username: str | None = None,
                   user_id: int | None = None) -> User | None:
    async with sm() as s:
        stmt = select(User)
        stmt = stmt.where(User.username == username) if username is not None else stmt.where(
            User.id == user_id)
        return (await s.scalars(stmt)).first()


async def add_customer(s: AsyncSession, customer: Customer) -> Customer:
    s.add(customer)
    await s.flush()
    return customer


async def get_customer(sm: async_sessionmaker, customer_id: str) -> Customer:
    async with sm() as s:
        c = await s.get(Customer, customer_id)
    if c is None:
        raise NotFound(f"no customer {customer_id!r}", code="unknown_customer")
    return c
