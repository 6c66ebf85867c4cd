"""Sampling rules and checklists (docs/supervision.md): table-driven, reproducible."""

from __future__ import annotations

import hashlib
from datetime import date
from types import SimpleNamespace as NS

import pytest

from cloudcounter.audit import sampling
from cloudcounter.audit.checklists import Checklists, default_checklists
from cloudcounter.audit.review import due_after
from cloudcounter.errors import InvalidMessage

RULES = sampling.default_rules()
QUIET = {"risk_level": "low", "failed_checks": 0, "skipped_checks": 0, "declined": False,
         "overridden_steps": 0, "outcome_changed": False}


@pytest.mark.parametrize("signals,rule", [
    ({}, None),
    ({"risk_level": "medium"}, None),
    ({"risk_level": "high"}, "risk_high_or_block"),
    ({"risk_level": "block"}, "risk_high_or_block"),
    ({"failed_checks": 1}, "check_failed"),
    ({"skipped_checks": 2}, "check_skipped"),
    ({"declined": True}, "confirmation_declined"),
    ({"overridden_steps": 1}, "step_overridden"),
    ({"outcome_changed": True}, "outcome_changed"),
    # the first rule that fires is the reason
    ({"risk_level": "high", "failed_checks": 1, "declined": True}, "risk_high_or_block"),
    ({"failed_checks": 1, "outcome_changed": True}, "check_failed"),
])
def test_rules_select_with_their_reason(signals: dict, rule: str | None) -> None:
    no_random = sampling.RuleSet(**{**RULES.__dict__, "random_share": 0.0})
    sel = sampling.select("call_0000000000000001", {**QUIET, **signals}, no_random)
    assert (sel.rule_id if sel else None) == rule
    if sel:
        assert sel.rule_version == RULES.version and sel.reason


@pytest.mark.parametrize("events,steps,call,expected", [
    ([], [], NS(risk_level=None, business_state=None), {}),
    ([NS(kind="check.result", payload={"kind": "identity", "verdict": "no_match"})], [],
     NS(risk_level="low", business_state=None), {"failed_checks": 1}),
    ([NS(kind="check.result", payload={"kind": "liveness", "verdict": "pass"})], [],
     NS(risk_level="low", business_state=None), {}),
    ([NS(kind="check.skipped", payload={}), NS(kind="check.abandoned", payload={})], [],
     NS(risk_level="low", business_state=None), {"skipped_checks": 2}),
    ([], [NS(state="declined", method="customer_app")],
     NS(risk_level="low", business_state="declined"), {"declined": True}),
    ([], [NS(state="done", method="agent_manual"), NS(state="skipped", method="skipped")],
     NS(risk_level="low", business_state=None), {"overridden_steps": 2}),
    ([NS(kind="call.wrapped_up", payload={"outcome": "resolved"}),
      NS(kind="call.wrapped_up", payload={"outcome": "unresolved"})], [],
     NS(risk_level="low", business_state=None), {"outcome_changed": True}),
    ([NS(kind="call.wrapped_up", payload={"outcome": "resolved", "late": True})], [],
     NS(risk_level="low", business_state=None), {"outcome_changed": True}),
])
def test_signals_of_a_call(events: list, steps: list, call: NS, expected: dict) -> None:
    got = sampling.call_signals(call, events, steps)
    want = {**QUIET, "risk_level": call.risk_level, **expected}
    assert got == want


def test_the_random_draw_is_reproducible_from_the_call_and_the_version() -> None:
    cid = "call_00000000000000aa"
    h = hashlib.sha256(f"{cid}|1".encode()).digest()
    assert sampling.draw(cid, 1) == int.from_bytes(h[:8], "big") / 2**64
    assert sampling.draw(cid, 1) == sampling.draw(cid, 1) != sampling.draw(cid, 2)
    ids = [f"call_{i:016x}" for i in range(2000)]
    share = sum(sampling.draw(c, 1) < 0.10 for c in ids) / len(ids)
    assert 0.07 < share < 0.13  # a fair draw
    picked = {c for c in ids if (s := sampling.select(c, QUIET, RULES)) and s.rule_id ==
              sampling.RANDOM}
    assert picked == {c for c in ids if sampling.draw(c, 1) < RULES.random_share}


@pytest.mark.parametrize("already,expected", [(0, 2), (1, 1), (2, 0), (5, 0)])
def test_at_least_n_per_agent_per_week(already: int, expected: int) -> None:
    rules = sampling.RuleSet(**{**RULES.__dict__, "random_share": 0.0})
    monday = date(2026, 11, 23)
    week = sampling.week_of(monday)
    calls = [sampling.Candidate(f"call_{i:016x}", "ana", monday, dict(QUIET))
             for i in range(6)]
    calls += [sampling.Candidate(f"call_{i + 100:016x}", "ben", monday, dict(QUIET))
              for i in range(1)]
    out = sampling.select_period(calls, rules, {("ana", week): already})
    ana = [s for s in out if s.call_id in {c.call_id for c in calls[:6]}]
    assert len(ana) == expected and all(s.rule_id == sampling.MINIMUM for s in ana)
    lowest = sorted(calls[:6], key=lambda c: sampling.draw(c.call_id, 1))[:expected]
    assert {s.call_id for s in ana} == {c.call_id for c in lowest}  # lowest draws first
    assert [s.call_id for s in out if s.call_id == calls[6].call_id]  # ben: his only call
    assert sampling.select_period(list(reversed(calls)), rules, {("ana", week): already}) \
        == out  # the same input, in any order: the same selection


