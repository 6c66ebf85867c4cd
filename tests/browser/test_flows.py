"""Service flows in the browser: the agent works through the card-loss script beside the
video, the customer confirms the statement on the phone page, and the auditor's replay
jumps to the confirmation in both recordings.

The customer is Grace Hopper (no reference photo: the identity and liveness steps are
verified another way, with a note); the fake camera shows a real face.

Screenshots (folder: conftest.SCREENSHOTS): agent-script.png (the console with the
checklist and the risk panel), customer-statement.png (the statement on the phone) and
audit-confirmation.png (the replay at the confirmation).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, screenshot, sign_in
from .test_checks import accept_next_call

pytestmark = pytest.mark.browser

MEDIA_CONNECTED = "() => document.body.dataset.mediaState === 'connected'"
STEP_STATE = ("([id, state]) => "
              "document.querySelector(`[data-testid=step-${id}]`)?.dataset.state === state")


@dataclass
class ScriptedCall:
    customer: Any
    agent: Any
    auditor: Any = None
    call_id: str = ""
    steps_before: list[dict[str, str]] = field(default_factory=list)
    current_first: str = ""
    prompt_text: str = ""
    statement_after: str = ""
    banner: str = ""
    risk_level: str = ""
    wrapup_outcome: str = ""
    jump: dict[str, float] = field(default_factory=dict)
    answer_badge: str = ""


def done(agent: Any, step: str) -> None:
    agent.wait_for_function(STEP_STATE, arg=[step, "done"])


@pytest.fixture(scope="module")
def scripted_call(hub: HubProcess, browser_factory: Any) -> Iterator[ScriptedCall]:
    customer = page_of(browser_factory("flow-customer", **PHONE))
    agent = page_of(browser_factory("flow-agent", **DESKTOP))
    rec = ScriptedCall(customer, agent)
    sign_in(agent, hub.url + "/agent", "alice", "alice-demo-1")
    agent.wait_for_selector("[data-testid=agent-state][data-state=away]")

    customer.goto(f"{hub.url}/customer?customer=cus_demo_grace")
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    customer.get_by_test_id("service-card_loss").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")
    rec.call_id = str(customer.evaluate("document.body.dataset.callId"))
    accept_next_call(agent)
    customer.wait_for_selector("body[data-view=call]")
    for page in (agent, customer):
        page.wait_for_function(MEDIA_CONNECTED, timeout=25_000)

    agent.wait_for_selector("[data-testid=checklist] li")
    rec.steps_before = [{"id": str(li.get_attribute("data-testid")),
                         "state": str(li.get_attribute("data-state"))}
                        for li in agent.locator("[data-testid=checklist] li").all()]
    rec.current_first = str(agent.locator("[data-testid=checklist] li[data-current=true]")
                            .get_attribute("data-testid"))
    for step in ("identity", "liveness"):
        agent.get_by_test_id(f"step-note-{step}").fill("ID card held up to the camera")
        agent.get_by_test_id(f"step-manual-{step}").click()
        done(agent, step)
    agent.get_by_test_id("step-done-confirm_card").click()
    done(agent, "confirm_card")

    # the statement on the customer's phone
    agent.get_by_test_id("step-show-statement").click()
    agent.wait_for_function(STEP_STATE, arg=["statement", "prompted"])
    customer.get_by_test_id("prompt").wait_for()
    rec.prompt_text = customer.get_by_test_id("prompt-text").inner_text()
    customer.wait_for_timeout(1500)  # the customer reads it aloud (inside the recordings)
    screenshot(customer, "customer-statement")
    agent.evaluate("window.scrollTo(0, 0)")
    screenshot(agent, "agent-script")
    customer.get_by_test_id("prompt-answer-confirm").click()
    done(agent, "statement")
    customer.wait_for_selector("[data-testid=prompt]", state="hidden")
    rec.statement_after = str(agent.get_by_test_id("step-statement").inner_text())

    agent.get_by_test_id("step-done-block_card").click()
    done(agent, "block_card")
    agent.get_by_test_id("step-answer-reissue-yes").click()
    done(agent, "reissue")
    for step in ("read_back", "outcome"):
        agent.get_by_test_id(f"step-done-{step}").click()
        done(agent, step)
    agent.wait_for_selector("[data-testid=flow-banner][data-kind=ready]")
    rec.banner = agent.get_by_test_id("flow-banner").inner_text()
    rec.risk_level = str(agent.get_by_test_id("risk-level").get_attribute("data-level"))

    agent.get_by_test_id("hangup-button").click()
    customer.wait_for_selector("body[data-view=ended]")
    agent.get_by_test_id("wrapup-form").wait_for()
    rec.wrapup_outcome = agent.get_by_test_id("wrapup-outcome").input_value()
    agent.get_by_test_id("wrapup-submit").click()
    agent.wait_for_selector("[data-testid=agent-state][data-state=available]")

    # the auditor jumps to the confirmation
    auditor = page_of(browser_factory("flow-auditor", **DESKTOP))
    rec.auditor = auditor
    sign_in(auditor, f"{hub.url}/audit#call={rec.call_id}", "audrey", "audrey-demo-1")
    event = auditor.locator("[data-testid=timeline-event][data-kind='statement.answered']")
    event.wait_for()
    auditor.wait_for_function("() => document.querySelector('[data-testid=player-customer]')"
                              ".readyState >= 1", timeout=20_000)
    offset = float(event.get_attribute("data-offset") or "nan")
    event.click()
    auditor.wait_for_function(
        "(t) => ['customer', 'agent'].every((w) => Math.abs(document.querySelector("
        "`[data-testid=player-${w}]`).currentTime - t) < 0.5)", arg=offset)
    rec.jump = {"offset": offset, **{w: float(auditor.evaluate(
        f"document.querySelector('[data-testid=player-{w}]').currentTime"))
        for w in ("customer", "agent")}}
    rec.answer_badge = event.locator("[data-testid=timeline-answer]").inner_text()
    screenshot(auditor, "audit-confirmation")
    yield rec


def test_the_agent_works_through_the_script(scripted_call: ScriptedCall) -> None:
    rec = scripted_call
    assert [s["id"] for s in rec.steps_before] == [
        f"step-{x}" for x in ("identity", "liveness", "confirm_card", "statement",
                              "block_card", "reissue", "read_back", "outcome")]
    assert {s["state"] for s in rec.steps_before} == {"open"}
    assert rec.current_first == "step-identity"
    assert "All required steps are done" in rec.banner
    assert rec.risk_level == "low"  # Grace's record says medium: +10
    assert rec.wrapup_outcome == "resolved"  # every required step done: resolved offered


def test_the_customer_confirms_the_statement_on_the_phone(scripted_call: ScriptedCall) -> None:
    rec = scripted_call
    assert rec.prompt_text == ("I, Grace Hopper, report my card ending 1906 lost and ask the "
                               "bank to block it now.")
    assert "by the customer on screen" in rec.statement_after


def test_the_audit_replay_jumps_to_the_confirmation(scripted_call: ScriptedCall) -> None:
    rec = scripted_call
    assert rec.jump["offset"] > 1.0, rec.jump  # well inside the call, not its start
    assert abs(rec.jump["customer"] - rec.jump["offset"]) < 0.5, rec.jump
    assert abs(rec.jump["agent"] - rec.jump["offset"]) < 0.5, rec.jump
    assert rec.answer_badge == "Confirm"
    for page in (rec.customer, rec.agent, rec.auditor):
        assert page.js_errors == []
