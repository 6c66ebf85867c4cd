#!/usr/bin/env python
"""Signalling benchmark: one hub, 1,000 customers, 100 agents, and a Socket.IO echo baseline.

Prints figures; asserts nothing about time. Everything listens on and talks to 127.0.0.1,
runs for a bounded time and stops by itself::

    .venv/bin/python loadtests/bench_signaling.py   # 1000 customers, 100 agents, 200/s, 20 s
    .venv/bin/python loadtests/bench_signaling.py --customers 20 --agents 5 --rate 20 --duration 3

Processes: the hub (``cloudcounter serve`` on a free port, SQLite in a temporary directory),
an echo server (a bare python-socketio ``AsyncServer`` on aiohttp with one ``echo`` event) and
one or two load-generator workers (``--workers``). With two workers one holds the agents and
the other the customers (latency then crosses processes and is taken from ``time.time()``,
the same clock on this machine); with one worker it holds both. Echo clients are split
evenly across the workers.

Calls: customers request calls open-loop at ``--rate`` per second (a request slot goes to an
idle customer; a customer is idle again once its call has ended), over the five services.
Agents accept every ``call:offer`` at once, hang up after ``--hold`` seconds and wrap up.
A call setup is complete when the agent's ``call:accept`` is acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SERVICES = ("card_loss", "password_reset", "contact_change", "large_transfer", "car_loan")
SKILLS = "cards,security,accounts,payments,loans"
PASSWORD = "bench-password-1"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Config:
    customers: int = 1000
    agents: int = 100
    rate: float = 200.0
    duration: float = 20.0
    hold: float = 0.0
    drain: float = 3.0
    workers: int = 2
    echo_clients: int = 100
    echo_seconds: float = 3.0
    connect_concurrency: int = 50
    hub_wrapper: str = ""  # a script that runs the hub's CLI (investigation: probes, patches)
    profile: str = ""  # py-spy output (collapsed stacks) of the hub during the load
    keep_hub_log: str = ""
    socketio_manager: str = "local"  # "redis": the hub's emits through a private Redis


# ------------------------------------------------------------------------ figures
def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def ms(values: list[float]) -> dict[str, float]:
    v = [x * 1000 for x in values]
    return {"n": len(v), "p50": pct(v, 50), "p90": pct(v, 90), "p99": pct(v, 99),
            "max": max(v) if v else float("nan")}


# ------------------------------------------------------------------------ setup
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server of the benchmark's own on a free loopback port (never the machine's)."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--socketio-manager redis needs redis-server "
                             "(make system-packages installs it)")
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--bind", HOST, "--port", str(self.port), "--save", "", "--appendonly",
             "no", "--dir", str(directory)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        import redis
        self.client = redis.Redis(host=HOST, port=self.port, socket_timeout=5,
                                  socket_connect_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server did not start on port {self.port}") from exc
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def reset(self) -> None:
        self.client.config_resetstat()

    def counts(self) -> dict[str, Any]:
        """Commands served since :meth:`reset`, by name, and the bytes in and out."""
        stats = self.client.info("commandstats")
        net = self.client.info("stats")
        return {"commands": {k.removeprefix("cmdstat_"): int(v["calls"])
                             for k, v in stats.items()},
                "bytes_in": int(net["total_net_input_bytes"]),
                "bytes_out": int(net["total_net_output_bytes"])}

    def stop(self) -> None:
        self.client.close()
        stop_process(self.proc)


def hub_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    env.update({
        "CLOUDCOUNTER_DEMO": "1",
        "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/bench.db",
        "CLOUDCOUNTER_WRAP_UP_S": "0",
        "CLOUDCOUNTER_LOG_LEVEL": "WARNING",
        "CLOUDCOUNTER_ICE_SERVERS": "[]",
        "CLOUDCOUNTER_MEDIA_HOST_ADDRESSES": HOST,
        "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp / "recordings"),
        # every simulated client comes from 127.0.0.1, as if behind one balancer: the
        # per-address limits (docs/security.md) would refuse all but the first 50
        "CLOUDCOUNTER_MAX_CONNECTIONS_PER_ADDRESS": "100000",
        "CLOUDCOUNTER_MAX_REQUESTS_IN_FLIGHT_PER_ADDRESS": "100000",
        "CLOUDCOUNTER_CALL_REQUESTS_PER_ADDRESS_PER_MIN": "10000000",
        "CLOUDCOUNTER_CALL_REQUESTS_PER_CUSTOMER_PER_MIN": "100000",
    })
    return env


async def seed(database_url: str, customers: int, agents: int) -> list[str]:
    """Write agents and customers straight into the database; return customer tokens."""
    from cloudcounter.db.engine import make_engine, make_sessionmaker
    from cloudcounter.db.models import AgentSkill, Customer, Role, User
    from cloudcounter.hub.auth import hash_password, mint_customer_token
    from cloudcounter.hub.settings import DEMO_CUSTOMER_TOKEN_SECRET

    pw = hash_password(PASSWORD)  # once: argon2 is deliberately slow
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            s.add_all(User(username=f"bench_agent_{i}", display_name=f"Bench agent {i}",
                           password_hash=pw, role=Role.AGENT.value,
                           skills=[AgentSkill(skill=k) for k in SKILLS.split(",")])
                      for i in range(agents))
            s.add_all(Customer(id=f"cus_bench_{i:05d}", name=f"Bench customer {i}",
                               id_number_masked="***-**-0000", phone="+15550000000")
                      for i in range(customers))
    finally:
        await engine.dispose()
    return [mint_customer_token(DEMO_CUSTOMER_TOKEN_SECRET, f"cus_bench_{i:05d}", 3600)
            for i in range(customers)]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited early ({proc.returncode}):\n{tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up in {timeout}s:\n{tail(log)}")


def tail(log: Path, n: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------------ echo server
def echo_server(port: int) -> None:
    """A bare Socket.IO server with the hub's transport settings and one ``echo`` event."""
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", transports=["websocket"], logger=False,
                               engineio_logger=False, ping_interval=10, ping_timeout=10)
    app = web.Application()
    sio.attach(app, socketio_path="socket.io")

    async def echo(sid: str, data: Any) -> Any:
        return data

    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        return None

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    sio.on("connect", connect, namespace="/echo")
    sio.on("echo", echo, namespace="/echo")
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host=HOST, port=port, print=None, access_log=None)


