"""The several-node backend: the queue's rows in PostgreSQL (migration 0012).

Each transition is one transaction: the rows it touches are locked (calls before agents, in
key order), the pure rule of :mod:`cloudcounter.queue.rules` is applied to them with the
database's clock (``now()``, epoch seconds), and each changed row is written back with a
conditional update (``UPDATE ... WHERE version = :seen RETURNING``); a row that changed
meanwhile fails the transaction, which is rolled back and refused (``code="conflict"``).
The partial unique indexes make a double assignment impossible to commit whatever the code
does. Writes made for the router (offers and deadline expiries) carry the router's epoch
(:mod:`..leader`) and are refused (``code="fenced"``) when a newer router was elected.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from cloudcounter.errors import CloudCounterError, Conflict, RateLimited
from cloudcounter.queue import rules as r
from cloudcounter.queue.model import AgentState, CallState, EndReason
from cloudcounter.queue.rules import AgentRec, CallRec, Deadline, Outcome, QueueState
from cloudcounter.queue.rules import RulesConfig
from cloudcounter.queue.transitions import Events

CALL_COLS = ("call_id, customer_id, service, skill, priority, enqueued_at, seq, state, "
             "agent_id, offer_expires_at, answered_at, held, customer_online, customer_risk, "
             "grace_until, excluded, dropped_by, dropped_at, callback, callback_due_until, "
             "version")
AGENT_COLS = ("agent_id, username, skills, preferred, lead, state, state_since, idle_since, "
              "missed_offers, call_id, wrap_up_until, streak_service, streak_count, version")
NOW = text("SELECT extract(epoch FROM now())::float8")


RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock detected


def _sqlstate(exc: DBAPIError) -> str | None:
    orig = exc.orig
    return getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)


class _Moved(Exception):
    """The row read before the lock changed: try the transaction again."""


class Fenced(CloudCounterError):
    """A router whose epoch is no longer the current one tried to write."""


def _call(row: Any) -> tuple[CallRec, int]:
    m = row._mapping
    excluded = m["excluded"] if not isinstance(m["excluded"], str) else json.loads(m["excluded"])
    return CallRec(m["call_id"], m["customer_id"], m["service"], m["skill"], m["priority"],
                   m["enqueued_at"], m["seq"], CallState(m["state"]), m["agent_id"],
                   m["offer_expires_at"], m["answered_at"], m["held"], m["customer_online"],
                   m["customer_risk"], m["grace_until"],
                   tuple((int(a), float(u)) for a, u in excluded), m["dropped_by"],
                   m["dropped_at"], None, m["callback"], m["callback_due_until"]), m["version"]


def _agent(row: Any) -> tuple[AgentRec, int]:
    m = row._mapping
    return AgentRec(m["agent_id"], m["username"], frozenset(m["skills"]), m["lead"],
                    AgentState(m["state"]), m["state_since"], m["idle_since"],
                    m["missed_offers"], m["call_id"], m["wrap_up_until"],
                    frozenset(m["preferred"]),
                    (m["streak_service"], m["streak_count"])), m["version"]


def _call_params(c: CallRec) -> dict[str, Any]:
    return {"call_id": c.call_id, "customer_id": c.customer_id, "service": c.service,
            "skill": c.skill, "priority": c.priority, "enqueued_at": c.enqueued_at,
            "seq": c.seq, "state": c.state.value, "agent_id": c.agent_id,
            "offer_expires_at": c.offer_expires_at, "answered_at": c.answered_at,
            "held": c.held, "customer_online": c.customer_online,
            "customer_risk": c.customer_risk, "grace_until": c.grace_until,
            "excluded": json.dumps([list(x) for x in c.excluded]), "dropped_by": c.dropped_by,
            "dropped_at": c.dropped_at, "callback": c.callback,
            "callback_due_until": c.callback_due_until}


def _agent_params(a: AgentRec) -> dict[str, Any]:
    return {"agent_id": a.agent_id, "username": a.username,
            "skills": json.dumps(sorted(a.skills)), "preferred": json.dumps(sorted(a.preferred)),
            "lead": a.lead, "state": a.state.value, "state_since": a.state_since,
            "idle_since": a.idle_since, "missed_offers": a.missed_offers, "call_id": a.call_id,
            "wrap_up_until": a.wrap_up_until, "streak_service": a.streak[0],
            "streak_count": a.streak[1]}


UPDATE_CALL = text(
    "UPDATE queue_calls SET state = :state, agent_id = :agent_id, "
    "offer_expires_at = :offer_expires_at, answered_at = :answered_at, held = :held, "
    "customer_online = :customer_online, grace_until = :grace_until, "
    "excluded = CAST(:excluded AS jsonb), dropped_by = :dropped_by, dropped_at = :dropped_at, "
    "priority = :priority, callback = :callback, callback_due_until = :callback_due_until, "
    "version = version + 1 "
    "WHERE call_id = :call_id AND version = :seen RETURNING call_id")
UPDATE_AGENT = text(
    "UPDATE queue_agents SET username = :username, skills = CAST(:skills AS jsonb), "
    "preferred = CAST(:preferred AS jsonb), lead = :lead, state = :state, "
    "state_since = :state_since, idle_since = :idle_since, missed_offers = :missed_offers, "
    "call_id = :call_id, wrap_up_until = :wrap_up_until, streak_service = :streak_service, "
    "streak_count = :streak_count, version = version + 1 "
    "WHERE agent_id = :agent_id AND version = :seen RETURNING agent_id")
INSERT_AGENT = text(
    f"INSERT INTO queue_agents ({AGENT_COLS}) VALUES (:agent_id, :username, "
    "CAST(:skills AS jsonb), CAST(:preferred AS jsonb), :lead, :state, :state_since, "
    ":idle_since, :missed_offers, :call_id, :wrap_up_until, :streak_service, :streak_count, "
    "0)")
INSERT_CALL = text(
    f"INSERT INTO queue_calls ({CALL_COLS}) VALUES (:call_id, :customer_id, :service, :skill, "
    ":priority, :enqueued_at, :seq, :state, :agent_id, :offer_expires_at, :answered_at, "
    ":held, :customer_online, :customer_risk, :grace_until, CAST(:excluded AS jsonb), "
    ":dropped_by, :dropped_at, :callback, :callback_due_until, 0)")


class PostgresTransitions:
    """``engine``: an async SQLAlchemy engine on asyncpg, migrated to 0013 or later."""

    def __init__(self, engine: AsyncEngine, config: RulesConfig = RulesConfig()) -> None:
        self.engine = engine
        self.config = config
        self.epoch: int | None = None  # set by the elected router: offers are fenced by it

    # ------------------------------------------------------------ the transaction
    async def _fence(self, conn: AsyncConnection) -> None:
        if self.epoch is None:
            return
        current = (await conn.execute(text(
            "SELECT epoch FROM queue_leader WHERE id = 1 FOR SHARE"))).scalar_one()
        if current != self.epoch:
            raise Fenced(f"router epoch {self.epoch} is superseded by {current}",
                         code="fenced")

    async def _apply(self, call_ids: Iterable[str], agent_ids: Iterable[int],
                     rule: Callable[[QueueState, float], Outcome], fenced: bool = False
                     ) -> Events:
        try:
            async with self.engine.begin() as conn:
                if fenced:
                    await self._fence(conn)
                now = (await conn.execute(NOW)).scalar_one()
                calls: dict[str, tuple[CallRec, int]] = {}
                agents: dict[int, tuple[AgentRec, int]] = {}
                for cid in sorted(set(call_ids)):
                    row = (await conn.execute(text(
                        f"SELECT {CALL_COLS} FROM queue_calls WHERE call_id = :c FOR UPDATE"),
                        {"c": cid})).first()
                    if row is not None:
                        calls[cid] = _call(row)
                # a locked call's agent cannot change: lock it too (calls before agents)
                wanted = set(agent_ids) | {c.agent_id for c, _ in calls.values()
                                           if c.agent_id is not None}
                for aid in sorted(wanted):
                    row = (await conn.execute(text(
                        f"SELECT {AGENT_COLS} FROM queue_agents WHERE agent_id = :a "
                        "FOR UPDATE"), {"a": aid})).first()
                    if row is not None:
                        agents[aid] = _agent(row)
                before = QueueState().with_({k: v[0] for k, v in calls.items()},
                                            {k: v[0] for k, v in agents.items()})
                out = rule(before, now)
                await self._write(conn, before, out.state, calls, agents)
                return out.events
        except IntegrityError as exc:
            raise Conflict("the queue changed meanwhile", code="conflict") from exc
        except DBAPIError as exc:  # deadlock or serialization failure: refused, retry later
            if _sqlstate(exc) in RETRYABLE:
                raise Conflict("the queue changed meanwhile", code="conflict") from exc
            raise

    async def _write(self, conn: AsyncConnection, before: QueueState, after: QueueState,
                     calls: dict[str, tuple[CallRec, int]],
                     agents: dict[int, tuple[AgentRec, int]]) -> None:
        for cid, (old, seen) in calls.items():
            new = after.calls.get(cid)
            if new is None:
                await conn.execute(text("DELETE FROM queue_calls WHERE call_id = :c"),
                                   {"c": cid})
            elif new != old:
                ok = (await conn.execute(UPDATE_CALL, {**_call_params(new), "seen": seen})
                      ).first()
                if ok is None:
                    raise Conflict("the call changed meanwhile", code="conflict")
        for cid, new in after.calls.items():
            if cid not in calls:
                await conn.execute(INSERT_CALL, _call_params(new))
        for aid, new_a in after.agents.items():
            if aid not in agents:
                await conn.execute(INSERT_AGENT, _agent_params(new_a))
            elif new_a != agents[aid][0]:
                ok = (await conn.execute(UPDATE_AGENT, {**_agent_params(new_a),
                                                        "seen": agents[aid][1]})).first()
                if ok is None:
                    raise Conflict("the agent changed meanwhile", code="conflict")

    async def _agent_call(self, agent_id: int) -> list[str]:
        async with self.engine.connect() as conn:
            cid = (await conn.execute(text(
                "SELECT call_id FROM queue_agents WHERE agent_id = :a"), {"a": agent_id})
            ).scalar()
        return [cid] if cid else []

    # ------------------------------------------------------------ transitions
    async def enqueue(self, *, call_id: str, customer_id: str, service: str, skill: str,
                      priority: int = 0, customer_risk: str = "low") -> Events:
        """One INSERT: the open-call-per-customer index refuses a second call."""
        try:
            async with self.engine.begin() as conn:
                queued = (await conn.execute(text(
                    "SELECT count(*) FROM queue_calls WHERE state = 'queued'"))).scalar_one()
                if queued >= self.config.max_queue_length:
                    raise RateLimited("the queue is full, try again later", code="queue_full")
                now = (await conn.execute(NOW)).scalar_one()
                seq = (await conn.execute(text("SELECT nextval('queue_call_seq')"))
                       ).scalar_one()
                out = r.enqueue(QueueState(seq=seq - 1), self.config, now, call_id=call_id,
                                customer_id=customer_id, service=service, skill=skill,
                                priority=priority, customer_risk=customer_risk)
                await conn.execute(INSERT_CALL, _call_params(out.state.calls[call_id]))
                return out.events
        except IntegrityError as exc:
            if "queue_calls_one_open_per_customer" in str(exc.orig):
                raise Conflict("this customer already has a call",
                               code="already_in_call") from exc
            raise Conflict("this call exists already", code="duplicate_call") from exc

    async def offer(self, call_id: str, agent_id: int, pool: str | None = None) -> Events:
        return await self._apply([call_id], [agent_id], lambda s, now: r.offer(
            s, self.config, now, call_id, agent_id, pool), fenced=True)

    async def accept(self, agent_id: int, call_id: str) -> Events:
        return await self._apply([call_id], [agent_id], lambda s, now: r.accept(
            s, self.config, now, agent_id, call_id))

    async def decline(self, agent_id: int, call_id: str) -> Events:
        return await self._apply([call_id], [agent_id], lambda s, now: r.decline(
            s, self.config, now, agent_id, call_id))

    async def expire_offer(self, call_id: str) -> Events:
        return await self._apply([call_id], [],
                                 lambda s, now: r.expire_offer(s, self.config, now, call_id),
                                 fenced=True)

    async def requeue(self, call_id: str, reason: str) -> Events:
        return await self._apply([call_id], [],
                                 lambda s, now: r.requeue(s, now, call_id, reason))

    async def end(self, call_id: str, reason: EndReason, actor: str = "system", *,
                  by_agent: int | None = None, by_customer: str | None = None) -> Events:
        agents = [by_agent] if by_agent is not None else []
        return await self._apply([call_id], agents, lambda s, now: r.end(
            s, self.config, now, call_id, reason, actor, by_agent=by_agent,
            by_customer=by_customer))

    async def agent_online(self, agent_id: int, username: str,
                           skills: frozenset[str] = frozenset(), *, lead: bool = False,
                           preferred: frozenset[str] = frozenset()) -> Events:
        return await self._apply([], [agent_id], lambda s, now: r.agent_online(
            s, now, agent_id, username, skills, lead=lead, preferred=preferred))

    async def agent_offline(self, agent_id: int) -> Events:
        """The agent's call is read first (calls are locked before agents), then checked
        under the lock; if it moved meanwhile the transaction is tried again."""
        for _ in range(5):
            expected = await self._agent_call(agent_id)
            try:
                return await self._apply(expected, [agent_id], lambda s, now: self._checked(
                    s, agent_id, expected, r.agent_offline(s, now, agent_id)))
            except _Moved:
                continue
        raise Conflict("the agent's call kept changing", code="conflict")

    @staticmethod
    def _checked(s: QueueState, agent_id: int, expected: list[str], out: Outcome) -> Outcome:
        agent = s.agents.get(agent_id)
        if agent is not None and [agent.call_id] != expected and \
                not (agent.call_id is None and not expected):
            raise _Moved()
        return out

    async def set_agent_status(self, agent_id: int, status: AgentState) -> Events:
        return await self._apply([], [agent_id], lambda s, now: r.set_agent_status(
            s, now, agent_id, status))

    async def finish_wrap_up(self, agent_id: int, call_id: str,
                             then: AgentState = AgentState.AVAILABLE) -> Events:
        return await self._apply([], [agent_id], lambda s, now: r.finish_wrap_up(
            s, now, agent_id, call_id, then))

    async def expire_wrap_up(self, agent_id: int) -> Events:
        return await self._apply([], [agent_id], lambda s, now: r.expire_wrap_up(
            s, now, agent_id), fenced=True)

    async def grace_start(self, call_id: str) -> Events:
        return await self._apply([call_id], [],
                                 lambda s, now: r.grace_start(s, self.config, now, call_id))

    async def grace_end(self, call_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.grace_end(
            s, now, call_id, self.config))

    async def expire_grace(self, call_id: str) -> Events:
        return await self._apply([call_id], [],
                                 lambda s, now: r.expire_grace(s, self.config, now, call_id),
                                 fenced=True)

    async def expire_exclusions(self, call_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.expire_exclusions(
            s, now, call_id), fenced=True)

    async def request_callback(self, call_id: str, customer_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.request_callback(
            s, now, call_id, customer_id))

    async def callback_due(self, call_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.callback_due(
            s, self.config, now, call_id), fenced=True)

    async def expire_callback(self, call_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.expire_callback(
            s, self.config, now, call_id), fenced=True)

    async def expire_wait(self, call_id: str) -> Events:
        return await self._apply([call_id], [], lambda s, now: r.expire_wait(
            s, self.config, now, call_id), fenced=True)

    async def take_over(self, lead_id: int, call_id: str) -> Events:
        agents = [lead_id]
        return await self._apply([call_id], agents, lambda s, now: r.take_over(
            s, now, lead_id, call_id))

    # ------------------------------------------------------------ views
    async def _read(self) -> tuple[QueueState, float]:
        async with self.engine.connect() as conn:
            now = (await conn.execute(NOW)).scalar_one()
            calls = [_call(row)[0] for row in await conn.execute(text(
                f"SELECT {CALL_COLS} FROM queue_calls ORDER BY enqueued_at, seq"))]
            agents = [_agent(row)[0] for row in await conn.execute(text(
                f"SELECT {AGENT_COLS} FROM queue_agents"))]
            seq = (await conn.execute(text("SELECT last_value FROM queue_call_seq"))
                   ).scalar_one()
        return QueueState().with_({c.call_id: c for c in calls},
                                  {a.agent_id: a for a in agents}, seq), now

    async def due_deadlines(self) -> list[Deadline]:
        state, now = await self._read()
        return r.due(state, now, self.config)

    async def snapshot(self) -> QueueState:
        return (await self._read())[0]

    async def close(self) -> None:
        return None


__all__ = ["Fenced", "PostgresTransitions"]
