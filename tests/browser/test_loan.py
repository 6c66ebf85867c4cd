"""The car-loan interview in the browser, from the phone page to the result written back
to the credit system, and a booking made on the phone page.

This module runs its own hub beside the reference credit service (both subprocesses, as
``make run`` starts them). Screenshots: agent-credit.png (the credit panel with a
contradiction), customer-booking.png (the booking on the phone page).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import (
    CLI, DESKTOP, FACES_DIR, PHONE, ROOT, SCREENSHOTS, HubProcess, free_port, page_of, screenshot,
    sign_in,
)
from .test_checks import accept_next_call

pytestmark = pytest.mark.browser


def wait_http(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"{what} exited"
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"{what} did not start"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def loan_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HubProcess, str]]:
    tmp = tmp_path_factory.mktemp("loan-hub")
    credit_port, port = free_port(), free_port()
    credit_url = f"http://127.0.0.1:{credit_port}"
    env = {**os.environ, "CLOUDCOUNTER_DEMO": "1",
           "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/hub.db",
           "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp / "rec"),
           "CLOUDCOUNTER_MEDIA_HOST_ADDRESSES": "127.0.0.1", "CLOUDCOUNTER_ICE_SERVERS": "[]",
           "CLOUDCOUNTER_VISION_WORKERS": "0", "CLOUDCOUNTER_WRAP_UP_S": "120",
           "CLOUDCOUNTER_FACES_DIR": str(FACES_DIR), "CLOUDCOUNTER_LOG_LEVEL": "WARNING",
           "CLOUDCOUNTER_CREDIT_URL": credit_url,
           "CLOUDCOUNTER_CREDIT_DELIVERY_RETRY_BASE_S": "0.5"}
    for cmd in (["db", "upgrade"], ["demo", "seed"]):
        done = subprocess.run([str(CLI), *cmd], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    log = tmp / "hub.log"
    procs = []
    with log.open("wb") as out:
        procs.append(subprocess.Popen(
            [str(CLI), "credit-service", "serve", "--port", str(credit_port),
             "--db", str(tmp / "credit.db")], cwd=ROOT, env=env, stdout=out,
            stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen([str(CLI), "serve", "--port", str(port)], cwd=ROOT,
                                      env=env, stdout=out, stderr=subprocess.STDOUT))
    try:
        wait_http(credit_url + "/healthz", procs[0], "the credit service")
        wait_http(f"http://127.0.0.1:{port}/healthz", procs[1], "the hub")
        yield HubProcess(f"http://127.0.0.1:{port}", env, log), credit_url
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def results(credit_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(
            credit_url + "/v1/applications/APP-2026-1138/interview-results", timeout=5) as r:
        return list(json.loads(r.read())["results"])


def test_booking_and_interview_from_the_phone_to_the_credit_system(
        loan_hub: tuple[HubProcess, str], browser_factory: Any) -> None:
    hub, credit_url = loan_hub
    customer = page_of(browser_factory("loan-customer", **PHONE))
    agent = page_of(browser_factory("loan-agent", **DESKTOP))
    sign_in(agent, hub.url + "/agent", "bob", "bob-demo-123")

    # a booking on the phone page
    customer.goto(f"{hub.url}/customer?customer=cus_demo_eileen")
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    booking = customer.get_by_test_id("booking")
    booking.wait_for()
    slot = customer.get_by_test_id("booking-slot")
    first = slot.locator("option").first.get_attribute("value")
    assert first and first.endswith("Z")
    customer.get_by_test_id("booking-book").click()
    current = customer.get_by_test_id("booking-current")
    current.wait_for()
    assert current.get_attribute("data-id", timeout=5000).startswith("apt_")
    booking.scroll_into_view_if_needed()
    screenshot(customer, "customer-booking")

    # the interview
    customer.get_by_test_id("service-car_loan").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_selector("[data-testid=call-status][data-state=queued]")
    accept_next_call(agent)
    agent.get_by_test_id("credit-application").wait_for()
    confirm = agent.get_by_test_id("credit-confirm").inner_text()
    assert "Loan amount" in confirm and "32,000" in confirm and "60 months" in confirm
    answers = {"purpose": "Driving to work", "employer": "Acme Corp",
               "income": "5,200 EUR", "driver": "Me", "dealer": "None",
               "others": "Nobody else"}
    for q, a in answers.items():
        field = agent.get_by_test_id(f"answer-{q}")
        field.fill(a)
        field.press("Tab")
        agent.wait_for_selector(f"li[data-question={q}][data-saved=true]")
    agent.get_by_test_id("contradicts-employer").wait_for()
    assert agent.get_by_test_id("credit-contradictions").text_content() == "1 contradiction"
    assert agent.locator("[data-testid=contradicts-income]").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    agent.get_by_test_id("credit-panel").screenshot(path=str(SCREENSHOTS / "agent-credit.png"))

    agent.get_by_test_id("hangup-button").click()
    agent.get_by_test_id("wrapup-form").wait_for()
    agent.get_by_test_id("wrapup-outcome").select_option("unresolved")
    agent.get_by_test_id("wrapup-submit").click()  # no outcome yet: refused
    agent.wait_for_selector("#wrapup-notice [data-code=credit_outcome_required]")
    agent.get_by_test_id("credit-outcome").select_option("refer")
    agent.get_by_test_id("credit-reasons").fill("employer differs from the application")
    agent.get_by_test_id("credit-outcome-submit").click()
    agent.wait_for_selector("[data-testid=credit-delivery][data-state=delivered]", timeout=30_000)
    agent.get_by_test_id("wrapup-submit").click()
    agent.wait_for_selector("[data-testid=agent-state][data-state=available]")

    rows = results(credit_url)
    assert len(rows) == 1
    assert rows[0]["outcome"] == "refer" and rows[0]["interviewer"] == "agent:bob"
    assert rows[0]["reasons"] == ["employer differs from the application"]
    assert [a["question"] for a in rows[0]["answers"] if a.get("contradicts")] == ["employer"]
    assert not agent.js_errors and not customer.js_errors, (agent.js_errors, customer.js_errors)