# ------------------------------------------------------------------------ load worker
@dataclass(slots=True)
class Request:
    t_sched: float
    t_send: float
    call_id: str | None = None
    t_ack: float | None = None
    error: str | None = None
    t_accepted: float | None = None
    t_ended: float | None = None


@dataclass(slots=True)
class Answer:
    t_offer: float
    t_accepted: float | None = None
    accept_error: str | None = None
    hangup_error: str | None = None
    wrapup_error: str | None = None


@dataclass
class Customer:
    idx: int
    sio: Any
    current: Request | None = None


@dataclass
class Worker:
    """One load-generator process: echo clients, and agents and/or customers."""

    role: str  # "agents", "customers" or "all"
    index: int
    cfg: Config
    http: Any = None
    echo: list[Any] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    agents: list[Any] = field(default_factory=list)
    idle: collections.deque[Customer] = field(default_factory=collections.deque)
    requests: list[Request] = field(default_factory=list)
    answers: dict[str, Answer] = field(default_factory=dict)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    port: int = 0
    all_idle: asyncio.Event = field(default_factory=asyncio.Event)

    async def client(self, namespace: str, auth: dict[str, Any],
                     on: dict[str, Callable[..., Any]] | None = None) -> Any:
        import socketio
        sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False,
                                   http_session=self.http, handle_sigint=False)
        for name, fn in (on or {}).items():
            sio.on(name, fn, namespace=namespace)
        await sio.connect(f"http://{HOST}:{self.port}", namespaces=[namespace],
                          transports=["websocket"], auth=auth, wait_timeout=10)
        return sio

    async def gather_limited(self, coros: list[Any]) -> list[Any]:
        sem = asyncio.Semaphore(self.cfg.connect_concurrency)

        async def one(c: Any) -> Any:
            async with sem:
                return await c
        return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)

    # -- echo ------------------------------------------------------------------------
    async def echo_connect(self, port: int, count: int) -> dict[str, Any]:
        self.port = port
        res = await self.gather_limited([self.client("/echo", {}) for _ in range(count)])
        self.echo = [r for r in res if not isinstance(r, BaseException)]
        return {"connected": len(self.echo), "errors": [repr(r) for r in res
                                                         if isinstance(r, BaseException)][:3]}

    async def echo_open(self, t0: float, seconds: float, rate: float) -> dict[str, Any]:
        rtts: list[float] = []
        sent = k = 0
        all_back = asyncio.Event()
        while self.echo:
            t = t0 + k / rate
            if t >= t0 + seconds:
                break
            if (d := t - time.time()) > 0:
                await asyncio.sleep(d)
            sio, t_send = self.echo[k % len(self.echo)], time.time()

            def done(*_: Any, t_send: float = t_send) -> None:
                rtts.append(time.time() - t_send)
                if len(rtts) >= sent:
                    all_back.set()
            await sio.emit("echo", {"service": SERVICES[k % 5], "seq": k}, namespace="/echo",
                           callback=done)
            sent += 1
            k += 1
        if len(rtts) < sent:  # let the last replies arrive
            all_back.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(all_back.wait(), 2.0)
        return {"sent": sent, "rtts": rtts}

    async def echo_closed(self, t0: float, seconds: float) -> dict[str, Any]:
        rtts: list[float] = []
        await asyncio.sleep(max(0.0, t0 - time.time()))

        async def loop(sio: Any) -> None:
            k = 0
            while time.time() < t0 + seconds:
                t = time.time()
                await sio.call("echo", {"service": SERVICES[k % 5], "seq": k},
                               namespace="/echo", timeout=10)
                rtts.append(time.time() - t)
                k += 1
        await asyncio.gather(*(loop(s) for s in self.echo))
        return {"rtts": rtts, "seconds": time.time() - t0}

    async def echo_close(self) -> dict[str, Any]:
        await asyncio.gather(*(s.disconnect() for s in self.echo), return_exceptions=True)
        self.echo = []
        return {}

    # -- hub clients ------------------------------------------------------------------
    async def hub_connect(self, port: int, tokens: list[str], agents: list[str]
                          ) -> dict[str, Any]:
        self.port = port
        t = time.time()
        out: dict[str, Any] = {"errors": []}
        if agents:
            res = await self.gather_limited([self.login(u) for u in agents])
            out["login_s"] = time.time() - t
            toks = [r for r in res if isinstance(r, str)]
            out["errors"] += [repr(r) for r in res if not isinstance(r, str)][:3]
            res = await self.gather_limited([self.agent(tok) for tok in toks])
            self.agents = [r for r in res if not isinstance(r, BaseException)]
            out["errors"] += [repr(r) for r in res if isinstance(r, BaseException)][:3]
        if tokens:
            res = await self.gather_limited([self.customer(i, tok)
                                             for i, tok in enumerate(tokens)])
            self.customers = [r for r in res if isinstance(r, Customer)]
            out["errors"] += [repr(r) for r in res if isinstance(r, BaseException)][:3]
            self.idle = collections.deque(self.customers)
        for kind, wanted, got in (("agents", len(agents), len(self.agents)),
                                  ("customers", len(tokens), len(self.customers))):
            if got < wanted:  # a refused connection is an error of the run, never silent
                out["errors"].append(f"{wanted - got} of {wanted} {kind} did not connect")
        out.update(agents=len(self.agents), customers=len(self.customers),
                   seconds=time.time() - t)
        return out

    async def login(self, username: str) -> str:
        url = f"http://{HOST}:{self.port}/api/login"
        async with self.http.post(url, json={"username": username, "password": PASSWORD}) as r:
            data = await r.json()
            if r.status != 200:
                raise RuntimeError(f"login {username}: {r.status} {data}")
            return str(data["token"])

    async def agent(self, token: str) -> Any:
        box: list[Any] = []

        def on_offer(data: Any) -> None:
            self.events["agent:call:offer"] += 1
            call_id = data.get("call_id") if isinstance(data, dict) else None
            if call_id:
                self.answers[call_id] = Answer(time.time())
                task = asyncio.get_running_loop().create_task(self.answer(box[0], call_id))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

        def count(name: str) -> Callable[..., None]:
            def on_event(*_: Any) -> None:
                self.events["agent:" + name] += 1
            return on_event

        handlers: dict[str, Callable[..., Any]] = {"call:offer": on_offer}
        for name in ("agent:state", "call:ended", "queue:stats", "call:offer_withdrawn"):
            handlers[name] = count(name)
        sio = await self.client("/agent", {"token": token, "protocol": 1}, handlers)
        box.append(sio)
        reply = await sio.call("agent:status", {"status": "available"}, namespace="/agent",
                               timeout=10)
        if not (isinstance(reply, dict) and reply.get("ok")):
            raise RuntimeError(f"agent:status refused: {reply}")
        return sio

    async def answer(self, sio: Any, call_id: str) -> None:
        a = self.answers[call_id]
        try:
            r = await sio.call("call:accept", {"call_id": call_id}, namespace="/agent",
                               timeout=10)
            if not r.get("ok"):
                a.accept_error = r.get("error", {}).get("code", "?")
                return
            a.t_accepted = time.time()
            if self.cfg.hold:
                await asyncio.sleep(self.cfg.hold)
            r = await sio.call("call:hangup", {"call_id": call_id}, namespace="/agent",
                               timeout=10)
            if not r.get("ok"):
                a.hangup_error = r.get("error", {}).get("code", "?")
            # signalling only: no script steps are done, so resolving needs a skip reason
            r = await sio.call("call:wrapup", {"call_id": call_id, "outcome": "resolved",
                                               "notes": "", "then": "available",
                                               "skip_reason": "load test"},
                               namespace="/agent", timeout=10)
            if not r.get("ok"):  # wrap_up_s=0: the hub's timer may have ended it first
                a.wrapup_error = r.get("error", {}).get("code", "?")
        except Exception as exc:  # a timeout or a dropped connection: record it
            a.accept_error = a.accept_error or type(exc).__name__

    async def customer(self, idx: int, token: str) -> Customer:
        cus = Customer(idx, None)

        def on_accepted(data: Any) -> None:
            self.events["customer:call:accepted"] += 1
            if cus.current is not None:
                cus.current.t_accepted = time.time()

        def on_ended(data: Any) -> None:
            self.events["customer:call:ended"] += 1
            req = cus.current
            if req is not None:
                req.t_ended = time.time()
                cus.current = None
                self.idle.append(cus)
                if len(self.idle) == len(self.customers):
                    self.all_idle.set()

        def count(name: str) -> Callable[..., None]:
            def on_event(*_: Any) -> None:
                self.events["customer:" + name] += 1
            return on_event

        handlers: dict[str, Callable[..., Any]] = {"call:accepted": on_accepted,
                                                   "call:ended": on_ended}
        for name in ("call:queued", "call:position", "call:state"):
            handlers[name] = count(name)
        cus.sio = await self.client("/customer", {"token": token, "protocol": 1}, handlers)
        return cus

    async def request(self, cus: Customer, t_sched: float, k: int) -> None:
        req = Request(t_sched, time.time())
        cus.current = req
        self.requests.append(req)

        def on_ack(reply: Any = None) -> None:
            req.t_ack = time.time()
            if isinstance(reply, dict) and reply.get("ok"):
                req.call_id = reply.get("call_id")
                return
            req.error = (reply or {}).get("error", {}).get("code", "?") \
                if isinstance(reply, dict) else repr(reply)
            if cus.current is req:
                cus.current = None
                self.idle.append(cus)
        await cus.sio.emit("call:request", {"service": SERVICES[k % len(SERVICES)]},
                           namespace="/customer", callback=on_ack)

    async def load(self, t0: float, t_end: float, drain_until: float, rate: float
                   ) -> dict[str, Any]:
        cpu0, starved, k = time.process_time(), 0, 0
        if self.customers:
            while True:
                t = t0 + k / rate
                if t >= t_end:
                    break
                if (d := t - time.time()) > 0:
                    await asyncio.sleep(d)
                if self.idle:
                    await self.request(self.idle.popleft(), t, k)
                else:
                    starved += 1
                k += 1
            if len(self.idle) < len(self.customers):  # let the calls in progress end
                self.all_idle.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self.all_idle.wait(), drain_until - time.time())
        else:  # agents: answer until the offers stop (the customers' worker waits for ends)
            await asyncio.sleep(max(0.0, t_end - time.time()))
            quiet_since = time.time()
            while time.time() < drain_until and time.time() - quiet_since < 0.5:
                await asyncio.sleep(0.05)
                if self.tasks:
                    quiet_since = time.time()
        snapshot: dict[str, Any] = {}
        if self.agents:  # where the agents are once the load stops (a diagnostic)
            snap = await self.agents[0].call("queue:snapshot", {}, namespace="/agent",
                                             timeout=10)
            snapshot = dict(collections.Counter(a["state"] for a in snap.get("agents", [])))
            snapshot["waiting"] = sum(s["waiting"] for s in snap.get("services", []))
        return {"cpu_s": time.process_time() - cpu0, "starved": starved, "snapshot": snapshot,
                "requests": [asdict(r) for r in self.requests],
                "answers": {c: asdict(a) for c, a in self.answers.items()},
                "events": dict(self.events)}

    async def close(self) -> dict[str, Any]:
        for t in list(self.tasks):
            t.cancel()
        clients = [c.sio for c in self.customers] + self.agents
        await self.gather_limited([c.disconnect() for c in clients])
        return {}

    async def serve(self, pipe: Connection) -> None:
        import aiohttp
        self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            while True:
                cmd, kwargs = await asyncio.to_thread(pipe.recv)
                if cmd == "stop":
                    await self.close()
                    pipe.send({})
                    return
                try:
                    pipe.send(await getattr(self, cmd)(**kwargs))
                except Exception as exc:
                    pipe.send({"fatal": f"{cmd}: {type(exc).__name__}: {exc}"})
        finally:
            await self.http.close()


