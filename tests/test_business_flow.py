"""A call's flow without I/O: steps, prompts, answers, checks, approvals and the wrap-up
guard."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudcounter.business.flow import ApprovalState, Approval, CallFlow, FlowState, StepState
from cloudcounter.business.risk import CallSignals, parse_rules
from cloudcounter.business.scripts import parse_script
from cloudcounter.errors import CloudCounterError

DATA = Path(__file__).resolve().parent.parent / "cloudcounter/business/data"
RULES = parse_rules(yaml.safe_load((DATA / "risk_rules.yaml").read_text()), version=1)
FACTS = {"customer_name": "Ana Lima", "card_last4": "4821", "phone_masked": "+35***12"}


def flow(service: str = "card_loss", risk: str = "low", facts: dict | None = None) -> CallFlow:
    script = parse_script(yaml.safe_load((DATA / f"scripts/{service}.yaml").read_text()),
                          service)
    f = CallFlow("call_0123456789abcdef", "cus_1", service, script, facts or FACTS,
                 CallSignals(service=service, customer_risk=risk), RULES, agent_id=7,
                 agent_actor="agent:alice")
    f.reassess(0.0)
    return f


def code(exc: pytest.ExceptionInfo[CloudCounterError]) -> str:
    return exc.value.code


def do(f: CallFlow, step_id: str, answer: str | None = None, note: str | None = None,
       t: float = 1.0) -> None:
    f.apply_step(f.plan_agent_step(step_id, "agent:alice", t, answer, note))
    f.reassess(t)


def test_steps_render_facts_and_the_current_step_moves_on() -> None:
    f = flow()
    assert f.current_step() == "identity"
    assert "card ending 4821" in f.steps["statement"].text
    f.apply_step(f.plan_check("identity", "match", "chk_1", 1.0))  # type: ignore[arg-type]
    assert f.steps["identity"].state is StepState.DONE and f.steps["identity"].method == "auto"
    assert f.plan_check("identity", "no_match", "chk_2", 1.0) is None  # a failure is no step
    assert f.current_step() == "liveness"


def test_the_wrap_up_guard() -> None:
    f = flow()
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", None)
    assert code(exc) == "steps_incomplete" and exc.value.details["steps"][0] == "identity"
    assert f.plan_wrapup("unresolved", None).business_state == "not_completed"
    plan = f.plan_wrapup("resolved", "customer verified at the branch")
    assert plan.skipped == tuple(f.open_required()) and plan.business_state == \
        "completed_with_skips"
    for s in ("identity", "liveness"):
        do(f, s, note="ID card shown on camera")
    for s in ("confirm_card", "block_card", "read_back", "outcome"):
        do(f, s)
    do(f, "statement", "confirm", "the app did not show the statement")
    do(f, "reissue", "yes")
    assert f.state is FlowState.READY
    plan = f.plan_wrapup("resolved", None)
    assert plan.skipped == () and plan.business_state == "completed"
    assert [r.rule for r in f.assessment.reasons] == ["confirmation_spoken_only"]  # type: ignore[union-attr]


def test_prompts_answers_and_refusals() -> None:
    f = flow()
    p = f.plan_prompt("statement", "prm_1", 10.0)
    assert p.kind == "statement" and "4821" in p.text
    f.apply_prompt(p)
    assert f.steps["statement"].state is StepState.PROMPTED
    with pytest.raises(CloudCounterError) as exc:
        f.plan_prompt("reissue", "prm_2", 10.0)
    assert code(exc) == "prompt_open"
    for args, expected in [
        (("prm_x", "statement", p.sha256, "confirm"), "prompt_not_open"),
        (("prm_1", "identity", p.sha256, "confirm"), "prompt_not_open"),
        (("prm_1", "statement", "0" * 64, "confirm"), "statement_mismatch"),
        (("prm_1", "statement", p.sha256, "maybe"), "invalid_answer"),
    ]:
        with pytest.raises(CloudCounterError) as exc:
            f.plan_customer_answer(*args, actor="customer:cus_1", now=12.0)
        assert code(exc) == expected
    assert f.steps["statement"].state is StepState.PROMPTED  # nothing recorded
    change = f.plan_customer_answer("prm_1", "statement", p.sha256, "confirm", "customer:cus_1",
                                    45.0)
    assert change.details["delay_s"] == 35.0
    assert f.apply_step(change) == p  # the prompt closes
    f.reassess(45.0)
    assert "confirmation_hesitant" in f.assessment.rule_ids  # type: ignore[union-attr]
    with pytest.raises(CloudCounterError) as exc:
        f.plan_agent_step("statement", "agent:alice", 46.0, "confirm", "again")
    assert code(exc) == "step_not_open"
    with pytest.raises(CloudCounterError) as exc:
        f.plan_agent_step("forged_step", "agent:alice", 46.0, None, None)
    assert code(exc) == "unknown_step"
    with pytest.raises(CloudCounterError) as exc:
        f.plan_prompt("block_card", "prm_3", 47.0)
    assert code(exc) == "not_a_prompt"


def test_a_declined_statement_ends_the_business() -> None:
    f = flow()
    p = f.plan_prompt("statement", "prm_1", 1.0)
    f.apply_prompt(p)
    f.apply_step(f.plan_customer_answer("prm_1", "statement", p.sha256, "decline",
                                        "customer:cus_1", 2.0))
    f.reassess(2.0)
    assert f.state is FlowState.DECLINED and f.steps["statement"].state is StepState.DECLINED
    assert "confirmation_declined" in f.assessment.rule_ids  # type: ignore[union-attr]
    with pytest.raises(CloudCounterError) as exc:
        f.plan_agent_step("block_card", "agent:alice", 3.0, None, None)
    assert code(exc) == "business_declined"
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", "skip everything")
    assert code(exc) == "confirmation_declined"
    assert f.plan_wrapup("unresolved", None).business_state == "declined"


def test_steps_that_need_the_customer_wait_for_the_call() -> None:
    f = flow()
    f.live = False
    with pytest.raises(CloudCounterError) as exc:
        f.plan_agent_step("reissue", "agent:alice", 1.0, "no", None)
    assert code(exc) == "customer_not_in_call"
    do(f, "block_card")  # an action can be done during the wrap-up
    assert f.steps["block_card"].state is StepState.DONE


def test_answers_are_checked_per_kind() -> None:
    f = flow()
    for step, answer, note, expected in [
        ("identity", None, None, "note_required"),
        ("identity", "yes", "x", "invalid_answer"),
        ("statement", "confirm", None, "note_required"),
        ("statement", None, "x", "invalid_answer"),
        ("reissue", "perhaps", None, "invalid_answer"),
        ("block_card", "yes", None, "invalid_answer"),
    ]:
        with pytest.raises(CloudCounterError) as exc:
            f.plan_agent_step(step, "agent:alice", 1.0, answer, note)
        assert code(exc) == expected, (step, answer, note)


def test_missing_facts_keep_a_statement_off_the_customer_screen() -> None:
    f = flow("large_transfer", facts={"customer_name": "Ana"})
    assert set(f.steps["statement"].missing) == {"amount", "payee", "purpose"}
    with pytest.raises(CloudCounterError) as exc:
        f.plan_prompt("statement", "prm_1", 1.0)
    assert code(exc) == "facts_missing"


def test_coercion_answer_makes_the_risk_high_and_needs_an_approval() -> None:
    f = flow("large_transfer", facts={"customer_name": "Ana", "amount": "EUR 25,000.00",
                                      "payee": "Northwind", "purpose": "car",
                                      "reference": "TRF-1"})
    do(f, "anyone_present", "yes")
    assert f.assessment.level == "high"  # type: ignore[union-attr]
    for s in ("identity", "liveness"):
        do(f, s, note="checked by hand")
    for s in ("read_back", "release", "outcome"):
        do(f, s)
    do(f, "told_what_to_say", "no")
    do(f, "knows_payee", "yes")
    do(f, "statement", "confirm", "spoken")
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", None)
    assert code(exc) == "approval_required" and exc.value.details["approval"] is None
    f.plan_approval(7)
    a = Approval(1, 7, "agent:alice", 5.0, "customer is calm", f.assessment)  # type: ignore[arg-type]
    f.add_approval(a)
    with pytest.raises(CloudCounterError) as exc:
        f.plan_approval(7)
    assert code(exc) == "approval_pending"
    with pytest.raises(CloudCounterError) as exc:
        f.plan_decision(1, 7)
    assert code(exc) == "same_person"
    with pytest.raises(CloudCounterError) as exc:
        f.plan_decision(2, 9)
    assert code(exc) == "unknown_approval"
    f.apply_decision(f.plan_decision(1, 9), False, 9, "lead:leo", "call the customer back", 6.0)
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", None)
    assert exc.value.details["approval"] == "refused"
    b = Approval(2, 7, "agent:alice", 7.0, "again", f.assessment)  # type: ignore[arg-type]
    f.add_approval(b)
    f.apply_decision(f.plan_decision(2, 9), True, 9, "lead:leo", None, 8.0)
    assert f.plan_wrapup("resolved", None).approval_id == 2
    # a new reason after the approval needs a new approval
    f.apply_signals(address_changes=1)
    f.reassess(9.0)
    assert f.valid_approval() is None and b.state is ApprovalState.APPROVED
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", None)
    assert code(exc) == "approval_required"
    f.apply_signals(agent_concern=True)
    f.reassess(10.0)
    with pytest.raises(CloudCounterError) as exc:
        f.plan_wrapup("resolved", None)
    assert code(exc) == "risk_blocked"
    assert f.plan_wrapup("fraud_suspected", None).business_state == "completed"
