"""Identity and liveness checks in the browser, against the real hub and its vision worker.

One call (customer page at phone size, agent console) runs an agent-requested identity check
and a liveness check; the auditor then finds both on the call's timeline. The fake camera
shows a person who is not the enrolled customer (cus_demo_barack is enrolled from obama.jpg),
so identity should say "no match"; liveness passes or fails depending on what the clip does
in each window, so only that a verdict appears is asserted.

Screenshots (folder: conftest.SCREENSHOTS): agent.png (the console during a liveness check),
customer-liveness.png (the prompt on the phone) and audit-checks.png.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, screenshot, sign_in

pytestmark = pytest.mark.browser

MEDIA_CONNECTED = "() => document.body.dataset.mediaState === 'connected'"
IDENTITY_ROW = "[data-testid=identity-result]"
LOADED_IMG = ("(sel) => { const i = document.querySelector(sel); "
              "return !!i && i.complete && i.naturalWidth > 0; }")


def accept_next_call(agent: Any) -> None:
    if agent.get_by_test_id("agent-state").get_attribute("data-state") == "away":
        agent.get_by_test_id("status-available").click()
    agent.get_by_test_id("incoming-call").wait_for()
    agent.get_by_test_id("accept-button").click()
    agent.get_by_test_id("stage-call").wait_for()


def start_call(customer: Any, agent: Any, url: str, customer_id: str, service: str) -> str:
    customer.goto(f"{url}/customer?customer={customer_id}")
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    customer.get_by_test_id(f"service-{service}").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")
    call_id = str(customer.evaluate("document.body.dataset.callId"))
    accept_next_call(agent)
    customer.wait_for_selector("body[data-view=call]")
    for page in (agent, customer):
        page.wait_for_function(MEDIA_CONNECTED, timeout=25_000)
    return call_id


def end_call(customer: Any, agent: Any) -> None:
    agent.get_by_test_id("hangup-button").click()
    customer.wait_for_selector("body[data-view=ended]")
    agent.get_by_test_id("wrapup-form").wait_for()
    agent.get_by_test_id("wrapup-submit").click()
    agent.wait_for_selector("[data-testid=agent-state][data-state=available]")


#: installed on the customer's page before a liveness check: records what the page shows
#: the moment its first challenge (with a countdown) appears, layout included
FIRST_CHALLENGE = """() => {
  window.firstChallenge = null;
  const snap = () => {
    const prompt = document.querySelector('[data-testid=liveness-prompt]');
    const count = document.querySelector('[data-testid=liveness-countdown]');
    if (window.firstChallenge || !prompt || prompt.hidden
        || prompt.dataset.state !== 'challenge' || !/^\\d+$/.test(count.textContent)) return;
    const b = document.querySelector('[data-testid=hangup-button]');
    const hang = b.getBoundingClientRect();
    const card = prompt.querySelector('.lp-card').getBoundingClientRect();
    window.firstChallenge = {
      state: prompt.dataset.state,
      step: document.querySelector('[data-testid=liveness-step]').innerText,
      text: document.querySelector('#lp-prompt').innerText,
      countdown: count.textContent,
      icon: prompt.querySelectorAll('.action-icon svg').length,
      hangup_clear: card.y + card.height <= hang.y,
      hangup_on_top: b.contains(document.elementFromPoint(hang.x + hang.width / 2,
                                                          hang.y + hang.height / 2)),
      in_viewport: card.y >= 0 && card.y + card.height <= 812,
    };
  };
  new MutationObserver(snap).observe(document.body,
    { subtree: true, childList: true, attributes: true, characterData: true });
  snap();
}"""


def request_identity(agent: Any, timeout_s: float = 30.0) -> None:
    """Click "Verify identity" and wait for the result of that request. The service runs
    an automatic identity check when the video arrives: while it runs the hub answers
    check_running, so wait for its result and ask again. As a person would, first wait until
    the customer's video plays in the console; the hub may still answer no_video until its
    analysis has decoded a first frame (on a loaded machine that takes a moment): ask again
    then too. Video that never reaches the analysis fails at the deadline."""
    deadline = time.monotonic() + timeout_s
    button = agent.get_by_test_id("check-identity")
    agent.wait_for_function(
        "() => { const v = document.querySelector('[data-testid=remote-video]');"
        " return !!v && v.videoWidth > 0 && v.currentTime > 0.5; }",
        timeout=max(1, deadline - time.monotonic()) * 1000)
    while True:
        agent.wait_for_function(
            "() => !document.querySelector('[data-testid=check-identity]').disabled",
            timeout=max(1, deadline - time.monotonic()) * 1000)
        button.click()
        agent.wait_for_function(
            f"() => document.querySelector('{IDENTITY_ROW}').dataset.requested === 'true'"
            " || !!document.querySelector('[data-testid=check-notice] [data-code]')",
            timeout=max(1, deadline - time.monotonic()) * 1000)
        notice = agent.locator("[data-testid=check-notice] [data-code]")
        if notice.count() == 0:
            return
        code = notice.get_attribute("data-code")
        assert code in ("check_running", "no_video"), \
            f"identity check refused: {notice.inner_text()}"
        assert time.monotonic() < deadline, f"no identity result before the deadline: {code}"
        agent.wait_for_timeout(500)


@dataclass
class CheckedCall:
    customer: Any
    agent: Any
    call_id: str = ""
    buttons_before: dict[str, bool] = field(default_factory=dict)
    buttons_in_call: dict[str, bool] = field(default_factory=dict)
    buttons_after: dict[str, bool] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)
    evidence_dialog: dict[str, Any] = field(default_factory=dict)
    prompt: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    liveness: dict[str, Any] = field(default_factory=dict)
    customer_done: str = ""
    alert_call_id: str = ""


def buttons(agent: Any) -> dict[str, bool]:
    return {k: agent.get_by_test_id(f"check-{k}").is_enabled() for k in ("identity", "liveness")}


@pytest.fixture(scope="module")
def checked_call(hub: HubProcess, browser_factory: Any) -> Iterator[CheckedCall]:
    customer = page_of(browser_factory("checks-customer", **PHONE))
    agent = page_of(browser_factory("checks-agent", **DESKTOP))
    rec = CheckedCall(customer, agent)
    sign_in(agent, hub.url + "/agent", "alice", "alice-demo-1")
    agent.wait_for_selector("[data-testid=agent-state][data-state=away]")
    rec.buttons_before = buttons(agent)

    rec.call_id = start_call(customer, agent, hub.url, "cus_demo_barack", "card_loss")
    rec.buttons_in_call = buttons(agent)

    # identity, requested by the agent
    request_identity(agent)
    row = agent.locator(IDENTITY_ROW)
    agent.wait_for_function(
        f"() => document.querySelector('{IDENTITY_ROW}').dataset.verdict !== ''", timeout=20_000)
    rec.identity = {
        "verdict": row.get_attribute("data-verdict"),
        "badge": agent.get_by_test_id("identity-verdict").inner_text(),
        "distance": (agent.get_by_test_id("identity-distance").inner_text()
                     if agent.get_by_test_id("identity-distance").count() else ""),
        "text": row.inner_text(),
    }
    evidence = f"{IDENTITY_ROW} [data-testid=identity-evidence] img"
    if agent.locator(evidence).count():
        agent.wait_for_function(LOADED_IMG, arg=evidence, timeout=10_000)
        rec.identity["evidence_width"] = agent.eval_on_selector(evidence, "i => i.naturalWidth")
        agent.get_by_test_id("identity-evidence").click()  # opens larger
        dialog = agent.get_by_test_id("evidence-dialog")
        dialog.wait_for()
        agent.wait_for_function(LOADED_IMG, arg="#evidence-large", timeout=10_000)
        rec.evidence_dialog = {"open": dialog.is_visible(),
                               "width": agent.eval_on_selector("#evidence-large",
                                                               "i => i.naturalWidth")}
        agent.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        rec.evidence_dialog["closed_by_escape"] = True

    # liveness, requested by the agent: the agent sees the progress, the customer each prompt.
    # The customer's first challenge is recorded by the page itself when it appears: a quick
    # customer may finish every challenge before a test could look (workers, a fast clip)
    customer.evaluate(FIRST_CHALLENGE)
    agent.get_by_test_id("check-liveness").click()
    progress = agent.get_by_test_id("liveness-progress")
    agent.wait_for_selector("[data-testid=liveness-progress][data-action]:not([data-action=''])",
                            timeout=15_000)
    rec.progress = {"step": agent.get_by_test_id("liveness-step").inner_text(),
                    "countdown": agent.get_by_test_id("liveness-countdown").inner_text(),
                    "prompt": agent.locator("#lp-prompt").inner_text()}
    customer.wait_for_function("() => window.firstChallenge !== null", timeout=20_000)
    rec.prompt = customer.evaluate("() => window.firstChallenge")
    screenshot(customer, "customer-liveness")
    screenshot(agent, "agent")
    result = agent.get_by_test_id("liveness-result")
    agent.wait_for_selector("[data-testid=liveness-result][data-verdict]:not([data-verdict=''])",
                            timeout=40_000)
    rec.liveness = {"verdict": result.get_attribute("data-verdict"),
                    "badge": agent.get_by_test_id("liveness-verdict").inner_text(),
                    "challenges": agent.eval_on_selector_all(
                        "[data-testid=liveness-challenges] li",
                        "ls => ls.map(l => [l.dataset.action, l.dataset.passed])"),
                    "pad": agent.get_by_test_id("liveness-pad").get_attribute("data-verdict"),
                    "progress_hidden": not progress.is_visible()}
    customer.wait_for_selector("[data-testid=liveness-prompt][data-state=done]", timeout=5_000)
    rec.customer_done = customer.locator("#lp-prompt").inner_text()

    end_call(customer, agent)
    rec.buttons_after = buttons(agent)
    yield rec


def test_check_buttons_only_during_a_call(checked_call: CheckedCall) -> None:
    assert checked_call.buttons_before == {"identity": False, "liveness": False}
    assert checked_call.buttons_in_call == {"identity": True, "liveness": True}
    assert checked_call.buttons_after == {"identity": False, "liveness": False}


def test_agent_verifies_identity_and_sees_the_evidence(checked_call: CheckedCall) -> None:
    ident = checked_call.identity
    assert ident["verdict"] in {"match", "no_match", "no_face", "multiple_faces"}, ident
    # the clip is not the enrolled customer
    assert ident["verdict"] == "no_match", ident
    assert ident["badge"] == "No match"
    assert re.fullmatch(r"Distance \d\.\d\d", ident["distance"]), ident
    assert "threshold" in ident["text"]
    assert ident.get("evidence_width", 0) > 0, "the evidence frame did not load"
    assert checked_call.evidence_dialog == {"open": True, "width": ident["evidence_width"],
                                            "closed_by_escape": True}


def test_customer_sees_the_liveness_prompt(checked_call: CheckedCall) -> None:
    p = checked_call.prompt
    assert p["state"] == "challenge" and re.fullmatch(r"step \d of \d", p["step"].lower()), p
    assert p["text"] in {"Blink your eyes", "Turn your head to your left",
                         "Turn your head to your right", "Open your mouth"}, p
    assert 0 <= int(p["countdown"]) <= 10 and p["icon"] == 1, p
    assert p["in_viewport"] and p["hangup_clear"] and p["hangup_on_top"], p
    assert checked_call.customer_done == "Thank you, that's all"


def test_agent_sees_liveness_progress_then_a_result(checked_call: CheckedCall) -> None:
    pr = checked_call.progress
    assert re.fullmatch(r"step \d of \d", pr["step"].lower()), pr
    assert re.fullmatch(r"\d+ s", pr["countdown"]) and pr["prompt"], pr
    lv = checked_call.liveness
    assert lv["verdict"] in {"pass", "fail"}, lv
    assert lv["badge"] in {"Passed", "Failed"}
    assert lv["pad"] in {"bona_fide", "inconclusive"}, lv  # a real face, not a screen
    assert lv["challenges"] and all(a in {"blink", "turn_left", "turn_right", "open_mouth"}
                                    for a, _ in lv["challenges"]), lv
    assert lv["progress_hidden"]
    for page in (checked_call.customer, checked_call.agent):
        assert page.js_errors == []


def test_identity_without_reference_photo_is_explained(hub: HubProcess,
                                                       checked_call: CheckedCall) -> None:
    customer, agent = checked_call.customer, checked_call.agent
    start_call(customer, agent, hub.url, "cus_demo_grace", "card_loss")
    hint = agent.locator("#checks-hint").inner_text()
    assert "No reference photo" in hint
    agent.get_by_test_id("check-identity").click()
    notice = agent.locator("[data-testid=check-notice] [data-code=no_reference_photo]")
    notice.wait_for(timeout=10_000)
    assert "No reference photo on file for this customer" in notice.inner_text()
    end_call(customer, agent)


def test_someone_else_in_the_picture_raises_an_alert(hub: HubProcess, browser_factory: Any,
                                                     two_faces_camera: Any,
                                                     checked_call: CheckedCall) -> None:
    """A customer camera showing two people: the console's alert strip says so, calmly
    (a status region, no dialog), and the alert goes on the call's timeline."""
    agent = checked_call.agent
    customer = page_of(browser_factory("checks-two-faces", camera=two_faces_camera, **PHONE))
    checked_call.alert_call_id = start_call(customer, agent, hub.url, "cus_demo_joe",
                                            "card_loss")
    strip = agent.get_by_test_id("analysis-alerts")
    agent.wait_for_selector("[data-testid=analysis-alerts][data-signal=multiple_faces]",
                            timeout=25_000)
    assert "Several faces in view" in strip.inner_text()
    assert agent.locator("#alert-current").get_attribute("aria-live") == "assertive"
    assert " · since 0:" in agent.locator("#alert-title").inner_text()
    assert agent.evaluate("document.body.dataset.faceSignal") == "multiple_faces"
    strip.scroll_into_view_if_needed()
    screenshot(agent, "agent-alert")
    end_call(customer, agent)
    # the next call starts with a clean strip
    assert agent.get_by_test_id("analysis-alerts").get_attribute("data-signal") in {"none"}
    assert customer.js_errors == [] and agent.js_errors == []


