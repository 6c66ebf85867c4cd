"""Simulated agent: log in, go available, accept offers, stay for the call, wrap up."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudcounter.sim.client import Connection, SimError, login


@dataclass
class AgentResult:
    calls: int = 0
    offers: int = 0
    call_ids: list[str] = field(default_factory=list)
    error: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)


async def run_agent(url: str, token: str, calls: int, accept_delay: float = 0.5,
                    hangup_after: float | None = None, timeout: float = 600.0,
                    media_factory: Any = None, outcome: str = "resolved",
                    ready: asyncio.Event | None = None) -> AgentResult:
    res = AgentResult()
    conn = Connection(url, "/agent", token)
    deadline = time.monotonic() + timeout
    try:
        await conn.connect()
        reply = await conn.call("agent:status", {"status": "available"})
        if not reply.get("ok"):
            raise SimError(f"cannot go available: {reply.get('error')}")
        if ready is not None:
            ready.set()
        while res.calls < calls:
            left = deadline - time.monotonic()
            _, offer = await conn.expect("call:offer", timeout=left)
            res.offers += 1
            call_id = offer["call_id"]
            if accept_delay:
                await asyncio.sleep(accept_delay)
            reply = await conn.call("call:accept", {"call_id": call_id})
            if not reply.get("ok"):
                continue  # the offer expired or was withdrawn
            media = media_factory() if media_factory else None
            if media is not None:
                media.ice_servers = reply.get("ice_servers") or []
                await media.start(conn, call_id)
            try:
                wait = hangup_after if hangup_after is not None else deadline - time.monotonic()
                try:
                    await conn.expect("call:ended", timeout=wait)
                except asyncio.TimeoutError:
                    if hangup_after is None:
                        raise
                    await conn.call("call:hangup", {"call_id": call_id})
                    await conn.expect("call:ended", timeout=10)
            finally:
                if media is not None:
                    res.media.append(await media.stop())
            reply = await conn.call("call:wrapup", {"call_id": call_id, "outcome": outcome,
                                                    "notes": "simulated"})
            if not reply.get("ok"):
                raise SimError(f"wrap-up refused: {reply.get('error')}")
            res.calls += 1
            res.call_ids.append(call_id)
        return res
    except (SimError, asyncio.TimeoutError, OSError) as exc:
        res.error = str(exc) or type(exc).__name__
        return res
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    finally:
        await conn.close()


async def run_agent_cli(args: argparse.Namespace) -> int:
    token = await login(args.url, args.username, args.password)
    factory = None
    if not args.no_media:
        from cloudcounter.sim.media import SimMedia, encoded_source
        video = await asyncio.to_thread(encoded_source, args.video) if args.video else None
        factory = lambda: SimMedia("agent", video=video)  # noqa: E731
    res = await run_agent(args.url, token, args.calls, args.accept_delay, args.hangup_after,
                          args.timeout, factory)
    print(json.dumps(asdict(res), separators=(",", ":")), flush=True)
    return 0 if res.error is None and res.calls >= args.calls else 1
