"""Simulated agent: log in, go available, accept offers, work through the service script,
stay for the call, wrap up.

``steps="all"`` completes every step: checks by hand unless the analysis completed them,
statements shown on the customer's screen (or, for an app that does not show them or does
not answer in ``answer_timeout`` seconds, recorded as confirmed aloud), questions answered
with their reassuring option. ``"skip-required"`` completes only optional steps, so the
wrap-up as ``resolved`` is refused and then given with a skip reason. At risk level high
the agent asks a team lead and waits ``approval_wait`` seconds for the decision. A
``resolved`` wrap-up the hub refuses falls back to ``unresolved`` (the refusals are kept
in the result).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cloudcounter.sim.client import Connection, SimError, login
from cloudcounter.sim.loan import interview, record_outcome

BUSINESS_REFUSALS = {"steps_incomplete", "approval_required", "risk_blocked",
                     "confirmation_declined", "credit_outcome_required"}
SKIP_REASON = "simulated agent: required steps skipped"


@dataclass
class AgentResult:
    calls: int = 0
    offers: int = 0
    call_ids: list[str] = field(default_factory=list)
    error: str | None = None
    media: list[dict[str, Any]] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    steps_done: list[str] = field(default_factory=list)
    approvals: list[str] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)  # last snapshot of each call
    loans: list[dict[str, Any]] = field(default_factory=list)  # the credit panel of each loan call
    loan_outcomes: list[dict[str, Any]] = field(default_factory=list)


#: refusals that mean the call is over (or its customer gone): the agent goes to wrap-up
CALL_OVER = frozenset({"customer_not_in_call", "unknown_call"})


class CallEnded(Exception):
    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__("call ended")
        self.data = data


class ScriptRunner:
    """Works through one call's script over the agent's connection."""

    def __init__(self, conn: Connection, call_id: str, flow: dict[str, Any], steps: str,
                 answer_timeout: float, res: AgentResult) -> None:
        self.conn, self.call_id, self.flow = conn, call_id, flow
        self.mode, self.answer_timeout, self.res = steps, answer_timeout, res

    async def until(self, predicate: Any, timeout: float) -> bool:
        """Read events until the flow satisfies ``predicate``; raise CallEnded."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.flow):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                event, data = await self.conn.expect("flow:update", "call:ended",
                                                     "approval:decided", timeout=left)
            except asyncio.TimeoutError:
                return False
            if data.get("call_id") != self.call_id:
                continue
            if event == "call:ended":
                raise CallEnded(data)
            if event == "flow:update":
                self.flow = data
        return True

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.flow["steps"] if s["id"] == step_id)

    async def complete(self, step_id: str, answer: str | None = None,
                       note: str | None = None) -> bool:
        payload: dict[str, Any] = {"call_id": self.call_id, "step_id": step_id}
        if answer is not None:
            payload["answer"] = answer
        if note is not None:
            payload["note"] = note
        reply = await self.conn.call("step:complete", payload)
        if reply.get("ok"):
            self.res.steps_done.append(step_id)
            return True
        code = (reply.get("error") or {}).get("code")
        if code == "step_not_open":  # completed meanwhile (an automatic check)
            return True
        await self.ended_if(code)
        raise SimError(f"step {step_id} refused: {code}")

    async def ended_if(self, code: str | None) -> None:
        """A refusal because the call is over (the customer hung up meanwhile): raise
        CallEnded with the hub's call:ended, as a real agent's console would go to wrap-up."""
        if code not in CALL_OVER:
            return
        try:
            while True:
                _, data = await self.conn.expect("call:ended", timeout=10)
                if data.get("call_id") == self.call_id:
                    raise CallEnded(data)
        except asyncio.TimeoutError:
            raise SimError(f"refused ({code}) but the call did not end") from None

    async def run(self) -> None:
        for s in list(self.flow.get("steps") or []):
            if self.flow.get("state") == "declined":
                return
            if self.step(s["id"])["state"] not in ("open", "prompted"):
                continue
            if self.mode == "skip-required" and s["required"]:
                continue
            kind = s["kind"]
            if kind in ("check_identity", "check_liveness"):
                await self.complete(s["id"], note="simulated agent: checked by hand")
            elif kind == "question":
                concern = set(s.get("concern_if") or [])
                values = [o["value"] for o in s.get("options") or []]
                await self.complete(s["id"], next((v for v in values if v not in concern),
                                                  values[0]))
            elif kind == "confirm_statement":
                await self.statement(s["id"])
            else:
                await self.complete(s["id"])

    async def statement(self, step_id: str) -> None:
        if self.flow.get("customer_prompts") and not self.step(step_id).get("missing_facts"):
            reply = await self.conn.call("step:prompt", {"call_id": self.call_id,
                                                         "step_id": step_id})
            if not reply.get("ok"):
                await self.ended_if((reply.get("error") or {}).get("code"))
                raise SimError(f"statement not shown: {reply.get('error')}")
            if await self.until(lambda f: next(x for x in f["steps"] if x["id"] == step_id)
                                ["state"] not in ("open", "prompted"), self.answer_timeout):
                return
            note = "confirmed aloud; the customer's app did not answer"
        else:
            note = "confirmed aloud; the customer's app does not show statements"
        await self.complete(step_id, "confirm", note)


