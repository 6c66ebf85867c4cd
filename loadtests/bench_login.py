#!/usr/bin/env python
"""Login benchmark: the hub's peak memory while N staff members sign in at once.

argon2 verifies a password with 64 MiB of memory; unbounded, N concurrent log-ins cost up
to N x 64 MiB at once. The hub bounds them (``CLOUDCOUNTER_LOGIN_CONCURRENCY``). This
script measures it; it asserts nothing about time::

    .venv/bin/python loadtests/bench_login.py              # 40 concurrent log-ins
    .venv/bin/python loadtests/bench_login.py --logins 40 --rounds 3

It starts ``cloudcounter serve`` on a free loopback port (demo mode, SQLite in a temporary
directory), writes N staff accounts straight into the database (one argon2 hash for all),
samples the hub's RSS every 5 ms with psutil, and fires N concurrent ``POST /api/login``
with the right password, each as if from its own address (``X-Forwarded-For`` with the hub
trusting 127.0.0.1 as a proxy, so that the per-address login throttle does not mix into a
memory figure). Prints the RSS before, the peak during, the log-ins that succeeded and
their statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_signaling import HOST, ROOT, VENV_BIN, free_port, hub_env, wait_http  # noqa: E402

PASSWORD = "bench-password-1"


async def seed(database_url: str, n: int) -> None:
    from cloudcounter.db.engine import make_engine, make_sessionmaker
    from cloudcounter.db.models import Role, User
    from cloudcounter.hub.auth import hash_password

    pw = hash_password(PASSWORD)
    engine = make_engine(database_url)
    try:
        async with make_sessionmaker(engine)() as s, s.begin():
            s.add_all(User(username=f"bench_login_{i}", display_name=f"Bench {i}",
                           password_hash=pw, role=Role.AGENT.value) for i in range(n))
    finally:
        await engine.dispose()


class Sampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)


async def logins(url: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> int:
            async with http.post(url + "/api/login",
                                 json={"username": f"bench_login_{i}", "password": PASSWORD},
                                 headers={"X-Forwarded-For": f"192.0.2.{i % 250 + 1}"}) as r:
                await r.read()
                return r.status
        return list(await asyncio.gather(*(one(i) for i in range(n))))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--logins", type=int, default=40)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cc-bench-login-"))
    env = hub_env(tmp)
    env["CLOUDCOUNTER_TRUSTED_PROXIES"] = HOST
    env["CLOUDCOUNTER_VISION_WORKERS"] = "0"
    subprocess.run([str(VENV_BIN / "cloudcounter"), "db", "upgrade"], env=env, check=True,
                   capture_output=True, cwd=ROOT)
    asyncio.run(seed(env["CLOUDCOUNTER_DATABASE_URL"], args.logins))
    port = free_port()
    log = tmp / "hub.log"
    with open(log, "wb") as out:
        hub = subprocess.Popen([str(VENV_BIN / "cloudcounter"), "serve", "--port", str(port)],
                               env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://{HOST}:{port}"
    try:
        wait_http(url + "/healthz", hub, log)
        time.sleep(1.0)
        before = psutil.Process(hub.pid).memory_info().rss
        sampler = Sampler(hub.pid)
        sampler.start()
        statuses: list[int] = []
        for _ in range(args.rounds):
            statuses += asyncio.run(logins(url, args.logins))
        sampler.stop.set()
        sampler.join()
        figures = {"logins": args.logins, "rounds": args.rounds,
                   "rss_before_mb": round(before / 2**20, 1),
                   "rss_peak_mb": round(sampler.peak / 2**20, 1),
                   "statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))}}
        print(json.dumps(figures, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return 0 if statuses.count(200) else 1
    finally:
        hub.terminate()
        try:
            hub.wait(10)
        except subprocess.TimeoutExpired:
            hub.kill()
        if os.environ.get("KEEP_BENCH_DIR") is None:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