def worker_main(role: str, index: int, cfg: Config, pipe: Connection) -> None:
    asyncio.run(Worker(role, index, cfg).serve(pipe))


# ------------------------------------------------------------------------ orchestration
class Pool:
    def __init__(self, cfg: Config) -> None:
        ctx = mp.get_context("spawn")
        roles = ["all"] if cfg.workers == 1 else ["agents", "customers"]
        self.roles = roles
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        for i, role in enumerate(roles):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, args=(role, i, cfg, child), daemon=True,
                            name=f"bench-{role}")
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    def run(self, cmd: str, per_worker: list[dict[str, Any] | None], timeout: float = 120
            ) -> list[dict[str, Any]]:
        """Send ``cmd`` to each worker with its arguments (``None``: skip it); wait for all."""
        busy = [(pipe, kw) for pipe, kw in zip(self.pipes, per_worker) if kw is not None]
        for pipe, kwargs in busy:
            pipe.send((cmd, kwargs))
        out = []
        for pipe, _ in busy:
            if not pipe.poll(timeout):
                raise SystemExit(f"worker did not answer {cmd!r} within {timeout}s")
            r = pipe.recv()
            if "fatal" in r:
                raise SystemExit(f"worker failed: {r['fatal']}")
            out.append(r)
        return out

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop", {}))
                pipe.poll(20)
            except (OSError, EOFError):
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()