async def run_agent(url: str, token: str, calls: int, accept_delay: float = 0.5,
                    hangup_after: float | None = None, timeout: float = 600.0,
                    media_factory: Any = None, outcome: str = "resolved",
                    ready: asyncio.Event | None = None, steps: str = "all",
                    concern: str | None = None, approval_wait: float = 0.0,
                    answer_timeout: float = 10.0, loan_outcome: str = "pass"
                    ) -> AgentResult:
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
            ended: dict[str, Any] | None = None
            loan = (offer.get("service") or {}).get("code") == "car_loan"
            try:
                if loan:  # the car-loan interview: the application and the questions
                    try:
                        res.loans.append(await interview(conn, call_id))
                    except SimError as exc:
                        res.refusals.append(str(exc)[:200])
                runner = ScriptRunner(conn, call_id, reply.get("flow") or {}, steps,
                                      answer_timeout, res)
                try:
                    if steps != "none":
                        await runner.run()
                    if concern:
                        await conn.call("risk:concern", {"call_id": call_id, "note": concern})
                    await approval(conn, runner, approval_wait, res)
                except CallEnded as exc:
                    ended = exc.data
                if ended is None:
                    wait = hangup_after if hangup_after is not None \
                        else deadline - time.monotonic()
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
            if loan:  # between the interview's end and the wrap-up
                res.loan_outcomes.append(await record_outcome(conn, call_id, loan_outcome))
            await wrap_up(conn, call_id, outcome, steps, res)
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


async def approval(conn: Connection, runner: ScriptRunner, wait: float,
                   res: AgentResult) -> None:
    """At risk level high, ask a team lead and wait for the decision."""
    snap = await conn.call("flow:snapshot", {"call_id": runner.call_id})
    if snap.get("ok"):
        runner.flow = snap["flow"]
    risk = runner.flow.get("risk") or {}
    if wait <= 0 or risk.get("level") != "high" or runner.flow.get("approval_valid"):
        return
    reply = await conn.call("approval:request", {"call_id": runner.call_id,
                                                 "note": "simulated agent asks for approval"})
    if not reply.get("ok"):
        res.approvals.append((reply.get("error") or {}).get("code", "error"))
        return
    decided = await runner.until(
        lambda f: (f.get("approval") or {}).get("state") in ("approved", "refused"), wait)
    res.approvals.append((runner.flow.get("approval") or {}).get("state", "pending")
                         if decided else "timeout")


async def wrap_up(conn: Connection, call_id: str, outcome: str, steps: str,
                  res: AgentResult) -> None:
    snap = await conn.call("flow:snapshot", {"call_id": call_id})
    if snap.get("ok"):
        res.flows.append(snap["flow"])
    payload: dict[str, Any] = {"call_id": call_id, "outcome": outcome, "notes": "simulated"}
    reply = await conn.call("call:wrapup", payload)
    code = (reply.get("error") or {}).get("code")
    if not reply.get("ok") and code in BUSINESS_REFUSALS:
        res.refusals.append(code)
        if steps == "skip-required" and code == "steps_incomplete":
            payload["skip_reason"] = SKIP_REASON
        elif code == "credit_outcome_required":
            payload["skip_reason"] = "simulated agent: the interview could not be assessed"
        else:
            payload.update(outcome="unresolved", notes=f"simulated: resolved refused ({code})")
        reply = await conn.call("call:wrapup", payload)
        code = (reply.get("error") or {}).get("code")
        if not reply.get("ok") and code in BUSINESS_REFUSALS:
            res.refusals.append(code)
            payload.update(outcome="unresolved", notes=f"simulated: resolved refused ({code})")
            if "credit_outcome_required" not in res.refusals:  # the interview still needs it
                payload.pop("skip_reason", None)
            reply = await conn.call("call:wrapup", payload)
    if not reply.get("ok"):
        raise SimError(f"wrap-up refused: {reply.get('error')}")
    res.outcomes.append(payload["outcome"])


async def run_agent_cli(args: argparse.Namespace) -> int:
    token = await login(args.url, args.username, args.password)
    factory = None
    if not args.no_media:
        from cloudcounter.sim.media import SimMedia, encoded_source
        video = await asyncio.to_thread(encoded_source, args.video) if args.video else None
        factory = lambda: SimMedia("agent", video=video)  # noqa: E731
    res = await run_agent(args.url, token, args.calls, args.accept_delay, args.hangup_after,
                          args.timeout, factory, steps=args.steps, concern=args.concern,
                          approval_wait=args.approval_wait, loan_outcome=args.outcome)
    print(json.dumps(asdict(res), separators=(",", ":")), flush=True)
    return 0 if res.error is None and res.calls >= args.calls else 1
