"""Staff accounts: create, edit role and skills, reset the password, disable and enable,
end sessions, enrol a second factor. Each action and its ``admin.*`` event commit together;
a refused one changes nothing.

Rules beyond the schemas: skills must be known (a service's skill or ``senior``) and only
agents have them; the password policy of :mod:`cloudcounter.agents.passwords`; an
administrator cannot disable or demote their own account; the last enabled administrator
cannot be disabled or demoted (someone must be able to administer)."""

from __future__ import annotations

import asyncio
import secrets
import string
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.agents.passwords import new_totp_secret, password_problem, provisioning_uri
from cloudcounter.agents.sessions import revoke_in
from cloudcounter.db import repo
from cloudcounter.db.models import AgentSkill, Role, User
from cloudcounter.db.security_models import StaffSession
from cloudcounter.errors import Conflict, InvalidMessage, NotFound
from cloudcounter.hub.admin.audit import Actor, SessionControl, audited
from cloudcounter.hub.admin.schemas import UserCreate, UserUpdate
from cloudcounter.hub.auth import hash_password


def _iso(v: datetime | None) -> str | None:
    return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat() if v else None


def view(u: User, live: int = 0, last: datetime | None = None) -> dict[str, Any]:
    return {"username": u.username, "display_name": u.display_name, "role": u.role,
            "disabled": u.disabled, "skills": u.skill_codes,
            "preferred_skills": u.preferred_codes,
            "totp_enrolled": bool(u.totp_secret), "live_sessions": live,
            "created_at": _iso(u.created_at), "last_sign_in_at": _iso(last)}


async def list_users(sm: async_sessionmaker) -> list[dict[str, Any]]:
    now = datetime.now(timezone.utc)
    async with sm() as s:
        users = (await s.scalars(select(User).order_by(User.username))).all()
        live = dict((await s.execute(
            select(StaffSession.user_id, func.count()).where(
                StaffSession.revoked_at.is_(None), StaffSession.expires_at > now)
            .group_by(StaffSession.user_id))).all())
        last = dict((await s.execute(select(StaffSession.user_id, func.max(
            StaffSession.created_at)).group_by(StaffSession.user_id))).all())
    return [view(u, int(live.get(u.id, 0)), last.get(u.id)) for u in users]


def generate_password() -> str:
    """A password the policy accepts, to hand over once (20 characters)."""
    alphabet = string.ascii_letters + string.digits + "-_.!"
    while True:
        candidate = "".join(secrets.choice(alphabet) for _ in range(20))
        if password_problem("", candidate) is None:
            return candidate


async def _password_hash(username: str, password: str) -> str:
    problem = password_problem(username, password)
    if problem is not None:
        raise InvalidMessage(problem, code="weak_password", field="password")
    return await asyncio.to_thread(hash_password, password)


async def _check_skills(sm: async_sessionmaker, role: str, skills: Sequence[str]) -> None:
    if role != Role.AGENT.value and skills:
        raise InvalidMessage("only agents have skills: give a team lead, auditor or "
                             "administrator none", code="invalid_skill", field="skills")
    known = await repo.known_skills(sm)
    unknown = sorted(set(skills) - known)
    if unknown:
        raise InvalidMessage(f"unknown skill(s): {', '.join(unknown)} (known: "
                             f"{', '.join(sorted(known))})", code="unknown_skill",
                             field="skills")


def _check_preferred(skills: Sequence[str], preferred: Sequence[str]) -> None:
    extra = sorted(set(preferred) - set(skills))
    if extra:
        raise InvalidMessage(f"preferred skills must be among the agent's skills: "
                             f"{', '.join(extra)} is not", code="invalid_preferred_skill",
                             field="preferred_skills")


def _skill_rows(skills: Sequence[str], preferred: Sequence[str], **kw: Any
                ) -> list[AgentSkill]:
    return [AgentSkill(skill=k, preferred=k in preferred, **kw) for k in sorted(set(skills))]


async def _user(s: AsyncSession, username: str) -> User:
    user = (await s.scalars(select(User).where(User.username == username))).first()
    if user is None:
        raise NotFound(f"no user {username!r}", code="unknown_user")
    return user


async def _keep_an_admin(s: AsyncSession, user: User) -> None:
    """Refuse when ``user`` is the last enabled administrator."""
    if user.role != Role.ADMIN.value or user.disabled:
        return
    others = await s.scalar(select(func.count()).select_from(User).where(
        User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user.id))
    if not others:
        raise Conflict("this is the last enabled administrator: make another one first",
                       code="last_admin")


async def create_user(sm: async_sessionmaker, who: Actor, req: UserCreate
                      ) -> tuple[dict[str, Any], str | None]:
    """The new account, and its password when the hub generated it (shown once)."""
    await _check_skills(sm, req.role.value, req.skills)
    _check_preferred(req.skills, req.preferred_skills)
    generated = None if req.password else generate_password()
    password_hash = await _password_hash(req.username, req.password or generated or "")
    try:
        async with audited(sm, who, "admin.user_created", req.username) as a:
            user = User(username=req.username, display_name=req.display_name or req.username,
                        password_hash=password_hash, role=req.role.value,
                        skills=_skill_rows(req.skills, req.preferred_skills))
            a.session.add(user)
            await a.session.flush()
            a.details = {"role": user.role, "skills": list(req.skills),
                         "preferred_skills": list(req.preferred_skills),
                         "password": "generated" if generated else "set"}
    except IntegrityError:
        raise Conflict(f"username {req.username!r} is already taken",
                       code="duplicate_username", field="username") from None
    return view(user), generated