def test_auditor_sees_the_checks_on_the_timeline(hub: HubProcess, browser_factory: Any,
                                                 checked_call: CheckedCall) -> None:
    page = page_of(browser_factory("checks-auditor", **DESKTOP))
    sign_in(page, hub.url + "/audit", "audrey", "audrey-demo-1")
    page.goto(f"{hub.url}/audit#call={checked_call.call_id}")
    page.get_by_test_id("timeline").locator("[data-testid=timeline-event]").first.wait_for()
    kinds = page.eval_on_selector_all("[data-testid=timeline-event]",
                                      "bs => bs.map(b => b.dataset.kind)")
    assert "check.requested" in kinds and "liveness.challenge" in kinds, kinds
    assert kinds.count("check.result") >= 2, kinds
    results = page.locator("[data-testid=timeline-event][data-kind='check.result']")
    texts = [results.nth(i).inner_text() for i in range(results.count())]
    assert any("Identity check" in t and "No match" in t and "threshold" in t for t in texts), texts
    assert any("Liveness check" in t and ("Passed" in t or "Failed" in t) for t in texts), texts
    thumbs = page.locator("[data-testid=timeline-evidence] img")
    assert thumbs.count() >= 1
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=timeline-evidence] img')]"
        ".every(i => i.complete && i.naturalWidth > 0)", timeout=10_000)
    page.locator("[data-testid=timeline-evidence]").first.click()
    page.get_by_test_id("evidence-dialog").wait_for()
    page.wait_for_function(LOADED_IMG, arg="#evidence-large", timeout=10_000)
    page.keyboard.press("Escape")
    page.locator("[data-testid=timeline-event][data-kind='check.result']").last.scroll_into_view_if_needed()
    screenshot(page, "audit-checks")
    assert page.js_errors == []
