"""Who acts, and the transaction that carries an administrator's change and its event."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, AsyncIterator, Protocol

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cloudcounter.db.security_log import Event, record_in


@dataclass(frozen=True)
class Actor:
    """``admin:ana`` from an address (the API), or ``cli:root`` (the command line)."""

    actor: str
    source: str = ""
    user_id: int | None = None
    username: str | None = None  # the administrator's own account (self-protection rules)


class SessionControl(Protocol):
    """What the hub's session store does after a change commits (drop cached checks, close
    sockets at once); the CLI has none: other processes notice within seconds."""

    def forget(self, session_ids: set[str], reason: str) -> None: ...

    def invalidate_user(self, user_id: int, reason: str) -> None: ...


class NoSessionControl:
    def forget(self, session_ids: set[str], reason: str) -> None:
        return None

    def invalidate_user(self, user_id: int, reason: str) -> None:
        return None


class Audited:
    """The open transaction of one administrative action: set :attr:`details` (and
    :attr:`target`) as the change is made; the event is written when it commits."""

    def __init__(self, session: AsyncSession, kind: str, target: str) -> None:
        self.session = session
        self.kind = kind
        self.target = target
        self.details: dict[str, Any] = {}


@contextlib.asynccontextmanager
async def audited(sm: async_sessionmaker, who: Actor, kind: str,
                  target: str = "") -> AsyncIterator[Audited]:
    """``async with audited(sm, who, "admin.user_created", "bob") as a: ...``: the change
    made with ``a.session`` and the ``kind`` security event commit together."""
    async with sm() as s, s.begin():
        action = Audited(s, kind, target)
        yield action
        await record_in(s, Event(action.kind, "ok", who.actor, who.source, action.target,
                                 who.user_id, action.details))
