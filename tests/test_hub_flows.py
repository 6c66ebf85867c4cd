"""Service flows against a running hub, through the documented protocol: the simulators
work through scripts, the customer confirms or declines, a team lead approves or refuses,
and bad input is refused with a code and leaves nothing behind."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from cloudcounter.db.models import (
    CallApproval, CallConfirmation, CallSession, CallStep, CustomerAccountChange, User,
)
from cloudcounter.sim.agent import run_agent
from cloudcounter.sim.client import Connection
from cloudcounter.sim.customer import run_customer
from cloudcounter.sim.lead import run_lead
from tests.conftest import Hub

pytestmark = pytest.mark.integration


async def detail(hub: Hub, call_id: str) -> dict[str, Any]:
    return await hub.call_detail(call_id)


def kinds(d: dict[str, Any]) -> list[str]:
    return [e["kind"] for e in d["timeline"]]


def events(d: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e for e in d["timeline"] if e["kind"] == kind]


async def scripted_call(hub: Hub, *, customer: str = "cus_demo_barack",
                        service: str = "card_loss", agent: str = "alice", confirm: str = "yes",
                        steps: str = "all", concern: str | None = None,
                        approval_wait: float = 0.0, token: str | None = None
                        ) -> tuple[Any, Any]:
    ready = asyncio.Event()
    agent_task = asyncio.create_task(run_agent(
        hub.url, await hub.agent_token(agent), calls=1, accept_delay=0, ready=ready,
        hangup_after=0, steps=steps, concern=concern, approval_wait=approval_wait,
        answer_timeout=20))
    await ready.wait()
    res = await run_customer(hub.url, token or hub.customer_token(customer), service,
                             seconds=120, confirm=confirm)
    return res, await agent_task


async def test_a_complete_scripted_call(hub: Hub) -> None:
    res, agent = await scripted_call(hub)
    assert res.completed and agent.error is None and agent.outcomes == ["resolved"], agent
    assert agent.refusals == []
    assert res.answers == [{"step_id": "statement", "answer": "confirm", "ok": True,
                            "error": None}]
    d = await detail(hub, res.call_id)
    k = kinds(d)
    assert k.index("call.answered") < k.index("script.started") < k.index("prompt.shown") \
        < k.index("statement.answered") < k.index("call.wrapped_up")
    started = events(d, "script.started")[0]["payload"]
    assert started["version"] == 1 and started["steps"] == 8
    shown = events(d, "prompt.shown")[0]["payload"]
    answered = events(d, "statement.answered")[0]
    assert answered["actor"] == "customer:cus_demo_barack"
    p = answered["payload"]
    assert p["answer"] == "confirm" and p["method"] == "customer_app"
    assert p["text"] == shown["text"] and "card ending 4821" in p["text"]
    assert p["sha256"] == shown["sha256"] and p["script_version"] == 1
    assert {e["payload"]["step_id"] for e in events(d, "step.completed")} == {
        "identity", "liveness", "confirm_card", "block_card", "read_back", "outcome"}
    assert events(d, "question.answered")[0]["payload"]["answer"] == "yes"  # no concern_if
    wrapped = events(d, "call.wrapped_up")[0]["payload"]
    assert wrapped["outcome"] == "resolved" and wrapped["business_state"] == "completed"
    assert wrapped["risk"]["level"] == "low" and "skipped_steps" not in wrapped
    async with hub.ctx.sm() as s:
        row = await s.get(CallSession, res.call_id)
        steps = (await s.scalars(select(CallStep).where(CallStep.call_id == res.call_id))).all()
        conf = (await s.scalars(select(CallConfirmation)
                                .where(CallConfirmation.call_id == res.call_id))).all()
    assert row is not None and row.script_version == 1 and row.business_state == "completed"
    # rule set 2: migration 0009 added the car-loan rule credit_contradictions
    assert row.risk_level == "low" and row.risk_rules_version == 2 and row.risk_score == 0
    assert len(steps) == 8 and {s.state for s in steps} == {"done"}
    statement = next(c for c in conf if c.kind == "statement")
    assert statement.text_sha256 == p["sha256"] and statement.answer == "confirm"
    assert statement.shown_at is not None and statement.answered_at is not None
    assert statement.answered_at >= statement.shown_at


async def test_an_old_app_that_never_confirms_still_completes(hub: Hub) -> None:
    """A protocol 1.0 customer app never sees the statement: the agent records the
    spoken confirmation with a reason."""
    res, agent = await scripted_call(hub, confirm="silent")
    assert res.completed and agent.outcomes == ["resolved"], agent
    d = await detail(hub, res.call_id)
    assert "prompt.shown" not in kinds(d)
    p = events(d, "statement.answered")[0]["payload"]
    assert p["method"] == "agent_spoken" and "does not show statements" in p["note"]
    assert events(d, "statement.answered")[0]["actor"] == "agent:alice"
    assert d["call"]["risk_level"] == "low"
    risk = events(d, "risk.assessed")[-1]["payload"]
    assert [r["rule"] for r in risk["reasons"]] == ["confirmation_spoken_only"]


async def test_a_refused_wrap_up_then_skipped_with_a_reason(hub: Hub) -> None:
    res, agent = await scripted_call(hub, steps="skip-required")
    assert agent.refusals == ["steps_incomplete"] and agent.outcomes == ["resolved"], agent
    d = await detail(hub, res.call_id)
    assert len(events(d, "call.wrapped_up")) == 1  # the refusal recorded nothing
    wrapped = events(d, "call.wrapped_up")[0]["payload"]
    assert wrapped["business_state"] == "completed_with_skips"
    assert wrapped["skip_reason"].startswith("simulated agent")
    assert len(wrapped["skipped_steps"]) == 8  # every step of card_loss is required
    async with hub.ctx.sm() as s:
        skipped = (await s.scalars(select(CallStep).where(
            CallStep.call_id == res.call_id, CallStep.state == "skipped"))).all()
    assert {x.step_id for x in skipped} == set(wrapped["skipped_steps"])


async def test_a_declined_confirmation_ends_the_business_not_the_call(hub: Hub) -> None:
    res, agent = await scripted_call(hub, confirm="no")
    assert res.business == "declined" and res.completed
    assert agent.refusals == ["confirmation_declined"] and agent.outcomes == ["unresolved"]
    d = await detail(hub, res.call_id)
    p = events(d, "statement.answered")[0]["payload"]
    assert p["answer"] == "decline" and p["state"] == "declined"
    k = kinds(d)
    assert "business.declined" in k and k.index("business.declined") < k.index("call.ended")
    assert d["call"]["risk_level"] == "medium"  # confirmation_declined
    assert events(d, "call.wrapped_up")[0]["payload"]["business_state"] == "declined"
    # nothing after the declined statement was done
    done = {e["payload"]["step_id"] for e in events(d, "step.completed")}
    assert "block_card" not in done


@pytest.mark.parametrize("decision", ["approve", "refuse"])
async def test_a_high_risk_call_needs_a_team_lead(hub: Hub, decision: str) -> None:
    ready = asyncio.Event()
    lead = asyncio.create_task(run_lead(hub.url, await hub.agent_token("leo"), decision,
                                        count=1, timeout=60, note="checked with the agent",
                                        ready=ready))
    await ready.wait()
    res, agent = await scripted_call(hub, concern="the customer reads from a paper",
                                     approval_wait=30)
    leo = await lead
    assert leo.error is None and leo.decided[0]["ok"], leo
    state = "approved" if decision == "approve" else "refused"
    assert agent.approvals == [state]
    d = await detail(hub, res.call_id)
    requested = events(d, "approval.requested")[0]
    decided = events(d, "approval.decided")[0]
    assert requested["actor"] == "agent:alice" and decided["actor"] == "lead:leo"
    assert decided["payload"]["agent"] == "agent:alice" and \
        decided["payload"]["lead"] == "lead:leo"
    assert decided["payload"]["decision"] == ("approved" if decision == "approve"
                                              else "refused")
    assert "agent_concern" in [r["rule"] for r in requested["payload"]["risk"]["reasons"]]
    wrapped = events(d, "call.wrapped_up")[0]["payload"]
    if decision == "approve":
        assert agent.outcomes == ["resolved"] and agent.refusals == []
        assert wrapped["approval_id"] == requested["payload"]["approval_id"]
    else:
        assert agent.refusals == ["approval_required"] and agent.outcomes == ["unresolved"]
    async with hub.ctx.sm() as s:
        row = (await s.scalars(select(CallApproval)
                               .where(CallApproval.call_id == res.call_id))).one()
        names = dict((await s.execute(select(User.id, User.username))).all())
    assert row.state == state and names[row.requested_by] == "alice"
    assert names[row.decided_by] == "leo" and row.decision_note == "checked with the agent"
    assert d["call"]["risk_level"] == "high"


async def test_block_refuses_resolved_outright(hub: Hub) -> None:
    a, c, call_id, flow = await answered(hub, customer="cus_demo_morgan",
                                         service="password_reset", agent="carol")
    assert flow["risk"]["level"] == "medium"  # record high: 30
    assert (await a.call("risk:concern", {"call_id": call_id, "note": "reads from paper"}))["ok"]
    reply = await a.call("step:complete", {"call_id": call_id, "step_id": "someone_asked",
                                           "answer": "yes"})
    assert reply["ok"], reply
    reply = await a.call("flow:snapshot", {"call_id": call_id})
    risk = reply["flow"]["risk"]
    assert risk["level"] == "block" and risk["score"] == 120, risk
    assert (await a.call("approval:request", {"call_id": call_id}))["error"]["code"] == \
        "risk_blocked"
    await a.call("call:hangup", {"call_id": call_id})
    await a.expect("call:ended", timeout=5)
    reply = await a.call("call:wrapup", {"call_id": call_id, "outcome": "resolved",
                                         "skip_reason": "everything else was done"})
    assert reply["error"]["code"] == "risk_blocked", reply
    assert (await a.call("call:wrapup", {"call_id": call_id, "outcome": "fraud_suspected"})
            )["ok"]
    d = await detail(hub, call_id)
    assert d["call"]["risk_level"] == "block" and d["call"]["outcome"] == "fraud_suspected"
    levels = [e["payload"]["level"] for e in events(d, "risk.assessed")]
    assert levels == ["medium", "high", "block"]
    assert all(e["payload"]["rules_version"] == 2 for e in events(d, "risk.assessed"))
    for conn in (a, c):
        await conn.close()


async def test_a_high_risk_customer_is_served_by_a_senior_agent_only(hub: Hub) -> None:
    alice = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await alice.connect()
    await alice.call("agent:status", {"status": "available"})
    cust = Connection(hub.url, "/customer", hub.customer_token("cus_demo_morgan"))
    await cust.connect()
    reply = await cust.call("call:request", {"service": "card_loss"})
    assert reply["ok"] and reply["estimated_wait_s"] is None  # no senior agent signed in
    with pytest.raises(asyncio.TimeoutError):
        await alice.expect("call:offer", timeout=1.0)
    carol = Connection(hub.url, "/agent", await hub.agent_token("carol"))
    await carol.connect()
    await carol.call("agent:status", {"status": "available"})
    _, offer = await carol.expect("call:offer", timeout=5)
    assert offer["call_id"] == reply["call_id"]
    await cust.call("call:hangup", {"call_id": reply["call_id"]})
    d = await detail(hub, reply["call_id"])
    assert events(d, "call.requested")[0]["payload"]["needs"] == ["cards", "senior"]
    for c in (alice, carol, cust):
        await c.close()


async def answered(hub: Hub, customer: str = "cus_demo_barack", service: str = "card_loss",
                   agent: str = "alice", protocol: int | str = "1.1") -> tuple[Any, Any, str,
                                                                               dict[str, Any]]:
    a = Connection(hub.url, "/agent", await hub.agent_token(agent))
    await a.connect()
    await a.call("agent:status", {"status": "available"})
    c = Connection(hub.url, "/customer", hub.customer_token(customer), protocol=protocol)
    await c.connect()
    call_id = (await c.call("call:request", {"service": service}))["call_id"]
    await a.expect("call:offer", timeout=5)
    reply = await a.call("call:accept", {"call_id": call_id})
    assert reply["ok"], reply
    return a, c, call_id, reply["flow"]


async def test_bad_input_is_refused_and_nothing_is_recorded(hub: Hub) -> None:
    a, c, call_id, flow = await answered(hub)
    assert flow["current_step"] == "identity" and flow["risk"]["level"] == "low"
    # another customer with a call of their own
    a2, c2, other_id, _ = await answered(hub, customer="cus_demo_eileen", agent="carol")
    shown = await a.call("step:prompt", {"call_id": call_id, "step_id": "statement"})
    assert shown["ok"], shown
    _, prompt = await c.expect("prompt:show", timeout=5)
    assert prompt["kind"] == "statement" and "4821" in prompt["text"]
    good = {"call_id": call_id, "prompt_id": prompt["prompt_id"], "step_id": "statement",
            "sha256": prompt["sha256"], "answer": "confirm"}
    cases = [
        (c2, {**good}, "unknown_call"),  # the statement of another customer's call
        (c2, {**good, "call_id": other_id}, "prompt_not_open"),
        (c, {**good, "step_id": "block_card"}, "prompt_not_open"),  # not the open step
        (c, {**good, "step_id": "forged_step"}, "prompt_not_open"),
        (c, {**good, "prompt_id": "prm_" + "0" * 16}, "prompt_not_open"),
        (c, {**good, "sha256": "f" * 64}, "statement_mismatch"),
        (c, {**good, "answer": "maybe"}, "invalid_answer"),
        (c, {**good, "extra": 1}, "invalid_message"),
        (c, {**good, "step_id": "x" * 60}, "invalid_message"),
    ]
    for conn, payload, code in cases:
        reply = await conn.call("prompt:answer", payload)
        assert not reply["ok"] and reply["error"]["code"] == code, (payload, reply)
    agent_cases = [
        ({"call_id": call_id, "step_id": "forged_step"}, "unknown_step"),
        ({"call_id": other_id, "step_id": "block_card"}, "unknown_call"),  # not alice's call
        ({"call_id": call_id, "step_id": "reissue", "answer": "perhaps"}, "invalid_answer"),
        ({"call_id": call_id, "step_id": "identity"}, "note_required"),
        ({"call_id": call_id, "step_id": "block_card", "note": "bad\x00note"},
         "invalid_message"),
        ({"call_id": call_id, "step_id": "block_card", "note": "x" * 1001}, "invalid_message"),
    ]
    for payload, code in agent_cases:
        reply = await a.call("step:complete", payload)
        assert not reply["ok"] and reply["error"]["code"] == code, (payload, reply)
    reply = await a.call("step:prompt", {"call_id": call_id, "step_id": "block_card"})
    assert reply["error"]["code"] == "not_a_prompt"
    reply = await a.call("step:prompt", {"call_id": call_id, "step_id": "reissue"})
    assert reply["error"]["code"] == "prompt_open"
    reply = await a.call("approval:request", {"call_id": call_id})
    assert reply["error"]["code"] == "approval_not_needed"
    reply = await a.call("risk:concern", {"call_id": call_id, "note": ""})
    assert reply["error"]["code"] == "invalid_message"
    # the customer cannot use agent events, agents cannot decide approvals
    assert (await c.call("step:complete", {"call_id": call_id, "step_id": "block_card"})
            )["error"]["code"] == "unknown_event"
    assert (await a.call("approval:decide", {"approval_id": 1, "decision": "approve"})
            )["error"]["code"] == "unknown_event"
    await hub.ctx.journal.flush()
    async with hub.ctx.sm() as s:
        n_steps = await s.scalar(select(func.count()).select_from(CallStep))
        answered_rows = await s.scalar(select(func.count()).select_from(CallConfirmation)
                                       .where(CallConfirmation.answered_at.is_not(None)))
    assert n_steps == 0 and answered_rows == 0
    # the real answer still works, once
    assert (await c.call("prompt:answer", good))["ok"]
    assert (await c.call("prompt:answer", good))["error"]["code"] == "prompt_not_open"
    # wrap-up: resolved refused with required steps open
    await a.call("call:hangup", {"call_id": call_id})
    await a.expect("call:ended", timeout=5)
    reply = await a.call("call:wrapup", {"call_id": call_id, "outcome": "resolved"})
    assert reply["error"]["code"] == "steps_incomplete"
    assert "identity" in reply["error"]["details"]["steps"]
    # steps that need the customer cannot be done after the call; an action can
    reply = await a.call("step:complete", {"call_id": call_id, "step_id": "reissue",
                                           "answer": "no"})
    assert reply["error"]["code"] == "customer_not_in_call"
    assert (await a.call("step:complete", {"call_id": call_id, "step_id": "block_card"}))["ok"]
    reply = await a.call("call:wrapup", {"call_id": call_id, "outcome": "unresolved"})
    assert reply["ok"], reply
    d = await detail(hub, call_id)
    assert len(events(d, "statement.answered")) == 1
    assert events(d, "call.wrapped_up")[0]["payload"]["business_state"] == "not_completed"
    await c2.call("call:hangup", {"call_id": other_id})
    for conn in (a, c, a2, c2):
        await conn.close()


async def test_lead_namespace_and_maker_checker_refusals(hub: Hub) -> None:
    # agents and auditors cannot connect to /supervisor
    for user in ("alice", "audrey"):
        conn = Connection(hub.url, "/supervisor", await hub.agent_token(user))
        with pytest.raises(Exception):
            await conn.connect()
        await conn.sio.disconnect()
    lead = Connection(hub.url, "/supervisor", await hub.agent_token("leo"))
    await lead.connect()
    assert (await lead.call("approvals:list", {}))["approvals"] == []
    a, c, call_id, _ = await answered(hub)
    assert (await a.call("risk:concern", {"call_id": call_id, "note": "nervous"}))["ok"]
    reply = await a.call("approval:request", {"call_id": call_id, "note": "please"})
    assert reply["ok"], reply
    approval_id = reply["approval_id"]
    _, req = await lead.expect("approval:requested", timeout=5)
    assert req["approval_id"] == approval_id and req["agent"]["actor"] == "agent:alice"
    assert req["risk"]["level"] == "high" and req["customer"]["name"] == "Barack Obama"
    assert (await a.call("approval:request", {"call_id": call_id}))["error"]["code"] == \
        "approval_pending"
    for payload, code in [({"approval_id": 999, "decision": "approve"}, "unknown_approval"),
                          ({"approval_id": approval_id, "decision": "maybe"}, "invalid_message"),
                          ({"approval_id": "1", "decision": "approve"}, "invalid_message")]:
        assert (await lead.call("approval:decide", payload))["error"]["code"] == code
    reply = await lead.call("approval:decide", {"approval_id": approval_id,
                                                "decision": "approve"})
    assert reply["ok"] and reply["approval"]["decided_by"] == "lead:leo"
    _, decided = await a.expect("approval:decided", timeout=5)
    assert decided["state"] == "approved"
    assert (await lead.call("approval:decide", {"approval_id": approval_id,
                                                "decision": "refuse"})
            )["error"]["code"] == "approval_decided"
    await c.call("call:hangup", {"call_id": call_id})
    for conn in (a, c, lead):
        await conn.close()


async def test_contact_change_is_recorded_and_feeds_the_takeover_rule(hub: Hub) -> None:
    res, agent = await scripted_call(hub, customer="cus_demo_eileen", service="contact_change")
    assert agent.outcomes == ["resolved"], agent
    async with hub.ctx.sm() as s:
        changes = (await s.scalars(select(CustomerAccountChange).where(
            CustomerAccountChange.customer_id == "cus_demo_eileen"))).all()
    assert [(x.kind, x.channel, x.call_id) for x in changes] == [
        ("contact_details", "video_counter", res.call_id)]
    # a large transfer right after it: the account-takeover pattern, level high
    a, c, call_id, flow = await answered(hub, customer="cus_demo_eileen",
                                         service="large_transfer", agent="bob")
    reasons = [r["rule"] for r in flow["risk"]["reasons"]]
    assert "takeover_pattern" in reasons and flow["risk"]["level"] == "high"
    await c.call("call:hangup", {"call_id": call_id})
    for conn in (a, c):
        await conn.close()


async def test_the_subject_fills_the_statement_and_the_amount_is_a_signal(
        hub: Hub) -> None:
    token = hub.customer_token("cus_demo_barack", subject={
        "reference": "TRF-9", "amount": 80000.0, "currency": "EUR", "payee": "Acme Ltd",
        "purpose": "machine tools"})
    res, agent = await scripted_call(hub, service="large_transfer", agent="bob", token=token)
    assert agent.outcomes == ["resolved"], agent
    d = await detail(hub, res.call_id)
    p = events(d, "statement.answered")[0]["payload"]
    assert "EUR 80,000.00 to Acme Ltd for machine tools" in p["text"]
    assert p["method"] == "customer_app"
    assert d["call"]["subject"]["reference"] == "TRF-9"
    reasons = [r["rule"] for r in d["call"]["risk"]["reasons"]]
    assert reasons == ["large_amount", "very_large_amount"] and d["call"]["risk_level"] == \
        "medium"


async def test_a_customer_reconnecting_from_another_address_raises_the_risk(
        hub: Hub) -> None:
    a, c, call_id, flow = await answered(hub)
    assert flow["risk"]["reasons"] == []
    await c.close()
    # any 127.x.y.z is loopback on Linux: the same customer from another address
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    other = Connection(hub.url, "/customer", hub.customer_token(), http=http)
    await other.connect()
    _, update = await a.expect("flow:update", timeout=5)
    while "network_changed" not in [r["rule"] for r in update["risk"]["reasons"]]:
        _, update = await a.expect("flow:update", timeout=5)
    d = await detail(hub, call_id)
    changed = events(d, "network.changed")[0]["payload"]
    assert changed == {"previous": "127.0.0.1", "address": "127.0.0.2"}
    await other.call("call:hangup", {"call_id": call_id})
    await other.close()
    await http.close()
    await a.close()