class HubSampler(threading.Thread):
    """Peak RSS and CPU per second of the hub while the load runs."""

    def __init__(self, proc: Any) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.stopped = proc, 0, threading.Event()
        self.cpu: list[tuple[float, float]] = []  # (wall time, % of one core in the last s)

    def run(self) -> None:
        last_t, last_c = time.time(), sum(self.proc.cpu_times()[:2])
        while not self.stopped.wait(1.0):
            self.peak = max(self.peak, self.proc.memory_info().rss)
            t, c = time.time(), sum(self.proc.cpu_times()[:2])
            self.cpu.append((t, 100 * (c - last_c) / (t - last_t)))
            last_t, last_c = t, c


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def run_echo(pool: Pool, cfg: Config, port: int) -> dict[str, Any]:
    parts = len(pool.pipes)
    pool.run("echo_connect", [{"port": port, "count": c}
                              for c in split(cfg.echo_clients, parts)])
    t0 = time.time() + 0.3
    res = pool.run("echo_open", [{"t0": t0, "seconds": cfg.echo_seconds,
                                  "rate": cfg.rate / parts}] * parts)
    open_rtts = [x for r in res for x in r["rtts"]]
    sent = sum(r["sent"] for r in res)
    t0 = time.time() + 0.3
    res = pool.run("echo_closed", [{"t0": t0, "seconds": cfg.echo_seconds}] * parts)
    closed = [x for r in res for x in r["rtts"]]
    pool.run("echo_close", [{}] * parts)
    return {"open": {"rate": cfg.rate, "sent": sent, "answered": len(open_rtts),
                     "rtt_ms": ms(open_rtts)},
            "closed": {"clients": cfg.echo_clients, "count": len(closed), "echoes_per_s":
                       len(closed) / max(r["seconds"] for r in res), "rtt_ms": ms(closed)}}


