"""Simulated customer: request a call, wait, stay in it, hang up, report one JSON line.

In the call it answers what the hub shows on screen (protocol 1.1 ``prompt:show``):
``confirm="yes"`` confirms statements and answers questions with their reassuring
option, ``"no"`` declines statements, ``"silent"`` connects as a protocol 1.0 app that
never sees them (the agent then records the spoken answer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudcounter.sim.client import Connection, SimError, demo_customer_token

IN_CALL_EVENTS = ("call:ended", "prompt:show", "flow:state")


@dataclass
class CustomerResult:
    call_id: str | None = None
    outcome: str = "error"  # completed | ended_by_agent | abandoned | rejected | error | ...
    wait_ms: float | None = None
    positions: list[int] = field(default_factory=list)
    end_reason: str | None = None
    error: str | None = None
    media: dict[str, Any] = field(default_factory=dict)
    answers: list[dict[str, Any]] = field(default_factory=list)
    business: str | None = None  # "declined" when the business ended on a declined statement

    @property
    def completed(self) -> bool:
        return self.outcome in ("completed", "ended_by_agent")


def choose(prompt: dict[str, Any], confirm: str) -> str:
    if prompt.get("kind") == "statement":
        return "confirm" if confirm == "yes" else "decline"
    values = [o.get("value") for o in prompt.get("options") or []]
    return "no" if "no" in values else str(values[0])


async def answer_prompt(conn: Connection, prompt: dict[str, Any], confirm: str,
                        res: CustomerResult) -> None:
    answer = choose(prompt, confirm)
    reply = await conn.call("prompt:answer", {
        "call_id": prompt["call_id"], "prompt_id": prompt["prompt_id"],
        "step_id": prompt["step_id"], "sha256": prompt["sha256"], "answer": answer})
    res.answers.append({"step_id": prompt["step_id"], "answer": answer,
                        "ok": bool(reply.get("ok")),
                        "error": (reply.get("error") or {}).get("code")})


async def run_customer(url: str, token: str, service: str, seconds: float,
                       max_wait: float = 120.0, media: Any = None,
                       confirm: str = "yes") -> CustomerResult:
    res = CustomerResult()
    conn = Connection(url, "/customer", token, protocol=1 if confirm == "silent" else "1.1")
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
        deadline = time.monotonic() + seconds
        while True:
            try:
                event, data = await conn.expect(*IN_CALL_EVENTS,
                                                timeout=max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                reply = await conn.call("call:hangup", {"call_id": res.call_id})
                if not reply.get("ok"):
                    raise SimError(f"hangup refused: {reply.get('error')}") from None
                await conn.expect("call:ended", timeout=10)
                res.outcome, res.end_reason = "completed", "completed"
                return res
            if event == "call:ended":
                res.outcome, res.end_reason = "ended_by_agent", data.get("reason")
                return res
            if event == "flow:state":
                res.business = data.get("state")
            elif event == "prompt:show" and data.get("call_id") == res.call_id \
                    and confirm != "silent":
                await answer_prompt(conn, data, confirm, res)
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
    res = await run_customer(args.url, token, args.service, args.seconds, args.max_wait, media,
                             args.confirm)
    print(json.dumps(asdict(res), separators=(",", ":")), flush=True)
    return 0 if res.completed else 1
