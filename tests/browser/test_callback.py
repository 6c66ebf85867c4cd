"""A callback from the customer's page: the customer leaves the queue keeping the place;
with the page still open, the hub says at once when the place comes up."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import PHONE, HubProcess, page_of

pytestmark = pytest.mark.browser


def test_the_customer_asks_for_a_callback(hub: HubProcess, browser_factory: Any) -> None:
    customer = page_of(browser_factory("callback-customer", **PHONE))
    customer.goto(f"{hub.url}/customer?customer=cus_demo_eileen")
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    customer.get_by_test_id("service-card_loss").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")
    customer.get_by_test_id("callback-button").click()
    # alone in the queue, the place is first at once: the open page is told and stays in line
    customer.wait_for_selector("body[data-callback=due]")
    assert "Your turn" in customer.inner_text("#notice")
    customer.get_by_test_id("cancel-button").click()
    customer.wait_for_selector("body[data-view=ended], [data-testid=call-status][data-state=ready]")
    assert not customer.js_errors
