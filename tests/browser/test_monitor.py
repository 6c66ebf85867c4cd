"""Silent monitoring in the browser: a team lead watches a live call from the wallboard and
sees both participants' video (the very frames forwarded between them).

Screenshot (folder: conftest.SCREENSHOTS): lead-monitor.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, screenshot, sign_in
from .test_checks import end_call, start_call

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
