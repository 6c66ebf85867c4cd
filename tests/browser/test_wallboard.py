"""The supervisor wallboard in the browser: a team lead signs in at /lead and sees a
customer's call wait in the queue and leave it, live (pushed by the hub).

Screenshot (folder: conftest.SCREENSHOTS): lead-wallboard.png.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, screenshot, sign_in

pytestmark = pytest.mark.browser

WAITING = "(n) => Number(document.body.dataset.wallboardWaiting) === n"


def test_the_wallboard_shows_a_waiting_call_live(hub: HubProcess, browser_factory: Any) -> None:
    lead = page_of(browser_factory("wallboard-lead", **DESKTOP))
    sign_in(lead, hub.url + "/lead", "leo", "leo-lead-demo-1")
    lead.wait_for_function(WAITING, arg=0)
    customer = page_of(browser_factory("wallboard-customer", **PHONE))
    customer.goto(f"{hub.url}/customer?customer=cus_demo_joe")
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    customer.get_by_test_id("service-card_loss").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")

    lead.wait_for_function(WAITING, arg=1)  # pushed: the lead did nothing
    tile = lead.locator("[data-testid=wb-service][data-service=card_loss]")
    assert tile.get_by_test_id("wb-waiting").locator("b").inner_text() == "1"
    assert "/" in tile.get_by_test_id("wb-staffing").inner_text()
    assert tile.locator("svg.day-chart rect.bar").count() >= 1
    screenshot(lead, "lead-wallboard")

    customer.get_by_test_id("cancel-button").click()
    lead.wait_for_function(WAITING, arg=0)
    assert not lead.js_errors and not customer.js_errors
