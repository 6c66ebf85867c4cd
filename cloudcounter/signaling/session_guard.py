"""The staff session behind each socket, re-checked: on every event and by a watcher.

A mix-in of every namespace (:class:`cloudcounter.signaling.namespaces.RoleNamespace`):
a connection whose identity is a staff member's (any namespace, present or future) has
its session checked before each event, and all of them every
``CLOUDCOUNTER_SESSION_CHECK_INTERVAL_S`` (at once after a revocation on this hub). A
revoked or expired session, a disabled account, or a role outside ``staff_roles`` ends
the socket: ``session:ended {code, message}``, then a disconnect.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from cloudcounter.errors import CloudCounterError, Forbidden
from cloudcounter.hub.auth import StaffIdentity

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)


class SessionGuard:
    staff_roles: frozenset[str] = frozenset()  # roles allowed on the namespace (staff)
    ctx: "HubContext"
    conns: dict[str, Any]

    if TYPE_CHECKING:  # provided by the namespace (RoleNamespace, socketio.AsyncNamespace)
        def _refused(self, conn: Any, event: Any, exc: CloudCounterError) -> None: ...

        async def emit(self, *args: Any, **kwargs: Any) -> Any: ...

        async def disconnect(self, sid: str, *args: Any, **kwargs: Any) -> Any: ...

    def _wrong_role(self, ident: StaffIdentity) -> CloudCounterError | None:
        if self.staff_roles and ident.role not in self.staff_roles:
            return Forbidden(f"this account is no longer allowed here ({ident.role})",
                             code="wrong_role")
        return None

    async def recheck(self, sid: str, conn: Any) -> None:
        """Before every event: is this staff member still allowed? (customers: nothing)"""
        ident = conn.ident
        if not isinstance(ident, StaffIdentity):
            return
        try:
            current = await self.ctx.security.sessions.check(ident.session_id, ident.user_id)
            wrong = self._wrong_role(current)
            if wrong is not None:
                raise wrong
        except CloudCounterError as exc:
            await self.end_session(sid, exc)
            raise

    async def end_session(self, sid: str, exc: CloudCounterError) -> None:
        """Tell the socket why (``session:ended``) and disconnect it, once the current
        acknowledgement (if any) has gone out."""
        if sid not in self.conns:
            return
        await self.emit("session:ended", {"code": exc.code, "message": exc.message}, to=sid)
        self.ctx.sio.start_background_task(self._disconnect_soon, sid)

    async def _disconnect_soon(self, sid: str) -> None:
        await asyncio.sleep(0)
        await self.disconnect(sid)

    async def watch_sessions(self, interval_s: float, wake: asyncio.Event) -> None:
        """Re-check the sessions of every open staff socket every ``interval_s`` (at once
        when ``wake`` is set), and end the refused ones: a revocation made elsewhere (the
        CLI, another node) reaches idle sockets too."""
        while True:
            try:
                await asyncio.wait_for(wake.wait(), interval_s)
            except asyncio.TimeoutError:
                pass
            wake.clear()
            by_session = {c.ident.session_id: sid for sid, c in list(self.conns.items())
                          if isinstance(c.ident, StaffIdentity)}
            sessions = self.ctx.security.sessions
            try:
                refused = await sessions.check_many(by_session)
                for session_id in set(by_session) - set(refused):
                    wrong = self._wrong_role(await sessions.check(session_id))
                    if wrong is not None:
                        refused[session_id] = wrong
            except Exception as exc:  # noqa: BLE001 - the database is down: try again later
                log.warning("session check failed: %s", type(exc).__name__)
                continue
            for session_id, err in refused.items():
                sid = by_session[session_id]
                conn = self.conns.get(sid)
                if conn is not None:
                    self._refused(conn, "session", err)
                    await self.end_session(sid, err)
