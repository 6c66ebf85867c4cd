"""Simulated team lead: sign in, watch the approval requests of high-risk calls on the
``/supervisor`` namespace, approve or refuse them, report one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudcounter.sim.client import Connection, SimError, login


@dataclass
class LeadResult:
    decided: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


async def run_lead(url: str, token: str, decision: str = "approve", count: int = 1,
                   timeout: float = 600.0, note: str | None = None,
                   ready: asyncio.Event | None = None) -> LeadResult:
    res = LeadResult()
    conn = Connection(url, "/supervisor", token)
    deadline = time.monotonic() + timeout
    try:
        await conn.connect()
        reply = await conn.call("approvals:list", {})
        if not reply.get("ok"):
            raise SimError(f"approvals:list refused: {reply.get('error')}")
        waiting = list(reply.get("approvals") or [])
        if ready is not None:
            ready.set()
        while len(res.decided) < count:
            if not waiting:
                _, data = await conn.expect("approval:requested",
                                            timeout=deadline - time.monotonic())
                waiting.append(data)
            request = waiting.pop(0)
            payload: dict[str, Any] = {"approval_id": request["approval_id"],
                                       "decision": decision}
            if note:
                payload["note"] = note
            reply = await conn.call("approval:decide", payload)
            res.decided.append({"approval_id": request["approval_id"],
                                "call_id": request.get("call_id"), "ok": bool(reply.get("ok")),
                                "error": (reply.get("error") or {}).get("code")})
        return res
    except (SimError, asyncio.TimeoutError, OSError) as exc:
        res.error = str(exc) or type(exc).__name__
        return res
    except Exception as exc:
        res.error = f"{type(exc).__name__}: {exc}"
        return res
    finally:
        await conn.close()


async def run_lead_cli(args: argparse.Namespace) -> int:
    token = await login(args.url, args.username, args.password)
    res = await run_lead(args.url, token, args.decision, args.count, args.timeout)
    print(json.dumps(asdict(res), separators=(",", ":")), flush=True)
    return 0 if res.error is None else 1
