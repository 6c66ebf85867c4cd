"""Several queue nodes on one PostgreSQL store, killed and frozen (issue 11; docs/scaling.md,
"The failure soak").

    python loadtests/queue_soak.py [--offers 5000] [--kill-every 20 35] [--json out.json]

The harness makes a database of its own on 127.0.0.1:5432 (``CLOUDCOUNTER_TEST_PG_URL``
names the server), migrates it, adds (there only) a trigger that copies every committed
row change of ``queue_calls``, ``queue_agents`` and ``queue_leader`` into
``soak_history``, and starts three node processes (``queue_soak.py node``). Each runs the
router engine (:mod:`cloudcounter.queue.router`), simulated agents and customers, and a
node lease in ``soak_nodes``. The harness SIGKILLs a node now and then (the leader half of
the time) and restarts it, freezes the leader once (SIGSTOP, then SIGCONT), drains, and
checks the invariants on what committed. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Awaitable, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cloudcounter.errors import CloudCounterError
from cloudcounter.queue.failover import fail_over
from cloudcounter.queue.leader import Leadership
from cloudcounter.queue.model import AgentState, CallState, EndReason
from cloudcounter.queue.router import QueueRouter
from cloudcounter.queue.rules import QueueState, RulesConfig
from cloudcounter.queue.stores.postgres import PostgresTransitions

T = TypeVar("T")
ADMIN_URL = os.environ.get("CLOUDCOUNTER_TEST_PG_URL",
                           "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SKILLS = ("cards", "loans")
LIVE = ("offered", "in_call")
RULES = RulesConfig(offer_timeout_s=2.0, max_missed_offers=2, wrap_up_s=5.0,
                    customer_grace_s=2.0, exclusion_s=2.0)

SOAK_SCHEMA = [
    """CREATE TABLE soak_history (id bigserial PRIMARY KEY, tbl text NOT NULL,
        op text NOT NULL, at float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()),
        app text NOT NULL DEFAULT current_setting('application_name'),
        txid bigint NOT NULL DEFAULT txid_current(), row jsonb NOT NULL)""",
    """CREATE FUNCTION soak_log() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF TG_OP = 'DELETE' THEN
           INSERT INTO soak_history (tbl, op, row) VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(OLD));
         ELSE
           INSERT INTO soak_history (tbl, op, row) VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(NEW));
         END IF;
         RETURN NULL;
       END $$""",
    *(f"CREATE TRIGGER soak_log AFTER INSERT OR UPDATE OR DELETE ON {t} "
      "FOR EACH ROW EXECUTE FUNCTION soak_log()"
      for t in ("queue_calls", "queue_agents", "queue_leader")),
    """CREATE TABLE soak_nodes (inc text PRIMARY KEY, lease_until float8 NOT NULL,
        agents jsonb NOT NULL, claimed_by text, claimed_at float8)""",
    "CREATE TABLE soak_stats (inc text PRIMARY KEY, stats jsonb NOT NULL)",
    "CREATE TABLE soak_control (id int PRIMARY KEY, draining boolean NOT NULL)",
    "INSERT INTO soak_control VALUES (1, false)",
    "CREATE SEQUENCE soak_agent_id",
]
NOW = "extract(epoch FROM now())"


def pg_url(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://")


# ====================================================================== a node
class Node:
    """One node: the router engine, its agents and customers, its lease."""

    def __init__(self, engine: AsyncEngine, inc: str, p: dict[str, Any]) -> None:
        self.engine, self.inc, self.p = engine, inc, p
        self.rnd = random.Random(inc)
        self.store = PostgresTransitions(engine, RULES)  # agents' and customers' writes
        self.events: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.router = QueueRouter(PostgresTransitions(engine, RULES), Leadership(engine, inc),
                                  subscriber=self._event, db_timeout_s=5.0)
        self.view = QueueState()
        self.view_at = 0.0
        self.view_changed = asyncio.Event()
        self.alive_until = 0.0
        self.draining = False
        self.agents: list[int] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.declared_dead = asyncio.Event()

    def _event(self, e: Any) -> None:
        self.events[e.kind] += 1
        if e.kind == "call.ended":
            self.events["ended." + str(e.data().get("reason"))] += 1

    def alive(self) -> bool:
        return time.monotonic() < self.alive_until

    async def do(self, aw: Awaitable[T]) -> T | None:
        """A write of this node's agents or customers: only while its lease is known to
        hold; refusals are counted, not raised."""
        if not self.alive():
            getattr(aw, "close", lambda: None)()
            self.stats["skipped_not_alive"] += 1
            return None
        try:
            async with asyncio.timeout(5.0):
                result = await aw
            self.router.publish(result if isinstance(result, tuple) else ())
            return result
        except CloudCounterError as exc:
            self.stats["refused." + exc.code] += 1
        except Exception as exc:  # noqa: BLE001 - a timeout or the database: counted
            self.stats["error." + type(exc).__name__] += 1
        return None

    async def next_view(self, after: float) -> QueueState:
        while self.view_at <= after:
            await self.view_changed.wait()
        return self.view

    # ------------------------------------------------------------ start and stop
    async def start(self) -> None:
        async with self.engine.begin() as conn:
            ids = [(await conn.execute(text("SELECT nextval('soak_agent_id')"))).scalar_one()
                   for _ in range(self.p["agents"])]
            await conn.execute(text(
                f"INSERT INTO soak_nodes VALUES (:i, {NOW} + :l, CAST(:a AS jsonb), NULL, "
                "NULL)"), {"i": self.inc, "l": self.p["lease_s"], "a": json.dumps(ids)})
        self.alive_until = time.monotonic() + self.p["lease_s"] * 0.8
        self.agents = [int(i) for i in ids]
        for n, aid in enumerate(self.agents):
            skills = frozenset(SKILLS) if n % 3 == 2 else frozenset({SKILLS[n % 3]})
            await self.do(self.store.agent_online(aid, f"{self.inc}/a{aid}", skills))
            await self.do(self.store.set_agent_status(aid, AgentState.AVAILABLE))
        self.router.start()
        self.tasks = [asyncio.create_task(self._views()), asyncio.create_task(self._lease()),
                      asyncio.create_task(self._stats_writer()),
                      *(asyncio.create_task(self._agent(a)) for a in self.agents),
                      *(asyncio.create_task(self._customer(k))
                        for k in range(self.p["customers"]))]

    async def stop(self, leave: bool) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if leave:  # a clean stop: the agents sign off, nobody needs to claim the lease
            for aid in self.agents:
                await self.do(self.store.agent_offline(aid))
            async with self.engine.begin() as conn:
                await conn.execute(text("UPDATE soak_nodes SET claimed_by = :i, claimed_at = "
                                        f"{NOW} WHERE inc = :i"), {"i": self.inc})
        await self.router.close()
        await self._write_stats()

    # ------------------------------------------------------------ loops
    async def _views(self) -> None:
        """What Socket.IO would push: the node reads the store every ``view_s``."""
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(5.0):
                    self.view = await self.store.snapshot()
                self.view_at = started
                self.view_changed.set()
                self.view_changed = asyncio.Event()
            except Exception as exc:  # noqa: BLE001
                self.stats["error.view." + type(exc).__name__] += 1
            await asyncio.sleep(self.p["view_s"])

    async def _lease(self) -> None:
        lease = self.p["lease_s"]
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(lease / 2):
                    await self._lease_round(started)
            except Exception as exc:  # noqa: BLE001
                self.stats["error.lease." + type(exc).__name__] += 1
            if self.declared_dead.is_set():
                return
            await asyncio.sleep(lease / 3)

    async def _lease_round(self, started: float) -> None:
        lease = self.p["lease_s"]
        async with self.engine.begin() as conn:
            held = (await conn.execute(text(
                f"UPDATE soak_nodes SET lease_until = {NOW} + :l WHERE inc = :i "
                "AND claimed_by IS NULL RETURNING inc"), {"l": lease, "i": self.inc})).first()
            self.draining = bool((await conn.execute(text(
                "SELECT draining FROM soak_control"))).scalar_one())
        if held is None:  # declared dead (it was frozen): it stops and is restarted
            self.alive_until = 0.0
            self.stats["declared_dead"] += 1
            self.declared_dead.set()
            return
        self.alive_until = started + lease * 0.8
        async with self.engine.begin() as conn:
            lapsed = (await conn.execute(text(
                f"UPDATE soak_nodes SET claimed_by = :i, claimed_at = {NOW} "
                f"WHERE claimed_by IS NULL AND lease_until < {NOW} AND inc <> :i "
                "RETURNING inc, agents"), {"i": self.inc})).all()
        for dead, agents in lapsed:
            await self._fail_over(dead, [int(a) for a in agents])

    async def _fail_over(self, dead: str, agents: list[int]) -> None:
        """A node whose lease lapsed is dead: its sessions are ended (a frozen leader's
        lock with them), its agents go offline (their offers withdrawn without penalty),
        its customers' calls fall under the grace rules (the leader's deadlines end them)."""
        self.stats["lapses_claimed"] += 1
        async with self.engine.begin() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                    "WHERE application_name = :d"), {"d": dead})
        report = await fail_over(self.store, agents, lambda c: c.startswith(dead + "/"))
        for code, n in report.refused.items():
            self.stats["failover_refused." + code] += n
        self.stats["failover_error"] += report.errors

    async def _agent(self, aid: int) -> None:
        p, rnd, handled, seen = self.p, self.rnd, None, 0.0
        while True:
            view = await self.next_view(seen)
            seen = time.monotonic()
            a = view.agents.get(aid)
            if a is None:
                continue
            if a.state is AgentState.OFFERED and a.call_id and a.call_id != handled:
                cid, handled, x = a.call_id, a.call_id, rnd.random()
                if x < p["decline"]:
                    await self.do(self.store.decline(aid, cid))
                elif x < p["decline"] + p["miss"]:
                    self.stats["missed_on_purpose"] += 1
                elif await self.do(self.store.accept(aid, cid)) is not None:
                    await asyncio.sleep(rnd.uniform(*p["talk_s"]))
                    await self.do(self.store.end(cid, EndReason.COMPLETED, by_agent=aid))
            elif a.state is AgentState.WRAP_UP and a.call_id:
                await asyncio.sleep(rnd.uniform(*p["wrap_s"]))
                await self.do(self.store.finish_wrap_up(aid, a.call_id))
            elif a.state is AgentState.AWAY:
                await asyncio.sleep(rnd.uniform(0.2, 1.0))
                await self.do(self.store.set_agent_status(aid, AgentState.AVAILABLE))
            seen = time.monotonic()

    async def _customer(self, k: int) -> None:
        p, rnd = self.p, self.rnd
        cust, n = f"{self.inc}/u{k}", 0
        await asyncio.sleep(rnd.uniform(0, 2))
        while not self.draining:
            await asyncio.sleep(rnd.uniform(*p["think_s"]))
            if self.draining or not self.alive():
                continue
            n += 1
            cid, skill = f"{cust}/{n}", rnd.choice(SKILLS)
            asked = time.monotonic()
            if await self.do(self.store.enqueue(call_id=cid, customer_id=cust, service=skill,
                                                skill=skill)) is None:
                continue
            if rnd.random() < p["second_call"]:  # the same customer calls again: refused
                if await self.do(self.store.enqueue(call_id=cid + "b", customer_id=cust,
                                                    service=skill, skill=skill)):
                    self.stats["second_open_call_committed"] += 1
            hang_up = asked + rnd.uniform(0.5, 4) if rnd.random() < p["hang_up"] else None
            while True:
                view = await self.next_view(asked)
                asked = time.monotonic()
                c = view.calls.get(cid)
                if c is None:
                    break
                if hang_up is not None and asked > hang_up and c.state is CallState.QUEUED:
                    hang_up = None
                    await self.do(self.store.end(cid, EndReason.ABANDONED, by_customer=cust))

    async def _stats_writer(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._write_stats()
            except Exception:  # noqa: BLE001
                self.stats["error.stats"] += 1

    async def _write_stats(self) -> None:
        body = {"router": self.router.stats.to_dict(), "node": dict(self.stats),
                "events": dict(self.events)}
        async with asyncio.timeout(5.0):
            async with self.engine.begin() as conn:
                await conn.execute(text(
                    "INSERT INTO soak_stats VALUES (:i, CAST(:s AS jsonb)) ON CONFLICT (inc) "
                    "DO UPDATE SET stats = EXCLUDED.stats"), {"i": self.inc, "s": json.dumps(body)})


async def run_node(url: str, inc: str, p: dict[str, Any]) -> int:
    engine = create_async_engine(url, pool_size=12, max_overflow=4, pool_timeout=10,
                                 pool_pre_ping=True, connect_args={
                                     "server_settings": {"application_name": inc},
                                     "command_timeout": 10})
    node = Node(engine, inc, p)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    code = 0
    try:
        await node.start()
        waiters = [asyncio.create_task(stop.wait()),
                   asyncio.create_task(node.declared_dead.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        if node.declared_dead.is_set():
            # declared dead while frozen: its router keeps going for a moment (its stale
            # writes are fenced), then the node stops and the harness restarts it
            await asyncio.sleep(2.0)
            code = 3
        await node.stop(leave=not node.declared_dead.is_set())
    finally:
        await engine.dispose()
    return code


# ====================================================================== the harness
class Proc:
    def __init__(self, slot: int, url: str, p: dict[str, Any], logs: Path) -> None:
        self.slot, self.url, self.p, self.logs = slot, url, p, logs
        self.k = 0
        self.inc = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []

    def start(self) -> None:
        self.k += 1
        self.inc = f"n{self.slot}.{self.k}"
        with (self.logs / f"{self.inc}.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "node", "--url", self.url, "--inc", self.inc,
                 "--params", json.dumps(self.p)], stdout=log, stderr=subprocess.STDOUT)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def reap(self) -> int | None:
        """The exit code if the process ended (recorded once)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code, self.proc = self.proc.returncode, None
        self.exits.append(code)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def admin(sql: str) -> None:
    import asyncpg
    conn = await asyncpg.connect(pg_url(ADMIN_URL), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def harness(a: argparse.Namespace, logs: Path) -> dict[str, Any]:
    from cloudcounter.db.migrate import upgrade_engine

    name = a.db_name or "cc_soak_" + secrets.token_hex(4)
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    p = {"agents": a.agents, "customers": a.customers, "lease_s": a.lease, "view_s": 0.2,
         "decline": 0.07, "miss": 0.05, "hang_up": 0.1, "second_call": 0.05,
         "talk_s": (0.3, 1.2), "wrap_s": (0.1, 0.4), "think_s": (0.5, 3.0)}
    await admin(f"CREATE DATABASE {name}")
    procs: list[Proc] = []
    engine = create_async_engine(url, pool_size=2, max_overflow=0)
    try:
        await upgrade_engine(engine)
        async with engine.begin() as conn:
            for sql in SOAK_SCHEMA:
                await conn.execute(text(sql))
        procs = [Proc(slot, url, p, logs) for slot in range(3)]
        for pr in procs:
            pr.start()
        marks = await drive(a, engine, procs)
        await drain(a, engine, procs, marks)
        figures = await analyse(engine, marks, a)
        figures["database"] = name
        return figures
    finally:
        for pr in procs:
            pr.kill()
        await engine.dispose()
        await admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def drive(a: argparse.Namespace, engine: AsyncEngine, procs: list[Proc]
                ) -> dict[str, Any]:
    rnd = random.Random(a.seed)
    t0 = time.time()
    marks: dict[str, Any] = {"start": t0, "kills": [], "stop": None, "restarts": 0,
                             "unexpected_exits": []}
    next_kill = t0 + rnd.uniform(*a.kill_every)
    stop_at = t0 + a.stop_after
    log = print if a.verbose else (lambda *x: None)
    while True:
        await asyncio.sleep(0.5)
        now = time.time()
        for pr in procs:
            code = pr.reap()
            if code is not None:
                if code != 3:
                    marks["unexpected_exits"].append((pr.inc, code))
                log(f"{now - t0:6.1f}s {pr.inc} exited {code}: restarted")
                pr.start()
                marks["restarts"] += 1
        offers = await scalar(engine, "SELECT count(*) FROM soak_history WHERE tbl = "
                                      "'queue_agents' AND row->>'state' = 'offered'")
        done = offers >= a.offers and len(marks["kills"]) >= a.min_kills and marks["stop"]
        if done or now - t0 > a.max_s:
            marks["offers_at_drain"] = offers
            return marks
        leader = await scalar(engine, "SELECT node FROM queue_leader")
        if marks["stop"] is None and now >= stop_at:
            victim = next((pr for pr in procs if pr.inc == leader), None)
            if victim is not None and victim.proc is not None:
                victim.signal(signal.SIGSTOP)
                stop: dict[str, Any] = {"inc": victim.inc, "at": time.time(), "leader": True}
                marks["stop"] = stop
                log(f"{now - t0:6.1f}s SIGSTOP leader {victim.inc}")
                await asyncio.sleep(a.stop_s)
                victim.signal(signal.SIGCONT)
                stop["cont_at"] = time.time()
                log(f"{time.time() - t0:6.1f}s SIGCONT {victim.inc}")
                next_kill = max(next_kill, time.time() + 5)
            continue
        if now >= next_kill:
            alive = [pr for pr in procs if pr.proc is not None]
            lead = [pr for pr in alive if pr.inc == leader]
            victim = lead[0] if lead and rnd.random() < 0.5 else rnd.choice(alive)
            was_leader = victim.inc == leader
            victim.kill()
            marks["kills"].append({"inc": victim.inc, "at": time.time(), "leader": was_leader})
            log(f"{now - t0:6.1f}s SIGKILL {victim.inc}{' (leader)' if was_leader else ''}"
                f", {offers} offers so far")
            victim.reap()
            victim.start()
            marks["restarts"] += 1
            next_kill = time.time() + rnd.uniform(*a.kill_every)


async def drain(a: argparse.Namespace, engine: AsyncEngine, procs: list[Proc],
                marks: dict[str, Any]) -> None:
    """No new calls; the agents serve the queue until it is empty; the nodes stop."""
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE soak_control SET draining = true"))
    marks["drain_at"] = time.time()
    deadline = time.monotonic() + a.drain_s
    while time.monotonic() < deadline:
        for pr in procs:
            if pr.reap() is not None:
                pr.start()
        if await scalar(engine, "SELECT count(*) FROM queue_calls") == 0:
            break
        await asyncio.sleep(0.5)
    marks["open_after_drain"] = await scalar(engine, "SELECT count(*) FROM queue_calls")
    for pr in procs:
        pr.signal(signal.SIGTERM)
    for pr in procs:
        if pr.proc is not None:
            try:
                pr.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pr.kill()
        code = pr.reap()
        if code not in (None, 0, 3):
            marks["unexpected_exits"].append((pr.inc, code))


# ====================================================================== the verdicts
async def analyse(engine: AsyncEngine, marks: dict[str, Any], a: argparse.Namespace
                  ) -> dict[str, Any]:
    async with engine.connect() as conn:
        hist = (await conn.execute(text(
            "SELECT tbl, op, at, app, txid, row FROM soak_history ORDER BY id"))).all()
        stats = {i: s for i, s in (await conn.execute(text(
            "SELECT inc, stats FROM soak_stats"))).all()}
        open_calls = (await conn.execute(text("SELECT count(*) FROM queue_calls"))).scalar()
    calls: dict[str, list[Any]] = defaultdict(list)
    agents: dict[int, list[Any]] = defaultdict(list)
    leaders: list[tuple[float, int, str]] = []
    for tbl, op, at, app, txid, row in hist:
        if tbl == "queue_calls":
            calls[row["call_id"]].append((row["version"], op, at, app, txid, row))
        elif tbl == "queue_agents":
            agents[row["agent_id"]].append((row["version"], op, at, app, txid, row))
        elif op == "UPDATE":
            leaders.append((at, int(row["epoch"]), row["node"]))
    for h in (*calls.values(), *agents.values()):
        h.sort(key=lambda x: (x[0], x[1] == "DELETE"))

    # 1. no agent holds two live calls: each call's live spell with an agent, placed on
    # that agent's own row history (every assignment and release locks and writes it)
    overlaps, unlinked, offers = 0, 0, 0
    spells: dict[int, list[tuple[Any, Any]]] = defaultdict(list)
    agent_pos = {aid: {x[4]: i for i, x in enumerate(h)} for aid, h in agents.items()}
    for cid, h in calls.items():
        holder, since = None, None
        for _, op, at, app, txid, row in h:
            live = op != "DELETE" and row["state"] in LIVE
            now_holder = row["agent_id"] if live else None
            if row["state"] == "offered" and op == "UPDATE" and holder is None:
                offers += 1
            if now_holder != holder:
                if holder is not None:
                    spells[holder].append((since, txid))
                holder, since = now_holder, txid
        if holder is not None:
            spells[holder].append((since, -1))
    for aid, ss in spells.items():
        pos = agent_pos.get(aid, {})
        placed = []
        for start, end in ss:
            if start not in pos or (end != -1 and end not in pos):
                unlinked += 1
                continue
            placed.append((pos[start], pos[end] if end != -1 else 10**9))
        placed.sort()
        overlaps += sum(1 for x, y in zip(placed, placed[1:]) if y[0] < x[1])

    # 2. at most one open call per customer at any time (row inserted .. row deleted)
    by_customer: dict[str, list[tuple[float, float]]] = defaultdict(list)
    ended_as: Counter[str] = Counter()
    never_ended = 0
    for cid, h in calls.items():
        ins = next((x for x in h if x[1] == "INSERT"), None)
        dele = next((x for x in h if x[1] == "DELETE"), None)
        if ins is None:
            continue
        if dele is None:
            never_ended += 1
        else:
            last = dele[5]
            ended_as[("answered (completed or failed)" if last["state"] == "in_call"
                      else "not answered (abandoned)")
                     + (", after grace" if last["grace_until"] is not None else "")] += 1
        by_customer[ins[5]["customer_id"]].append((ins[2], dele[2] if dele else 1e18))
    customer_overlaps = 0
    for spans in by_customer.values():
        spans.sort()
        customer_overlaps += sum(1 for x, y in zip(spans, spans[1:]) if y[0] < x[1])

    # 3. every committed offer was made by the router of the epoch in effect (fencing)
    leaders.sort()

    def leader_at(t: float) -> str | None:
        node = None
        for at, _, n in leaders:
            if at > t:
                break
            node = n
        return node
    offer_rows = [(x[2], x[3], cid, x[5]) for cid, h in calls.items() for x in h
                  if x[1] == "UPDATE" and x[5]["state"] == "offered"
                  and x[5]["agent_id"] is not None]
    offer_rows = [o for o in offer_rows if not _same_offer_again(calls[o[2]], o)]
    not_by_leader = sum(1 for at, app, _, _ in offer_rows if leader_at(at) != app)

    # 4. queue order per skill (first offers; see docs/scaling.md for what is checked)
    order = order_check(calls, offer_rows, marks, a.order_slack, a.lease)

    # 5. routing resumed after each leader loss, and how long it took
    offer_times = sorted((at, app) for at, app, _, _ in offer_rows)
    losses = [k for k in marks["kills"] if k["leader"]] + \
        ([marks["stop"]] if marks["stop"] else [])
    gaps = []
    for loss in losses:
        nxt = next((at for at, app in offer_times if at > loss["at"] and app != loss["inc"]),
                   None)
        gaps.append(None if nxt is None else round(nxt - loss["at"], 2))
    run = [t for t, _ in offer_times if t < marks.get("drain_at", 1e18)]
    max_gap = max((y - x for x, y in zip(run, run[1:])), default=0.0)

    router = Counter[str]()
    node_stats: Counter[str] = Counter()
    events: Counter[str] = Counter()
    for s in stats.values():
        for k in ("offers", "fenced", "timeouts", "errors", "stale_passes", "expiries",
                  "elections_won", "events_dropped"):
            router[k] += s["router"][k]
        for code, n in s["router"]["refused"].items():
            router["refused." + code] += n
        node_stats.update(s["node"])
        events.update({k: v for k, v in s["events"].items() if k.startswith("ended.")})
    duration = marks.get("drain_at", time.time()) - marks["start"]
    return {
        "verdicts": {
            "overlapping_agent_assignments": overlaps,
            "assignments_not_linked_to_the_agent_row": unlinked,
            "overlapping_open_calls_per_customer": customer_overlaps,
            "calls_never_ended": never_ended + (open_calls or 0),
            "offers_committed_by_a_non_leader": not_by_leader,
            "order_unexplained_inversions": order["unexplained"],
            "second_open_call_committed": node_stats.get("second_open_call_committed", 0),
            "unexpected_exits": marks["unexpected_exits"],
            "routing_resumed_after_each_leader_loss": all(g is not None for g in gaps),
        },
        "figures": {
            "run_s": round(duration, 1), "offers": offers,
            "offers_per_s": round(offers / duration, 1) if duration else None,
            "calls": len(calls), "ended_as": dict(ended_as),
            "kills": len(marks["kills"]),
            "leader_kills": sum(1 for k in marks["kills"] if k["leader"]),
            "freeze": marks["stop"], "restarts": marks["restarts"],
            "leader_elections": len(leaders), "fenced_writes_refused": router["fenced"],
            "lapses_failed_over": node_stats.get("lapses_claimed", 0),
            "routing_gaps_after_leader_loss_s": gaps, "lease_s": a.lease,
            "max_routing_gap_s": round(max_gap, 2), "order": order,
            "router": dict(router), "node": dict(node_stats), "ended_events": dict(events),
        }}


def _same_offer_again(h: list[Any], o: tuple[Any, ...]) -> bool:
    """An update of an already offered call that is not a new offer (e.g. a grace flag)."""
    at, app, cid, row = o
    prev = None
    for x in h:
        if x[2] == at and x[5] == row:
            break
        prev = x
    return prev is not None and prev[1] != "DELETE" and prev[5]["state"] == "offered" \
        and prev[5]["agent_id"] == row["agent_id"]


def order_check(calls: dict[str, list[Any]], offer_rows: list[tuple[Any, ...]],
                marks: dict[str, Any], slack: float, lease: float) -> dict[str, int]:
    """For each offer of a call X (skill s) to agent A at t: a call Y of skill s ahead of X
    in queue order (enqueued_at, seq) whose last change was before t - slack and left it
    queued, not held, never offered and not excluding A, should have been offered first
    (A could take it: same skill). Such a pair is an inversion; one near a kill, a freeze
    or a lapse (an agent taken offline by another node) is counted as explained."""
    firsts: dict[str, tuple[float, Any]] = {}
    for at, app, cid, row in sorted(offer_rows, key=lambda o: o[0]):
        firsts.setdefault(cid, (at, row))
    events = [k["at"] for k in marks["kills"]]
    if marks["stop"]:
        events += [marks["stop"]["at"], marks["stop"].get("cont_at", marks["stop"]["at"])]
    checked = inversions = unexplained = 0
    by_skill: dict[str, list[tuple[tuple[float, int], str]]] = defaultdict(list)
    for cid, h in calls.items():
        first = h[0][5]
        by_skill[first["skill"]].append(((first["enqueued_at"], first["seq"]), cid))
    for skill, items in by_skill.items():
        items.sort()
        rank = {cid: i for i, (_, cid) in enumerate(items)}
        for cid, (t, row) in firsts.items():
            if calls[cid][0][5]["skill"] != skill:
                continue
            agent = row["agent_id"]
            older_waiting = False
            for _, ycid in items[:rank[cid]]:
                yh = calls[ycid]
                before = [x for x in yh if x[2] <= t]
                if not before or before[-1][1] == "DELETE":
                    continue
                y = before[-1][5]
                older_waiting = older_waiting or y["state"] == "queued"
                if before[-1][2] > t - slack:
                    continue
                if y["state"] != "queued" or y["held"] or ycid in firsts and \
                        firsts[ycid][0] < t:
                    continue
                if any(int(e[0]) == agent and float(e[1]) > t for e in y["excluded"]):
                    continue
                inversions += 1
                if not any(e - 1 <= t <= e + lease + slack + 3 for e in events):
                    unexplained += 1
            checked += older_waiting
    return {"inversions": inversions, "explained_near_a_kill_or_freeze":
            inversions - unexplained, "unexplained": unexplained,
            "first_offers": len(firsts),
            # first offers made while an older call of the same skill was still queued
            # (re-queued, excluding, held or just arrived): where order was at stake
            "first_offers_with_an_older_call_queued": checked}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    node = sub.add_parser("node")
    node.add_argument("--url", required=True)
    node.add_argument("--inc", required=True)
    node.add_argument("--params", required=True)
    ap.add_argument("--offers", type=int, default=5000)
    ap.add_argument("--min-kills", type=int, default=3)
    ap.add_argument("--kill-every", type=float, nargs=2, default=(20.0, 35.0))
    ap.add_argument("--stop-after", type=float, default=40.0, help="freeze the leader then")
    ap.add_argument("--stop-s", type=float, default=10.0)
    ap.add_argument("--lease", type=float, default=3.0)
    ap.add_argument("--agents", type=int, default=12, help="per node")
    ap.add_argument("--customers", type=int, default=30, help="per node")
    ap.add_argument("--max-s", type=float, default=600.0)
    ap.add_argument("--drain-s", type=float, default=60.0)
    ap.add_argument("--order-slack", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--db-name", default=None, help="the database to create (and drop)")
    ap.add_argument("--logs", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    if a.cmd == "node":
        return asyncio.run(run_node(a.url, a.inc, json.loads(a.params)))
    logs = a.logs or Path(os.environ.get("TMPDIR", "/tmp")) / f"queue_soak_{os.getpid()}"
    logs.mkdir(parents=True, exist_ok=True)
    out = asyncio.run(harness(a, logs))
    v, f = out["verdicts"], out["figures"]
    print(f"queue soak: {f['offers']} offers in {f['run_s']} s ({f['offers_per_s']}/s), "
          f"{f['calls']} calls; {f['kills']} kills ({f['leader_kills']} of the leader), "
          f"1 freeze of the leader for {a.stop_s} s; {f['leader_elections']} leader elections "
          "(the first included); "
          f"{f['fenced_writes_refused']} fenced writes refused; {f['lapses_failed_over']} "
          "lapsed nodes failed over")
    print(f"routing gaps after a leader loss (s): {f['routing_gaps_after_leader_loss_s']} "
          f"(lease {a.lease} s + 1 s = {a.lease + 1} s); "
          f"max routing gap {f['max_routing_gap_s']} s")
    print(f"ended: {f['ended_as']}; order: {f['order']}")
    print("verdicts: " + json.dumps(v))
    print(f"logs: {logs}")
    if a.json:
        a.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