async def update_user(sm: async_sessionmaker, who: Actor, username: str, req: UserUpdate,
                      sessions: SessionControl, kind: str = "admin.user_updated"
                      ) -> dict[str, Any]:
    """Display name, role and skills; takes effect at once (sessions re-read them)."""
    async with sm() as s:
        current = await _user(s, username)
    role = req.role.value if req.role is not None else current.role
    skills = req.skills if req.skills is not None else current.skill_codes
    if role != current.role and role != Role.AGENT.value and req.skills is None:
        skills = []  # a new role without skills: an agent's skills go with the old role
    await _check_skills(sm, role, skills)
    preferred = sorted(set(current.preferred_codes) & set(skills)) \
        if req.preferred_skills is None else req.preferred_skills
    _check_preferred(skills, preferred)
    async with audited(sm, who, kind, username) as a:
        user = await _user(a.session, username)
        if role != user.role:
            if who.username == user.username:
                raise Conflict("you cannot change your own role", code="cannot_change_self",
                               field="role")
            if user.role == Role.ADMIN.value:
                await _keep_an_admin(a.session, user)
        changes: dict[str, Any] = {}
        if req.display_name is not None and req.display_name != user.display_name:
            changes["display_name"] = user.display_name = req.display_name
        if role != user.role:
            changes["role"] = {"from": user.role, "to": role}
            user.role = role
        if sorted(skills) != user.skill_codes or sorted(preferred) != user.preferred_codes:
            if sorted(skills) != user.skill_codes:
                changes["skills"] = {"from": user.skill_codes, "to": sorted(skills)}
            if sorted(preferred) != user.preferred_codes:
                changes["preferred_skills"] = {"from": user.preferred_codes,
                                               "to": sorted(preferred)}
            await a.session.execute(delete(AgentSkill).where(AgentSkill.user_id == user.id))
            a.session.add_all(_skill_rows(skills, preferred, user_id=user.id))
        a.details = {"changes": changes, "role": role}
        await a.session.flush()
        await a.session.refresh(user, ["skills"])
        result = view(user)
    sessions.invalidate_user(user.id, "account_changed")
    return result


async def set_password(sm: async_sessionmaker, who: Actor, username: str,
                       password: str | None, sessions: SessionControl
                       ) -> tuple[dict[str, Any], str | None, int]:
    """A new password (generated when none is given: returned once); ends the account's
    sessions. Returns (user, generated password, sessions ended)."""
    async with sm() as s:
        user = await _user(s, username)
    generated = None if password else generate_password()
    password_hash = await _password_hash(user.username, password or generated or "")
    async with audited(sm, who, "admin.password_set", username) as a:
        user = await _user(a.session, username)
        user.password_hash = password_hash
        ended = await revoke_in(a.session, reason="password_changed", by=who.actor,
                                user_id=user.id)
        a.details = {"sessions_ended": len(ended),
                     "password": "generated" if generated else "set"}
    sessions.forget(ended, "password_changed")
    sessions.invalidate_user(user.id, "password_changed")
    return view(user), generated, len(ended)


async def set_disabled(sm: async_sessionmaker, who: Actor, username: str, disabled: bool,
                       sessions: SessionControl) -> tuple[dict[str, Any], int]:
    kind = "admin.disable" if disabled else "admin.enable"
    async with audited(sm, who, kind, username) as a:
        user = await _user(a.session, username)
        ended: set[str] = set()
        if disabled:
            if who.username == user.username:
                raise Conflict("an administrator cannot disable their own account",
                               code="cannot_disable_self")
            await _keep_an_admin(a.session, user)
            ended = await revoke_in(a.session, reason="account_disabled", by=who.actor,
                                    user_id=user.id)
        user.disabled = disabled
        a.details = {"sessions_ended": len(ended), "role": user.role}
    sessions.forget(ended, "account_disabled")
    sessions.invalidate_user(user.id, "account_disabled" if disabled else "account_enabled")
    return view(user), len(ended)


async def end_sessions(sm: async_sessionmaker, who: Actor, username: str,
                       sessions: SessionControl) -> tuple[dict[str, Any], int]:
    async with audited(sm, who, "admin.end_sessions", username) as a:
        user = await _user(a.session, username)
        ended = await revoke_in(a.session, reason="ended_by_admin", by=who.actor,
                                user_id=user.id)
        a.details = {"sessions_ended": len(ended), "role": user.role}
    sessions.forget(ended, "ended_by_admin")
    sessions.invalidate_user(user.id, "ended_by_admin")
    return view(user), len(ended)


async def enrol_totp(sm: async_sessionmaker, who: Actor, username: str
                     ) -> tuple[dict[str, Any], str, str]:
    """A new TOTP secret (replacing any): (user, secret, otpauth:// URI), shown once."""
    secret = new_totp_secret()
    async with audited(sm, who, "admin.totp_enrolled", username) as a:
        user = await _user(a.session, username)
        user.totp_secret, user.totp_last_step = secret, None
    return view(user), secret, provisioning_uri(secret, user.username)
