"""Locust scenario for operators: customers request calls, agents answer them.

Against a running hub (see ``loadtests/README.md``)::

    .venv/bin/locust -f loadtests/locustfile.py --headless -u 110 -r 20 -t 30s \\
        --host http://127.0.0.1:8080

Users are python-socketio's synchronous ``socketio.Client`` inside locust users (locust's
gevent patches its threads and sockets), speaking protocol version 1 over the WebSocket
transport. Ten customers for every agent (class weights). At test start the accounts they
use are written into the hub's database if missing (``bench_agent_N`` with every skill, and
``cus_bench_NNNNN``), read from the same ``CLOUDCOUNTER_*`` environment as the hub;
customer tokens are minted with the customer-token secret, as the bank's backend would.

Figures in locust's table: ``sio call:request`` etc. are acknowledgement round trips;
``call request->offer`` is the time from an agent's ``call:offer`` back to when its customer
sent the request (both users in this process, same clock); ``call request->accepted`` is
the customer's wait until ``call:accepted``.
"""

from __future__ import annotations

import itertools
import os
import queue
import time
from typing import Any, Callable

import socketio
from locust import HttpUser, between, constant, events, task
from locust.env import Environment

SERVICES = ("card_loss", "password_reset", "contact_change", "large_transfer", "car_loan")
SKILLS = ("cards", "security", "accounts", "payments", "loans")
PASSWORD = "bench-password-1"
WAIT_S = 60.0

_agent_ids = itertools.count()
_customer_ids = itertools.count()
_sent_at: dict[str, float] = {}  # customer id -> when its pending request was sent


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    parser.add_argument("--cc-agents", type=int, default=100, env_var="CC_AGENTS",
                        help="agent accounts to provision (at least the agent users)")
    parser.add_argument("--cc-customers", type=int, default=1000, env_var="CC_CUSTOMERS",
                        help="customer records to provision (at least the customer users)")
    parser.add_argument("--cc-hold", type=float, default=1.0, env_var="CC_HOLD",
                        help="seconds an agent stays in each call before hanging up")


@events.test_start.add_listener
def _provision(environment: Environment, **_: Any) -> None:
    import asyncio

    from cloudcounter.hub.settings import Settings

    opts = environment.parsed_options
    # the same CLOUDCOUNTER_* environment as the hub; demo mode unless told otherwise
    settings = Settings.from_env({**os.environ,
                                  "CLOUDCOUNTER_DEMO": os.environ.get("CLOUDCOUNTER_DEMO", "1")})
    environment.cc_secret = settings.customer_token_secret  # type: ignore[attr-defined]
    asyncio.run(provision(settings.database_url, opts.cc_agents if opts else 100,
                          opts.cc_customers if opts else 1000))


async def provision(database_url: str, agents: int, customers: int) -> None:
    """Add the benchmark's agents and customers that the database does not have yet."""
    from sqlalchemy import select

    from cloudcounter.db.engine import make_engine, make_sessionmaker
    from cloudcounter.db.models import AgentSkill, Customer, Role, User
    from cloudcounter.hub.auth import hash_password

    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            users = set((await s.scalars(select(User.username).where(
                User.username.like("bench_agent_%")))).all())
            cids = set((await s.scalars(select(Customer.id).where(
                Customer.id.like("cus_bench_%")))).all())
            missing = [f"bench_agent_{i}" for i in range(agents)
                       if f"bench_agent_{i}" not in users]
            pw = hash_password(PASSWORD) if missing else ""
            s.add_all(User(username=u, display_name=u, password_hash=pw, role=Role.AGENT.value,
                           skills=[AgentSkill(skill=k) for k in SKILLS]) for u in missing)
            s.add_all(Customer(id=f"cus_bench_{i:05d}", name=f"Bench customer {i}",
                               id_number_masked="***-**-0000", phone="+15550000000")
                      for i in range(customers) if f"cus_bench_{i:05d}" not in cids)
    finally:
        await engine.dispose()


