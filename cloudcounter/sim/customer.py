"""Simulated customer: request a call, wait, stay in it, hang up, report one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudcounter.sim.client import Connection, SimError, demo_customer_token


@dataclass
class CustomerResult:
    call_id: str | None = None
    outcome: str = "error"  # completed | ended_by_agent | abandoned | rejected | error | ...
    wait_ms: float | None = None
    positions: list[int] = field(default_factory=list)
    end_reason: str | None = None
    error: str | None = None
    media: dict[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.outcome in ("completed", "ended_by_agent")


async def run_customer(url: str, token: str, service: str, seconds: float,
                       max_wait: float = 120.0, media: Any = None) -> CustomerResult:
    res = CustomerResult()
    conn = Connection(url, "/customer", token)
    try:
        if media is not None:
            await media.prepare()
        await conn.connect()
        t0 = time.monotonic()
        reply = await conn.call("call:request", {"service": service})
        if not reply.get("ok"):
            res.outcome, res.error = "rejected", json.dumps(reply.get("error"))
            return res
        res.call_id = reply["call_id"]
        res.positions.append(reply.get("position", 0))
        while True:
            event, data = await conn.expect("call:position", "call:queued", "call:accepted",
                                            "call:ended", timeout=max_wait)
            if event in ("call:position", "call:queued"):
                res.positions.append(data.get("position", 0))
            elif event == "call:ended":
                res.outcome, res.end_reason = "abandoned", data.get("reason")
                return res
            else:
                break
        res.wait_ms = round((time.monotonic() - t0) * 1000, 1)
        if media is not None:
            media.ice_servers = data.get("ice_servers") or []
            await media.start(conn, res.call_id)
        try:
            event, data = await conn.expect("call:ended", timeout=seconds)
            res.outcome, res.end_reason = "ended_by_agent", data.get("reason")
        except asyncio.TimeoutError:
            reply = await conn.call("call:hangup", {"call_id": res.call_id})
            if not reply.get("ok"):
                raise SimError(f"hangup refused: {reply.get('error')}") from None
            await conn.expect("call:ended", timeout=10)
            res.outcome, res.end_reason = "completed", "completed"
        return res
    except (SimError, asyncio.TimeoutError, OSError) as exc:
        res.outcome, res.error = "error", str(exc) or type(exc).__name__
        return res
    except Exception as exc:  # socketio.exceptions.ConnectionError and friends
        res.outcome, res.error = "error", f"{type(exc).__name__}: {exc}"
        return res
    finally:
        if media is not None:
            res.media = await media.stop()
        await conn.close()


async def run_customer_cli(args: argparse.Namespace) -> int:
    token = args.token or await demo_customer_token(args.url, args.customer)
    media = None
    if not args.no_media:
        from cloudcounter.sim.media import SimMedia
        media = SimMedia("customer", video=args.video)
    res = await run_customer(args.url, token, args.service, args.seconds, args.max_wait, media)
    print(json.dumps(asdict(res), separators=(",", ":")), flush=True)
    return 0 if res.completed else 1