def analyse(cfg: Config, t0: float, t_end: float, res: list[dict[str, Any]]) -> dict[str, Any]:
    requests = [r for w in res for r in w["requests"]]
    answers = {c: a for w in res for c, a in w["answers"].items()}
    events: collections.Counter[str] = collections.Counter()
    for w in res:
        events.update(w["events"])
    by_call = {r["call_id"]: r for r in requests if r["call_id"]}
    to_offer = [a["t_offer"] - by_call[c]["t_send"] for c, a in answers.items() if c in by_call]
    to_setup = [a["t_accepted"] - by_call[c]["t_send"] for c, a in answers.items()
                if c in by_call and a["t_accepted"]]
    to_ack = [r["t_ack"] - r["t_send"] for r in requests if r["t_ack"]]
    lag = [r["t_send"] - r["t_sched"] for r in requests]
    setups = [a for a in answers.values() if a["t_accepted"] and t0 <= a["t_accepted"] < t_end]
    errors: collections.Counter[str] = collections.Counter()
    for r in requests:
        if r["error"]:
            errors["request:" + r["error"]] += 1
    for a in answers.values():
        for k in ("accept_error", "hangup_error", "wrapup_error"):
            if a[k]:
                errors[k.split("_")[0] + ":" + a[k]] += 1
    dur = t_end - t0
    return {
        "requests_sent": len(requests), "requests_per_s": len(requests) / dur,
        "requests_starved": sum(w["starved"] for w in res),
        "offers": len(answers), "setups": len(setups), "setups_per_s": len(setups) / dur,
        "setups_total": sum(1 for a in answers.values() if a["t_accepted"]),
        "calls_ended": sum(1 for r in requests if r["t_ended"]),
        "request_to_offer_ms": ms(to_offer), "request_to_accepted_ms": ms(to_setup),
        "request_ack_ms": ms(to_ack), "send_lag_ms": ms(lag),
        "errors": dict(errors), "events": dict(events),
        "loadgen_cpu_s": [round(w["cpu_s"], 2) for w in res],
        "after_load": {k: v for w in res for k, v in w["snapshot"].items()},
    }


