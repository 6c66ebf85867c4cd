"""Socket.IO namespaces: ``/customer`` and ``/agent``.

Every inbound event goes through :meth:`RoleNamespace.trigger_event`: the caller's session
is looked up (and, for staff, re-checked against the database: a revoked session, a
disabled account or a changed role ends the socket with ``session:ended``), the payload
validated against its schema, the handler called, and the result (or the error, with its
stable code) returned as the acknowledgement. Nothing a client sends can raise out of
here; refusals are logged once, briefly, rate-limited (``Security.refused``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import socketio
from socketio.exceptions import ConnectionRefusedError

from cloudcounter.errors import (
    CloudCounterError, Forbidden, InvalidMessage, InvalidState, NotFound, Unauthenticated,
)
from cloudcounter.logs import CALL_ID, actor_fields, log_context
from cloudcounter.media.turn import ice_servers_for
from cloudcounter.hub.auth import (
    CustomerIdentity, StaffIdentity, mint_customer_token, verify_customer_token,
    verify_staff_token,
)
from cloudcounter.queue.model import AgentState, CallState, IllegalTransition
from cloudcounter.signaling import edge
from cloudcounter.signaling.clientinfo import from_environ
from cloudcounter.signaling.loan_events import AppointmentCustomerEvents, LoanAgentEvents
from cloudcounter.signaling.session_guard import SessionGuard
from cloudcounter.signaling.schemas import (
    AGENT_EVENTS, CUSTOMER_EVENTS, SUPERVISOR_EVENTS, SUPPORTED_VERSIONS, ApprovalDecision,
    ApprovalRequest, CallRef, CallRequest, CheckLiveness, Concern, MediaOffer, Message,
    MonitorOffer, Note,
    PromptAnswer, StatusSet, StepComplete, StepRef, Wrapup, parse_version,
)

if TYPE_CHECKING:
    from cloudcounter.hub.context import HubContext

log = logging.getLogger(__name__)
SESSION_COOKIE = "cc_session"


def customer_room(customer_id: str) -> str:
    return f"cus:{customer_id}"


def agent_room(agent_id: int) -> str:
    return f"agt:{agent_id}"


AGENTS_ROOM = "agents"
LEADS_ROOM = "leads"


def refuse(exc: CloudCounterError) -> ConnectionRefusedError:
    # The client receives {"message": ..., "data": {"code": ..., "message": ...}}.
    return ConnectionRefusedError(exc.message, exc.to_dict())


def staff_identity(ctx: "HubContext", token: Any) -> StaffIdentity:
    """The staff identity of a token for a staff namespace; a valid customer token is
    ``wrong_role`` (it authenticates, but not for this namespace)."""
    try:
        return verify_staff_token(ctx.settings.secret_key, token)
    except Unauthenticated as exc:
        if exc.code == "unauthenticated" and _verifies(
                lambda: verify_customer_token(ctx.settings.customer_token_secret, token)):
            raise Forbidden("a customer token is for /customer", code="wrong_role") from None
        raise


def customer_identity(ctx: "HubContext", token: Any) -> CustomerIdentity:
    """The customer of a token for ``/customer``; a valid staff token is ``wrong_role``."""
    try:
        return verify_customer_token(ctx.settings.customer_token_secret, token,
                                     ctx.settings.customer_token_max_ttl_s)
    except Unauthenticated as exc:
        if exc.code == "unauthenticated" and _verifies(
                lambda: verify_staff_token(ctx.settings.secret_key, token)):
            raise Forbidden("staff use /agent, /supervisor or the web pages, not /customer",
                            code="wrong_role") from None
        raise


def _verifies(check: Callable[[], Any]) -> bool:
    try:
        check()
    except CloudCounterError:
        return False
    return True


def check_version(auth: Any) -> tuple[int, int]:
    """The (major, minor) protocol version the client speaks (absent: 1.0)."""
    raw = auth.get("protocol", 1) if isinstance(auth, dict) else 1
    version = parse_version(raw)
    if version is None or version[0] not in SUPPORTED_VERSIONS:
        raise InvalidMessage(f"protocol version {str(raw)[:16]!r} is not supported "
                             f"(supported: {sorted(SUPPORTED_VERSIONS)}, any minor)",
                             code="unsupported_protocol")
    return version


@dataclass
class Conn:
    """What the hub knows about one connection (kept outside the Socket.IO session)."""

    role: str
    ident: CustomerIdentity | StaffIdentity
    profile: dict[str, Any] = field(default_factory=dict)
    version: tuple[int, int] = (1, 0)
    address: str = ""  # the client's network address (cloudcounter.signaling.clientinfo)

    @property
    def prompts(self) -> bool:
        """Protocol 1.1 or later: the client shows statements and questions."""
        return self.version >= (1, 1)


class RoleNamespace(SessionGuard, socketio.AsyncNamespace):
    events: dict[str, type[Message]] = {}

    def __init__(self, namespace: str, ctx: "HubContext") -> None:
        super().__init__(namespace)
        self.ctx = ctx
        self.conns: dict[str, Conn] = {}

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid, payload = args[0], tuple(args[1:])
        conn = self.conns.get(sid)
        data = payload[0] if payload and isinstance(payload[0], dict) else {}
        call_id = data.get("call_id") if isinstance(data.get("call_id"), str) else None
        with log_context(call_id=call_id if call_id and CALL_ID.fullmatch(call_id) else None,
                         **(actor_fields(conn.ident.actor) if conn is not None else {})):
            return await self._dispatch(event, sid, conn, payload)

    async def _dispatch(self, event: str, sid: str, conn: "Conn | None",
                        payload: tuple[Any, ...]) -> Any:
        try:
            if conn is None:
                raise Unauthenticated("not signed in")
            if not isinstance(event, str):
                raise InvalidMessage("event name must be a string")
            await self.recheck(sid, conn)
            msg = edge.decode(event, payload, self.events, self.ctx.settings.max_message_bytes)
            handler: Callable[[str, Conn, Any], Awaitable[dict[str, Any] | None]] = getattr(
                self, "ev_" + event.replace(":", "_"))
            return edge.ok(**(await handler(sid, conn, msg) or {}))
        except CloudCounterError as exc:
            self._refused(conn, event, exc)
            return edge.error(exc)
        except IllegalTransition as exc:
            self._refused(conn, event, InvalidState(str(exc)))
            return edge.error(InvalidState(str(exc)))
        except Exception as exc:  # noqa: BLE001 - a bug: logged (rate-limited), never raised
            self.ctx.security.refusals.failed(f"{self.namespace} {event}",
                                              self._who(conn), exc)
            return edge.error(CloudCounterError("internal error"))

    def _who(self, conn: Conn | None) -> str:
        return f"{conn.ident.actor}@{conn.address}" if conn is not None else "?"

    def _refused(self, conn: Conn | None, event: Any, exc: CloudCounterError) -> None:
        ident = conn.ident if conn is not None else None
        self.ctx.security.refused(exc, f"{self.namespace} {str(event)[:64]}",
                                  ident.actor if ident else "",
                                  conn.address if conn is not None else "",
                                  getattr(ident, "user_id", None))

    def _opened(self, sid: str, environ: dict[str, Any]) -> str:
        """Count the connection against its address's limit; returns the address."""
        address = from_environ(environ, self.ctx.security.trusted).address
        self.ctx.security.connection_opened(address)
        return address

    def _refuse(self, exc: CloudCounterError, environ: dict[str, Any]) -> ConnectionRefusedError:
        address = from_environ(environ, self.ctx.security.trusted).address
        self.ctx.security.refused(exc, f"connect {self.namespace}", "", address)
        return refuse(exc)

    def _closed(self, conn: Conn) -> None:
        self.ctx.security.connection_closed(conn.address)

    async def _present(self, kind: str, ident: Any, here: bool) -> None:
        """Presence (which node holds the connection, for several nodes): a write that
        fails (Redis down) is logged and never refuses or breaks a connection."""
        presence = getattr(self.ctx.cluster, "presence", None)
        if presence is None:
            return
        try:
            await (presence.connected if here else presence.disconnected)(kind, str(ident))
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            log.warning("presence of %s %s not recorded: %s", kind, ident, exc)

    async def ev_media_offer(self, sid: str, conn: Conn, msg: MediaOffer) -> dict[str, Any]:
        call = await self.ctx.dispatcher.store.get_call(msg.call_id)
        if call is None or not self.owns(conn, call):
            raise NotFound("no such call", code="unknown_call")
        if call.state is not CallState.IN_CALL:
            raise InvalidState("media starts once the call is answered")
        answer = await self.ctx.media.answer(call.call_id, conn.role, msg.sdp)
        return {"call_id": call.call_id, "type": "answer", "sdp": answer}

    def owns(self, conn: Conn, call: Any) -> bool:
        raise NotImplementedError


