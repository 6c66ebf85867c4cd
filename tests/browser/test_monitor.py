"""Silent monitoring in the browser: a team lead watches a live call from the wallboard and
sees both participants' video (the very frames forwarded between them).

Screenshot (folder: conftest.SCREENSHOTS): lead-monitor.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, screenshot, sign_in
from .test_checks import MEDIA_CONNECTED, end_call, start_call

pytestmark = pytest.mark.browser

PLAYING = ("(id) => { const v = document.querySelector(`[data-testid=${id}]`);"
           " return v && v.videoWidth > 0 && v.currentTime > 0.5; }")


def test_a_lead_watches_a_live_call(hub: HubProcess, browser_factory: Any) -> None:
    customer = page_of(browser_factory("monitor-customer", **PHONE))
    agent = page_of(browser_factory("monitor-agent", **DESKTOP))
    sign_in(agent, hub.url + "/agent", "alice", "alice-demo-1")
    agent.wait_for_selector("[data-testid=agent-state]")
    call_id = start_call(customer, agent, hub.url, "cus_demo_grace", "card_loss")

    lead = page_of(browser_factory("monitor-lead", **DESKTOP))
    sign_in(lead, hub.url + "/lead", "leo", "leo-lead-demo-1")
    lead.get_by_test_id(f"watch-{call_id}").click()
    for who in ("monitor-customer", "monitor-agent"):
        lead.wait_for_function(PLAYING, arg=who, timeout=25_000)
    assert lead.evaluate("document.body.dataset.monitoring") == call_id
    screenshot(lead, "lead-monitor")
    lead.get_by_test_id("monitor-stop").click()
    lead.wait_for_selector("[data-testid=monitor]", state="hidden")
    end_call(customer, agent)
    assert not lead.js_errors and not customer.js_errors and not agent.js_errors


def test_a_lead_takes_over_a_call_whose_agent_dropped(hub: HubProcess,
                                                      browser_factory: Any) -> None:
    """The agent's console dies mid-call: the wallboard lists the call under "Calls whose
    agent dropped", the lead's "Take over" opens the agent console on it, and the lead and
    the customer see each other again; the lead ends and wraps it up.

    Screenshot: lead-takeover.png."""
    customer = page_of(browser_factory("takeover-customer", **PHONE))
    agent = page_of(browser_factory("takeover-agent", **DESKTOP))
    sign_in(agent, hub.url + "/agent", "alice", "alice-demo-1")
    agent.wait_for_selector("[data-testid=agent-state]")
    call_id = start_call(customer, agent, hub.url, "cus_demo_grace", "card_loss")

    lead_ctx = browser_factory("takeover-lead", **DESKTOP)
    lead = page_of(lead_ctx)
    sign_in(lead, hub.url + "/lead", "leo", "leo-lead-demo-1")
    agent.goto("about:blank")  # the agent's console is gone
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")
    row = lead.locator(f"[data-testid=wb-dropped-call][data-call-id='{call_id}']")
    row.wait_for(timeout=20_000)
    assert "alice" in row.inner_text()
    with lead_ctx.expect_page() as opened:
        row.get_by_test_id("take-over-button").click()
    console = opened.value
    console.set_default_timeout(15_000)
    errors: list[str] = []
    console.on("pageerror", lambda exc: errors.append(str(exc)))
    console.wait_for_function(f"() => document.body.dataset.takenOver === '{call_id}'",
                              timeout=20_000)
    assert console.evaluate("document.body.dataset.role") == "lead"
    customer.wait_for_selector("body[data-view=call]")
    for page in (console, customer):
        page.wait_for_function(MEDIA_CONNECTED, timeout=25_000)
    lead.locator(f"[data-testid=wb-dropped-call][data-call-id='{call_id}']").wait_for(
        state="detached", timeout=20_000)
    screenshot(console, "lead-takeover")
    console.get_by_test_id("hangup-button").click()
    customer.wait_for_selector("body[data-view=ended]")
    console.get_by_test_id("wrapup-form").wait_for()
    console.get_by_test_id("wrapup-submit").click()
    console.wait_for_selector("[data-testid=agent-state][data-state=away]")
    assert not errors and not lead.js_errors and not customer.js_errors