def per_second(t0: float, t_end: float, res: list[dict[str, Any]],
               cpu: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """Requests, offers and setups per one-second bucket, with the hub's CPU."""
    n = int(t_end - t0) + 1
    rows: list[dict[str, Any]] = [{"s": i, "requests": 0, "offers": 0, "setups": 0,
                                   "hub_cpu": None} for i in range(n)]

    def add(t: float | None, key: str) -> None:
        if t is not None and 0 <= t - t0 < n:
            rows[int(t - t0)][key] += 1
    for w in res:
        for r in w["requests"]:
            add(r["t_send"], "requests")
        for a in w["answers"].values():
            add(a["t_offer"], "offers")
            add(a["t_accepted"], "setups")
    for t, c in cpu:
        if 0 <= t - 0.5 - t0 < n:
            rows[int(t - 0.5 - t0)]["hub_cpu"] = round(c)
    return rows


def run(cfg: Config) -> dict[str, Any]:
    import psutil
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-"))
    env = hub_env(tmp)
    procs: list[subprocess.Popen[bytes]] = []
    pool: Pool | None = None
    private_redis: PrivateRedis | None = None
    out: dict[str, Any] = {"config": asdict(cfg), "cpus": os.cpu_count(),
                           "loadavg_before": os.getloadavg()[0],
                           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    try:
        t = time.time()
        if cfg.socketio_manager == "redis":
            private_redis = PrivateRedis(tmp / "redis")
            env.update({"CLOUDCOUNTER_SOCKETIO_MANAGER": "redis",
                        "CLOUDCOUNTER_REDIS_URL": private_redis.url})
        cli = str(VENV_BIN / "cloudcounter")
        subprocess.run([cli, "db", "upgrade"], env=env, cwd=ROOT, check=True,
                       capture_output=True)
        tokens = asyncio.run(seed(env["CLOUDCOUNTER_DATABASE_URL"], cfg.customers, cfg.agents))
        hub_port, echo_port = free_port(), free_port()
        hub_log, echo_log = tmp / "hub.log", tmp / "echo.log"
        with open(hub_log, "wb") as hl, open(echo_log, "wb") as el:
            hub_cmd = [sys.executable, cfg.hub_wrapper] if cfg.hub_wrapper else [cli]
            procs.append(subprocess.Popen([*hub_cmd, "serve", "--host", HOST, "--port",
                                           str(hub_port)], env=env, cwd=ROOT, stdout=hl,
                                          stderr=subprocess.STDOUT))
            procs.append(subprocess.Popen([sys.executable, __file__, "--echo-server",
                                           str(echo_port)], cwd=ROOT, stdout=el,
                                          stderr=subprocess.STDOUT))
        pool = Pool(cfg)
        wait_http(f"http://{HOST}:{hub_port}/healthz", procs[0], hub_log)
        wait_http(f"http://{HOST}:{echo_port}/healthz", procs[1], echo_log)
        out["setup_s"] = time.time() - t
        print(f"hub pid {procs[0].pid} on :{hub_port}, echo on :{echo_port}, "
              f"{len(pool.pipes)} load worker(s) ({', '.join(pool.roles)})", flush=True)

        echo_proc = psutil.Process(procs[1].pid)
        e0 = sum(echo_proc.cpu_times()[:2])
        out["echo"] = run_echo(pool, cfg, echo_port)
        echoes = out["echo"]["open"]["answered"] + out["echo"]["closed"]["count"]
        out["echo"]["server_cpu_us_per_echo"] = (
            1e6 * (sum(echo_proc.cpu_times()[:2]) - e0) / max(1, echoes))
        print(f"echo baseline done: {out['echo']['closed']['echoes_per_s']:.0f} echoes/s",
              flush=True)

        hub = psutil.Process(procs[0].pid)
        rss0 = hub.memory_info().rss
        if len(pool.pipes) == 1:
            conn = pool.run("hub_connect", [{"port": hub_port, "tokens": tokens,
                                             "agents": [f"bench_agent_{i}"
                                                        for i in range(cfg.agents)]}])
        else:
            # one after the other: logins keep the hub's loop busy (argon2)
            conn = pool.run("hub_connect", [
                {"port": hub_port, "tokens": [], "agents": [f"bench_agent_{i}"
                                                            for i in range(cfg.agents)]},
                None])
            conn += pool.run("hub_connect", [None, {"port": hub_port, "tokens": tokens,
                                                    "agents": []}])
        if procs[0].poll() is not None:
            raise SystemExit(f"the hub exited while clients connected ({procs[0].returncode}):"
                             f"\n{tail(hub_log)}")
        n_agents = sum(c["agents"] for c in conn)
        n_customers = sum(c["customers"] for c in conn)
        out["connect"] = {"agents": n_agents, "customers": n_customers,
                          "login_s": max(c.get("login_s", 0.0) for c in conn),
                          "seconds": max(c["seconds"] for c in conn),
                          "errors": [e for c in conn for e in c["errors"]]}
        print(f"connected {n_agents} agents, {n_customers} customers "
              f"in {out['connect']['seconds']:.1f}s", flush=True)
        time.sleep(0.5)
        rss1 = hub.memory_info().rss
        clients = n_agents + n_customers
        out["memory"] = {"rss_before_mb": rss0 / 2**20, "rss_connected_mb": rss1 / 2**20,
                         "clients": clients,
                         "per_client_kb": (rss1 - rss0) / max(1, clients) / 1024}

        if private_redis is not None:
            private_redis.reset()  # count what the calls cost, not the connects
        sampler = HubSampler(hub)
        sampler.start()
        cpu0 = hub.cpu_times()
        if cfg.profile:  # py-spy is a developer tool, not a dependency
            procs.append(subprocess.Popen(
                [str(VENV_BIN / "py-spy"), "record", "-p", str(hub.pid), "-o", cfg.profile,
                 "-f", "raw", "-r", "200", "-d", str(int(cfg.duration + 1))],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        t0 = time.time() + 0.5
        t_end = t0 + cfg.duration
        res = pool.run("load", [{"t0": t0, "t_end": t_end, "drain_until": t_end + cfg.drain,
                                 "rate": cfg.rate}] * len(pool.pipes),
                       timeout=cfg.duration + cfg.drain + 60)
        if procs[0].poll() is not None:
            raise SystemExit(f"the hub exited during the load ({procs[0].returncode}):\n"
                             f"{tail(hub_log)}")
        cpu1 = hub.cpu_times()
        sampler.stopped.set()
        out["loadavg_after"] = os.getloadavg()[0]
        out["load"] = analyse(cfg, t0, t_end, res)
        if private_redis is not None:
            counts = private_redis.counts()
            calls = max(1, out["load"]["setups_total"])
            out["redis"] = counts | {
                "calls": out["load"]["setups_total"],
                "commands_per_call": round(sum(counts["commands"].values()) / calls, 2),
                "publish_per_call": round(counts["commands"].get("publish", 0) / calls, 2),
                "bytes_in_per_call": round(counts["bytes_in"] / calls),
                "bytes_out_per_call": round(counts["bytes_out"] / calls)}
        busy = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        out["load"]["hub_cpu_pct"] = 100 * busy / (time.time() - t0)
        out["load"]["hub_cpu_ms_per_call"] = 1000 * busy / max(1, out["load"]["setups_total"])
        out["load"]["loadgen_cpu_pct"] = [100 * c / (cfg.duration + cfg.drain)
                                          for c in out["load"]["loadgen_cpu_s"]]
        out["memory"]["rss_peak_load_mb"] = sampler.peak / 2**20
        out["load"]["per_second"] = per_second(t0, t_end + cfg.drain, res, sampler.cpu)
        log = tail(hub_log, 200)
        out["hub_log_problems"] = [ln for ln in log.splitlines()
                                   if " ERROR " in ln or " WARNING " in ln][-5:]
        out["total_s"] = time.time() - t
        if cfg.keep_hub_log:
            shutil.copyfile(hub_log, cfg.keep_hub_log)
        return out
    finally:
        if pool is not None:
            pool.close()
        for p in procs:
            stop_process(p)
        if private_redis is not None:
            private_redis.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------ report
def report(r: dict[str, Any]) -> str:
    cfg, ld, mem, echo = r["config"], r["load"], r["memory"], r["echo"]
    rows = [
        ("machine", f"{r['cpus']} cores, {r['date']}, load average "
                    f"{r['loadavg_before']:.1f} before, {r.get('loadavg_after', 0):.1f} after "
                    f"(other work on the machine skews the figures)"),
        ("load", f"{cfg['customers']} customers, {cfg['agents']} agents, target "
                 f"{cfg['rate']:g} requests/s for {cfg['duration']:g}s, hold {cfg['hold']:g}s, "
                 f"{cfg['workers']} load worker(s)"),
        ("connected", f"{r['connect']['agents']} agents + {r['connect']['customers']} customers"
                      f" in {r['connect']['seconds']:.1f}s (agent logins "
                      f"{r['connect']['login_s']:.1f}s)"),
        ("", ""),
        ("QUEUE (hub)", ""),
        ("call setups/s", f"{ld['setups_per_s']:.1f}  ({ld['setups']} accepted in the window; "
                          f"requests sent {ld['requests_per_s']:.1f}/s, "
                          f"{ld['requests_starved']} slots found no idle customer)"),
        ("request->offer", lat(ld["request_to_offer_ms"])),
        ("request->accepted", lat(ld["request_to_accepted_ms"])),
        ("request ack", lat(ld["request_ack_ms"])),
        ("calls ended", f"{ld['calls_ended']} of {ld['requests_sent']} requested"),
        ("after the load", ", ".join(f"{k} {v}" for k, v in sorted(ld["after_load"].items()))),
        ("errors", ", ".join(f"{k} {v}" for k, v in sorted(ld["errors"].items())) or "none"),
        ("hub memory", f"{mem['rss_before_mb']:.1f} MB before connect, "
                       f"{mem['rss_connected_mb']:.1f} MB with {mem['clients']} clients: "
                       f"{mem['per_client_kb']:.1f} KB per client "
                       f"(peak under load {mem['rss_peak_load_mb']:.1f} MB)"),
        ("hub CPU", f"{ld['hub_cpu_pct']:.0f}% of one core during load, "
                    f"{ld['hub_cpu_ms_per_call']:.2f} ms per call set up and ended"),
        ("load-gen CPU", ", ".join(f"{c:.0f}%" for c in ld["loadgen_cpu_pct"])
         + " of one core per worker"),
        ("send lag", lat(ld["send_lag_ms"]) + "  (load generator: actual - scheduled)"),
        ("", ""),
        ("BASELINE (echo)", ""),
        (f"echo @ {echo['open']['rate']:g}/s", lat(echo["open"]["rtt_ms"])
         + f"  ({echo['open']['answered']}/{echo['open']['sent']} answered)"),
        ("echo saturated", f"{echo['closed']['echoes_per_s']:.0f} echoes/s with "
                           f"{echo['closed']['clients']} clients in a loop, "
                           + lat(echo["closed"]["rtt_ms"])),
        ("echo server CPU", f"{echo['server_cpu_us_per_echo']:.0f} us per echo"),
    ]
    if r.get("redis"):
        red = r["redis"]
        top = sorted(red["commands"].items(), key=lambda kv: -kv[1])[:6]
        rows += [("", ""), ("REDIS (emits across nodes)", ""),
                 ("per call", f"{red['commands_per_call']:g} commands "
                              f"({red['publish_per_call']:g} PUBLISH), "
                              f"{red['bytes_in_per_call']} bytes in, "
                              f"{red['bytes_out_per_call']} bytes out "
                              f"(over {red['calls']} calls set up and ended)"),
                 ("commands", ", ".join(f"{k} {v}" for k, v in top))]
    if r.get("hub_log_problems"):
        rows.append(("hub log", r["hub_log_problems"][-1][:100]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" if k else "" for k, v in rows)


def lat(d: dict[str, float]) -> str:
    return (f"p50 {d['p50']:.1f} ms  p90 {d['p90']:.1f} ms  p99 {d['p99']:.1f} ms  "
            f"max {d['max']:.1f} ms  (n={d['n']})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    d = Config()
    p.add_argument("--customers", type=int, default=d.customers)
    p.add_argument("--agents", type=int, default=d.agents)
    p.add_argument("--rate", type=float, default=d.rate, help="call requests per second")
    p.add_argument("--duration", type=float, default=d.duration, help="seconds of steady load")
    p.add_argument("--hold", type=float, default=d.hold, help="seconds an agent stays in a call")
    p.add_argument("--workers", type=int, choices=(1, 2), default=d.workers)
    p.add_argument("--echo-clients", type=int, default=d.echo_clients)
    p.add_argument("--echo-seconds", type=float, default=d.echo_seconds)
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument("--profile", default="", help="record the hub with py-spy during the load "
                   "(collapsed stacks; needs `pip install py-spy` in the venv)")
    p.add_argument("--hub-wrapper", default="", help="run the hub as `python SCRIPT serve ...` "
                   "instead of `cloudcounter serve` (to try a patched or instrumented hub)")
    p.add_argument("--keep-hub-log", type=Path, help="copy the hub's log here")
    p.add_argument("--socketio-manager", choices=("local", "redis"), default="local",
                   help="redis: the hub's emits go through a private redis-server, and "
                   "Redis commands and bytes per call are counted")
    p.add_argument("--echo-server", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo_server:
        echo_server(args.echo_server)
        return 0
    cfg = Config(customers=args.customers, agents=args.agents, rate=args.rate,
                 duration=args.duration, hold=args.hold, workers=args.workers,
                 echo_clients=args.echo_clients, echo_seconds=args.echo_seconds,
                 profile=args.profile, hub_wrapper=args.hub_wrapper,
                 keep_hub_log=str(args.keep_hub_log or ""),
                 socketio_manager=args.socketio_manager)
    result = run(cfg)
    print()
    print(report(result), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    ok = result["load"]["setups_total"] > 0 and not result["connect"]["errors"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