class CustomerNamespace(AppointmentCustomerEvents, RoleNamespace):
    events = CUSTOMER_EVENTS

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            version = check_version(auth)
            token = auth.get("token") if isinstance(auth, dict) else None
            ident = customer_identity(self.ctx, token)
            profile = await self.ctx.customer_profile(ident.customer_id, refresh=True)
            address = self._opened(sid, environ)
        except CloudCounterError as exc:
            raise self._refuse(exc, environ) from None
        conn = Conn("customer", ident, profile, version, address)
        self.conns[sid] = conn
        await self.enter_room(sid, customer_room(ident.customer_id))
        await self._present("customer", ident.customer_id, True)
        call = await self.ctx.dispatcher.active_call_of(ident.customer_id)
        if call is not None:
            await self.ctx.dispatcher.customer_reconnected(call.call_id)
            await self.ctx.flows.customer_connected(call.call_id, conn.address, conn.prompts)
            await self.emit("call:state", await self.call_state(call), to=sid)

    async def call_state(self, call: Any) -> dict[str, Any]:
        """Everything a reconnecting client needs to pick the call up where it was."""
        state: dict[str, Any] = {"call_id": call.call_id, "state": call.state.value}
        if call.state is CallState.QUEUED:
            state["position"], state["estimated_wait_s"] = \
                await self.ctx.dispatcher.position_of(call)
        elif call.state is CallState.IN_CALL and call.agent_id is not None:
            agent = await self.ctx.dispatcher.store.get_agent(call.agent_id)
            state["agent"] = {"display_name": (agent.display_name if agent else "") or "Agent"}
            state["ice_servers"] = ice_servers_for(self.ctx.settings,
                                                   f"customer.{call.call_id}")
            prompt = self.ctx.flows.open_prompt(call.call_id)
            if prompt is not None:  # protocol 1.1: the statement or question shown
                state["prompt"] = prompt
        return state

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.conns.pop(sid, None)
        if conn is None:
            return
        self._closed(conn)
        cid = conn.ident.customer_id  # type: ignore[union-attr]
        if any(getattr(c.ident, "customer_id", None) == cid for c in self.conns.values()):
            return  # another connection of the same customer remains
        await self._present("customer", cid, False)
        call = await self.ctx.dispatcher.active_call_of(cid)
        if call is not None:
            await self.ctx.dispatcher.customer_disconnected(call.call_id)

    def owns(self, conn: Conn, call: Any) -> bool:
        return call.customer_id == conn.ident.customer_id  # type: ignore[union-attr]

    async def ev_call_request(self, sid: str, conn: Conn, msg: CallRequest) -> dict[str, Any]:
        ident: CustomerIdentity = conn.ident  # type: ignore[assignment]
        service = self.ctx.services.get(msg.service)
        if service is None:
            raise NotFound(f"unknown service {msg.service!r}", code="unknown_service")
        if not ident.may_request(service.code):
            raise Forbidden("this token does not allow that service", code="service_not_allowed")
        self.ctx.security.call_request(ident.customer_id, conn.address)
        boost = await self.ctx.appointments.priority_boost(ident.customer_id, service.code)
        call, position, eta = await self.ctx.dispatcher.request_call(
            customer_id=ident.customer_id, service=service.code, skill=service.required_skill,
            priority=max(service.priority, ident.priority) + boost,
            customer_risk=str(conn.profile.get("risk_level") or "low"))
        await self.ctx.appointments.call_requested(ident.customer_id, service.code,
                                                   call.call_id, boost)  # booked: attended
        self.ctx.flows.call_requested(call.call_id, ident.customer_id, service.code,
                                      ident.subject, conn.address, conn.prompts)
        return {"call_id": call.call_id, "position": position, "estimated_wait_s": eta}

    async def ev_call_hangup(self, sid: str, conn: Conn, msg: CallRef) -> None:
        await self.ctx.dispatcher.customer_hangup(msg.call_id, conn.ident.customer_id)  # type: ignore[union-attr]

    async def ev_call_callback(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        position, eta = await self.ctx.dispatcher.request_callback(
            msg.call_id, conn.ident.customer_id)  # type: ignore[union-attr]
        return {"call_id": msg.call_id, "position": position, "estimated_wait_s": eta}

    async def ev_auth_refresh(self, sid: str, conn: Conn, msg: Message) -> dict[str, Any]:
        """A fresh token for a customer with a call (waiting or in progress), so a long
        wait can reconnect after the original token expired; same claims, a new expiry."""
        ident: CustomerIdentity = conn.ident  # type: ignore[assignment]
        if await self.ctx.dispatcher.active_call_of(ident.customer_id) is None:
            raise InvalidState("tokens are refreshed in-band only during a call; ask the "
                               "bank's app for a new one", code="no_active_call")
        ttl = self.ctx.settings.customer_token_ttl_s
        token = mint_customer_token(self.ctx.settings.customer_token_secret,
                                    ident.customer_id, ttl, services=ident.services,
                                    priority=ident.priority, subject=ident.subject)
        return {"token": token, "expires_in_s": ttl}

    async def ev_prompt_answer(self, sid: str, conn: Conn, msg: PromptAnswer) -> dict[str, Any]:
        call = await self.ctx.dispatcher.store.get_call(msg.call_id)
        if call is None or not self.owns(conn, call) or call.state is not CallState.IN_CALL:
            raise NotFound("no such call in progress", code="unknown_call")
        return await self.ctx.flows.customer_answer(
            msg.call_id, call.customer_id, msg.prompt_id, msg.step_id, msg.sha256, msg.answer)


class AgentNamespace(LoanAgentEvents, RoleNamespace):
    events = AGENT_EVENTS
    # a team lead signs in to the agent console to take over calls whose agent dropped
    staff_roles = frozenset({"agent", "lead"})

    def __init__(self, namespace: str, ctx: "HubContext") -> None:
        super().__init__(namespace, ctx)
        self.sid_of: dict[int, str] = {}

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            check_version(auth)
            token = auth.get("token") if isinstance(auth, dict) else None
            if not token:
                cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
                token = cookie[SESSION_COOKIE].value if SESSION_COOKIE in cookie else None
            claimed = staff_identity(self.ctx, token)
            user = await self.ctx.security.sessions.check(claimed.session_id, claimed.user_id)
            if user.role not in self.staff_roles:
                raise Forbidden("only agents and team leads use the agent console",
                                code="wrong_role")
            address = self._opened(sid, environ)
        except CloudCounterError as exc:
            raise self._refuse(exc, environ) from None
        old = self.sid_of.get(user.user_id)
        self.sid_of[user.user_id] = sid
        self.conns[sid] = Conn("agent", user, address=address)
        if old is not None and old in self.conns:  # a newer console takes over
            self._closed(self.conns.pop(old))
            await self.emit("session:replaced", {}, to=old)
            await self.disconnect(old)
        await self.enter_room(sid, agent_room(user.user_id))
        await self.enter_room(sid, AGENTS_ROOM)
        await self._present("agent", user.user_id, True)
        if user.role == "lead":  # never routed: carries only the calls it takes over
            agent = await self.ctx.dispatcher.lead_online(user.user_id, user.username,
                                                          user.display_name)
        else:
            agent = await self.ctx.dispatcher.agent_online(
                user.user_id, user.username, frozenset(user.skills), user.display_name,
                preferred=frozenset(user.preferred_skills))
        await self.emit("agent:state", self.ctx.agent_state_payload(agent, "signed_in"), to=sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.conns.pop(sid, None)
        if conn is None:
            return
        self._closed(conn)
        uid = conn.ident.user_id  # type: ignore[union-attr]
        if self.sid_of.get(uid) == sid:
            del self.sid_of[uid]
            await self._present("agent", uid, False)
            # a call in progress is re-queued; its media closes with the re-queue notification
            await self.ctx.dispatcher.agent_offline(uid)

    def owns(self, conn: Conn, call: Any) -> bool:
        return call.agent_id == conn.ident.user_id  # type: ignore[union-attr]

    def uid(self, conn: Conn) -> int:
        return conn.ident.user_id  # type: ignore[union-attr]

    async def ev_agent_status(self, sid: str, conn: Conn, msg: StatusSet) -> dict[str, Any]:
        try:
            status = AgentState(msg.status)
        except ValueError:
            raise InvalidState("agents set themselves available or away",
                               code="invalid_status") from None
        agent = await self.ctx.dispatcher.set_agent_status(self.uid(conn), status)
        return {"state": agent.state.value}

    async def ev_call_accept(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        ident: StaffIdentity = conn.ident  # type: ignore[assignment]
        offered = await self.ctx.dispatcher.store.get_call(msg.call_id)
        prepared = None
        if offered is not None and offered.agent_id == ident.user_id:
            # read the script and rules before answering: a failed read changes nothing
            prepared = await self.ctx.flows.prepare(msg.call_id, offered.customer_id,
                                                    offered.service)
        call = await self.ctx.dispatcher.accept(ident.user_id, msg.call_id)
        return await self._answered(ident, call, prepared)

    async def ev_call_take_over(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        """A team lead answers a call whose agent dropped (queue.takeover); the reply is
        the same as ``call:accept``'s, with the service."""
        ident: StaffIdentity = conn.ident  # type: ignore[assignment]
        if ident.role != "lead":
            raise Forbidden("only a team lead takes over a call", code="lead_only")
        call = await self.ctx.dispatcher.take_over(ident.user_id, msg.call_id)
        reply = await self._answered(ident, call, None)
        service = self.ctx.services.get(call.service)
        return {**reply, "service": service.to_dict() if service else {"code": call.service},
                "taken_over": True}

    async def _answered(self, ident: StaffIdentity, call: Any, prepared: Any
                        ) -> dict[str, Any]:
        """After an answer: the business flow (new, or going on after a re-queue), the
        car-loan interview, and what the console needs to start the call."""
        if prepared is None:
            prepared = await self.ctx.flows.prepare(call.call_id, call.customer_id,
                                                    call.service)
        customer = await self.ctx.customer_profile(call.customer_id)
        service = self.ctx.services.get(call.service)
        flow = await self.ctx.flows.answered(
            call.call_id, call.customer_id, call.service, prepared, agent_id=ident.user_id,
            agent_actor=ident.actor, agent_name=ident.display_name or ident.username,
            profile=customer, service_name=service.name if service else call.service)
        self.ctx.loans.answered(call, ident.user_id, ident.actor)  # a car-loan interview?
        return {"call_id": call.call_id, "customer": customer,
                "ice_servers": ice_servers_for(self.ctx.settings, f"agent.{call.call_id}"),
                "flow": flow}

    async def ev_call_decline(self, sid: str, conn: Conn, msg: CallRef) -> None:
        await self.ctx.dispatcher.decline(self.uid(conn), msg.call_id)

    async def ev_call_hangup(self, sid: str, conn: Conn, msg: CallRef) -> None:
        await self.ctx.dispatcher.agent_hangup(self.uid(conn), msg.call_id)

    async def ev_call_note(self, sid: str, conn: Conn, msg: Note) -> None:
        call = await self.ctx.dispatcher.store.get_call(msg.call_id)
        if call is None or not self.owns(conn, call):
            raise NotFound("no such call", code="unknown_call")
        self.ctx.journal.event(msg.call_id, conn.ident.actor, "agent.note", {"text": msg.text})

    async def ev_call_wrapup(self, sid: str, conn: Conn, msg: Wrapup) -> None:
        await self.ctx.loans.before_wrapup(msg.call_id, self.uid(conn), msg.outcome,
                                           msg.skip_reason)  # a loan interview's outcome
        async with self.ctx.flows.wrapping_up(msg.call_id, self.uid(conn), msg.outcome,
                                              msg.skip_reason) as plan:
            await self.ctx.dispatcher.finish_wrap_up(
                self.uid(conn), msg.call_id, msg.outcome, msg.notes, AgentState(msg.then),
                details=plan.details() if plan is not None else None)
        self.ctx.loans.wrapped_up(msg.call_id)

    # -- service flows (cloudcounter.business) --------------------------------------------
    async def ev_flow_snapshot(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        return {"flow": self.ctx.flows.snapshot(msg.call_id, self.uid(conn))}

    async def ev_step_prompt(self, sid: str, conn: Conn, msg: StepRef) -> dict[str, Any]:
        return await self.ctx.flows.prompt(msg.call_id, self.uid(conn), msg.step_id)

    async def ev_step_complete(self, sid: str, conn: Conn, msg: StepComplete
                               ) -> dict[str, Any]:
        return await self.ctx.flows.complete(msg.call_id, self.uid(conn), msg.step_id,
                                             msg.answer, msg.note)

    async def ev_risk_concern(self, sid: str, conn: Conn, msg: Concern) -> dict[str, Any]:
        return await self.ctx.flows.concern(msg.call_id, self.uid(conn), msg.note)

    async def ev_approval_request(self, sid: str, conn: Conn, msg: ApprovalRequest
                                  ) -> dict[str, Any]:
        return await self.ctx.flows.request_approval(msg.call_id, self.uid(conn), msg.note)

    async def ev_queue_snapshot(self, sid: str, conn: Conn, msg: Message) -> dict[str, Any]:
        return await self.ctx.dispatcher.snapshot()

    # -- identity and liveness checks (cloudcounter.hub.analysis) -------------------------
    async def _checked_call(self, conn: Conn, call_id: str) -> Any:
        call = await self.ctx.dispatcher.store.get_call(call_id)
        if call is None or not self.owns(conn, call) or call.state is not CallState.IN_CALL:
            raise NotFound("no such call in progress", code="unknown_call")
        if self.ctx.analysis is None:
            raise CloudCounterError("face analysis is not available", code="vision_unavailable")
        return call

    async def ev_check_identity(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        call = await self._checked_call(conn, msg.call_id)
        return await self.ctx.analysis.request_identity(  # type: ignore[no-any-return]
            call.call_id, call.customer_id, conn.ident.actor)

    async def ev_check_liveness(self, sid: str, conn: Conn, msg: CheckLiveness
                                ) -> dict[str, Any]:
        call = await self._checked_call(conn, msg.call_id)
        return self.ctx.analysis.request_liveness(  # type: ignore[no-any-return]
            call.call_id, conn.ident.actor, msg.count)


class SupervisorNamespace(RoleNamespace):
    """``/supervisor``: team leads (role ``lead``) see approval requests of high-risk calls
    and approve or refuse them from their own signed-in session (maker-checker)."""

    events = SUPERVISOR_EVENTS
    staff_roles = frozenset({"lead"})

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            check_version(auth)
            token = auth.get("token") if isinstance(auth, dict) else None
            if not token:
                cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
                token = cookie[SESSION_COOKIE].value if SESSION_COOKIE in cookie else None
            claimed = staff_identity(self.ctx, token)
            user = await self.ctx.security.sessions.check(claimed.session_id, claimed.user_id)
            if user.role not in self.staff_roles:
                raise Forbidden("only team leads use the supervisor namespace",
                                code="wrong_role")
            address = self._opened(sid, environ)
        except CloudCounterError as exc:
            raise self._refuse(exc, environ) from None
        self.conns[sid] = Conn("lead", user, address=address)
        await self.enter_room(sid, LEADS_ROOM)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        conn = self.conns.pop(sid, None)
        if conn is not None:
            self._closed(conn)
            if not any(c.ident.actor == conn.ident.actor for c in self.conns.values()):
                await self.ctx.media.stop_monitors(conn.ident.actor)  # the lead is gone

    def owns(self, conn: Conn, call: Any) -> bool:
        return False  # leads take part in no call's media

    async def ev_monitor_offer(self, sid: str, conn: Conn, msg: MonitorOffer
                               ) -> dict[str, Any]:
        """Silent monitoring: watch and listen to one participant of a call in progress."""
        call = await self.ctx.dispatcher.store.get_call(msg.call_id)
        if call is None or call.state is not CallState.IN_CALL:
            raise NotFound("no such call in progress", code="unknown_call")
        answer = await self.ctx.media.add_monitor(call.call_id, conn.ident.actor,
                                                  msg.participant, msg.sdp)
        return {"call_id": call.call_id, "participant": msg.participant, "type": "answer",
                "sdp": answer}

    async def ev_monitor_stop(self, sid: str, conn: Conn, msg: CallRef) -> dict[str, Any]:
        return {"stopped": await self.ctx.media.stop_monitors(conn.ident.actor, msg.call_id)}

    async def ev_wallboard_snapshot(self, sid: str, conn: Conn, msg: Message
                                    ) -> dict[str, Any]:
        return {"board": await self.ctx.wallboard.board()}

    async def push_wallboard(self, _: Any = None) -> bool:
        """Push the board to every connected lead (the wallboard's timer); False when no
        lead is connected (then nothing is computed)."""
        if not self.conns:
            return False
        await self.emit("wallboard:update", await self.ctx.wallboard.board(), room=LEADS_ROOM)
        return True

    async def ev_approvals_list(self, sid: str, conn: Conn, msg: Message) -> dict[str, Any]:
        return {"approvals": self.ctx.flows.pending_approvals()}

    async def ev_approval_decide(self, sid: str, conn: Conn, msg: ApprovalDecision
                                 ) -> dict[str, Any]:
        ident: StaffIdentity = conn.ident  # type: ignore[assignment]
        return {"approval": await self.ctx.flows.decide(
            msg.approval_id, ident.user_id, ident.actor, msg.decision == "approve", msg.note)}