def test_rule_selections_count_towards_the_minimum() -> None:
    rules = sampling.RuleSet(**{**RULES.__dict__, "random_share": 0.0})
    day = date(2026, 11, 24)
    calls = [sampling.Candidate(f"call_{i:016x}", "ana", day, dict(QUIET)) for i in range(5)]
    calls[0].signals["risk_level"] = "high"
    out = sampling.select_period(calls, rules)
    assert sorted(s.rule_id for s in out) == ["agent_minimum", "risk_high_or_block"]
    # another week is counted on its own
    calls.append(sampling.Candidate("call_00000000000000ff", "ana", date(2026, 12, 1),
                                    dict(QUIET)))
    assert len(sampling.select_period(calls, rules)) == 3


BAD_RULES = [
    ("not: [valid", "not YAML"),
    ("[]", "expected version"),
    ("version: 0\nrandom_share: 0\nmin_per_agent_per_week: 0\ndue_working_days: 1\nrules: []",
     "version"),
    ("version: 1\nrandom_share: 2\nmin_per_agent_per_week: 0\ndue_working_days: 1\nrules: []",
     "random_share"),
    ("version: 1\nrandom_share: 0\nmin_per_agent_per_week: 0\ndue_working_days: 1\n"
     "rules: [{id: x, when: [{signal: moon_phase, op: eq, value: full}], reason: r}]",
     "signal"),
    ("version: 1\nrandom_share: 0\nmin_per_agent_per_week: 0\ndue_working_days: 1\n"
     "rules: [{id: manual, when: [{signal: declined, op: eq, value: true}], reason: r}]",
     "taken"),
]


@pytest.mark.parametrize("text,why", BAD_RULES)
def test_bad_rule_sets_are_refused(text: str, why: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        sampling.RuleSet.parse(text)
    assert info.value.code == "invalid_sampling_rules" and why in info.value.message


def test_checklists_per_service() -> None:
    c = default_checklists()
    base = [i.id for i in c.for_service("card_loss")]
    assert base[:2] == ["identity_verified", "liveness_passed"] and len(base) == 6
    assert [i.id for i in c.for_service("large_transfer")][-1] == "transfer_purpose_recorded"
    with pytest.raises(InvalidMessage) as info:
        Checklists.parse("version: 1\ncategories: [a]\ncommon: [{id: x, text: t}]\n"
                         "services: {s: [{id: x, text: again}]}")
    assert info.value.code == "invalid_checklists"


@pytest.mark.parametrize("start,days,due", [
    ("2026-11-23T10:00:00+00:00", 1, "2026-11-24"),  # Monday -> Tuesday
    ("2026-11-27T10:00:00+00:00", 1, "2026-11-30"),  # Friday -> Monday
    ("2026-11-28T10:00:00+00:00", 1, "2026-11-30"),  # Saturday -> Monday
    ("2026-11-26T10:00:00+00:00", 2, "2026-11-30"),  # Thursday + 2 -> Monday
])
def test_due_dates_count_working_days(start: str, days: int, due: str) -> None:
    from datetime import datetime
    got = due_after(datetime.fromisoformat(start), days)
    assert got.date().isoformat() == due and got.hour == 23


@pytest.mark.parametrize("kind,payload,etype,data", [
    ("review.completed", {"task_id": 3, "state": "findings_raised", "findings": 1,
                          "text": "summary words"},
     "review.completed", {"task_id": 3, "state": "findings_raised", "findings": 1}),
    ("finding.recorded", {"task_id": 3, "finding_id": 7, "severity": "high",
                          "category": "coercion", "text": "what the agent did"},
     "finding.recorded", {"task_id": 3, "finding_id": 7, "severity": "high",
                          "category": "coercion"}),
    ("finding.accepted", {"task_id": 3, "finding_id": 7, "text": "ok"},
     "finding.resolved", {"task_id": 3, "finding_id": 7}),
    ("finding.responded", {"task_id": 3, "finding_id": 7, "text": "x"}, None, None),
])
def test_review_events_become_webhooks_without_their_texts(kind: str, payload: dict,
                                                           etype: str | None,
                                                           data: dict | None) -> None:
    import json

    from cloudcounter.webhooks.events import CallFacts, from_timeline
    ev = from_timeline({"call_id": "call_" + "2" * 16, "seq": 4, "actor": "auditor:audrey",
                        "kind": kind, "payload": payload}, CallFacts("card_loss", "c", "ana"))
    if etype is None:
        assert ev is None
        return
    assert ev is not None and ev.type == etype
    body = json.loads(ev.body())["data"]
    assert {k: body[k] for k in data} == data and body["by"] == "auditor:audrey"
    assert "text" not in body and payload["text"] not in ev.body()


async def test_the_supervision_job_runs_on_its_interval_and_stops_between_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    from types import SimpleNamespace

    from cloudcounter.audit import jobs
    from tests.conftest import wait_until
    runs: list[int] = []

    async def fake_run_once(ctx: object) -> dict:
        runs.append(1)
        return {}
    monkeypatch.setattr(jobs, "run_once", fake_run_once)
    stop = asyncio.Event()
    task = asyncio.create_task(jobs._loop(SimpleNamespace(), 0.01, stop))
    await wait_until(lambda: len(runs) >= 2, 10, "two runs")
    stop.set()
    await asyncio.wait_for(task, 10)
    assert task.done() and not task.cancelled()