class SocketIOUser(HttpUser):
    """A locust user holding one Socket.IO connection to one namespace."""

    abstract = True
    namespace = "/"

    def on_start(self) -> None:
        self.events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.sio = socketio.Client(reconnection=False, logger=False, engineio_logger=False,
                                   handle_sigint=False)

        def catch_all(event: str, data: Any = None) -> None:
            self.on_event(event, data if isinstance(data, dict) else {})
        self.sio.on("*", catch_all, namespace=self.namespace)
        t = time.perf_counter()
        try:
            self.sio.connect(self.host, namespaces=[self.namespace], transports=["websocket"],
                             auth={"token": self.token(), "protocol": 1}, wait_timeout=10)
            self.record("connect", t)
        except Exception as exc:
            self.record("connect", t, exc)
            self.stop()

    def on_stop(self) -> None:
        if getattr(self, "sio", None) is not None:
            self.sio.disconnect()

    def token(self) -> str:
        raise NotImplementedError

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        self.events.put((event, data))

    def record(self, name: str, started: float, exc: Exception | None = None,
               kind: str = "sio") -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=exc, context={})

    def call(self, event: str, data: dict[str, Any]) -> dict[str, Any] | None:
        """Send ``event`` and wait for its acknowledgement; record it; None on failure."""
        t = time.perf_counter()
        try:
            reply = self.sio.call(event, data, namespace=self.namespace, timeout=10)
        except Exception as exc:
            self.record(event, t, exc)
            return None
        ok = isinstance(reply, dict) and reply.get("ok")
        self.record(event, t, None if ok else RuntimeError(f"{event}: {reply}"))
        return reply if ok else None

    def expect(self, *names: str, timeout: float = WAIT_S,
               until: Callable[[dict[str, Any]], bool] = lambda d: True
               ) -> tuple[str, dict[str, Any]] | None:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                event, data = self.events.get(timeout=left)
            except queue.Empty:
                break
            if event in names and until(data):
                return event, data
        return None


class Agent(SocketIOUser):
    """Logs in, goes available, accepts every offer, hangs up after a hold, wraps up."""

    weight = 1
    namespace = "/agent"
    wait_time = constant(0)

    def token(self) -> str:
        username = f"bench_agent_{next(_agent_ids)}"
        with self.client.post("/api/login", json={"username": username,
                                                  "password": PASSWORD},
                              catch_response=True, name="/api/login") as r:
            if r.status_code != 200:
                r.failure(f"{r.status_code}: {r.text[:200]}")
                raise RuntimeError(f"login {username} failed")
        return str(r.json()["token"])

    def on_start(self) -> None:
        super().on_start()
        if self.sio.connected:
            self.call("agent:status", {"status": "available"})

    def on_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "call:offer":  # timed here, not when the user gets round to it
            sent = _sent_at.pop(str(data.get("customer", {}).get("id")), None)
            if sent is not None:
                self.environment.events.request.fire(
                    request_type="call", name="request->offer",
                    response_time=(time.time() - sent) * 1000, response_length=0,
                    exception=None, context={})
        super().on_event(event, data)

    @task
    def answer(self) -> None:
        got = self.expect("call:offer", timeout=5)
        if got is None:
            return  # no customer waiting: look again
        call_id = got[1]["call_id"]
        if self.call("call:accept", {"call_id": call_id}) is None:
            return
        ended = self.expect("call:ended", timeout=self.environment.parsed_options.cc_hold
                            if self.environment.parsed_options else 1.0,
                            until=lambda d: d.get("call_id") == call_id)
        if ended is None:
            self.call("call:hangup", {"call_id": call_id})
        # with CLOUDCOUNTER_WRAP_UP_S=0 the hub may end the wrap-up first: not a failure
        # signalling only: no script steps are done, so resolving needs a skip reason
        self.sio.call("call:wrapup", {"call_id": call_id, "outcome": "resolved", "notes": "",
                                      "then": "available", "skip_reason": "load test"},
                      namespace=self.namespace, timeout=10)


class Customer(SocketIOUser):
    """Requests a call, waits for an agent, stays until the agent hangs up, thinks, repeats."""

    weight = 10
    namespace = "/customer"
    wait_time = between(1, 3)

    def token(self) -> str:
        from cloudcounter.hub.auth import mint_customer_token
        self.customer_id = f"cus_bench_{next(_customer_ids):05d}"
        return mint_customer_token(self.environment.cc_secret,  # type: ignore[attr-defined]
                                   self.customer_id, 3600)

    @task
    def request_call(self) -> None:
        service = SERVICES[int(time.time() * 1000) % len(SERVICES)]
        t = time.perf_counter()
        _sent_at[self.customer_id] = time.time()
        reply = self.call("call:request", {"service": service})
        if reply is None:
            _sent_at.pop(self.customer_id, None)
            return
        call_id = reply["call_id"]
        got = self.expect("call:accepted", "call:ended", until=lambda d: d.get("call_id")
                          == call_id)
        if got is None or got[0] != "call:accepted":
            self.record("request->accepted", t, RuntimeError(f"no agent: {got}"), kind="call")
            if got is None:
                self.call("call:hangup", {"call_id": call_id})
            return
        self.record("request->accepted", t, kind="call")
        if self.expect("call:ended", until=lambda d: d.get("call_id") == call_id) is None:
            self.call("call:hangup", {"call_id": call_id})
