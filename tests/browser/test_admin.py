"""The admin console in Chromium: staff accounts (bad values refused with the field marked
and nothing added; create with a generated password, edit skills, reset, sign out,
disable), a service's target answer time, a customer and their reference photo (refused
with two faces, enrolled with one), a webhook subscription with a test delivery to a real
local receiver, and the audit log of all of it.

Only what this test creates is changed (the hub is shared with the other browser tests).
Screenshots: admin-staff.png, admin-webhooks.png, admin-audit.png.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from .conftest import DESKTOP, FACES_DIR, HubProcess, missing, page_of, screenshot, sign_in

pytestmark = pytest.mark.browser


class Hooks(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length", 0))
        Hooks.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    server.shutdown()
    server.server_close()


def notice(page: Any) -> str:
    return str(page.get_by_test_id("notice").first.inner_text())


def test_the_admin_console(hub: HubProcess, browser_factory: Any, receiver: str) -> None:
    photos = FACES_DIR / "photos"
    if not (photos / "obama.jpg").is_file():
        missing(f"{photos} not found (set CLOUDCOUNTER_FACES_DIR)")
    page = page_of(browser_factory("admin", **DESKTOP))
    sign_in(page, hub.url + "/admin", "admin", "admin-demo-1")
    page.wait_for_selector("body[data-loaded=users]")
    assert page.locator("[data-testid=user-row][data-username=alice]").count() == 1
    rows = page.locator("[data-testid=user-row]").count()

    # a bad username and a weak password: refused, the field marked, nobody added
    page.get_by_test_id("add-user").click()
    page.get_by_test_id("field-username").fill("bad name")
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=problem-username]")
    assert "Not saved" in page.get_by_test_id("editor").inner_text()
    page.get_by_test_id("field-username").fill("dana")
    page.get_by_test_id("field-password").fill("short")
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=problem-password]")
    assert "at least 12" in page.get_by_test_id("problem-password").inner_text()
    assert page.get_by_test_id("field-password").get_attribute("aria-invalid") == "true"
    # generated password, with skills
    page.get_by_test_id("field-password").fill("")
    page.get_by_test_id("field-display_name").fill("Dana Agent")
    page.get_by_test_id("check-skills-cards").check()
    page.get_by_test_id("check-skills-senior").check()
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=generated-password]")
    assert len(page.get_by_test_id("generated-password").inner_text()) == 20
    page.wait_for_selector("[data-testid=user-row][data-username=dana]")
    assert page.locator("[data-testid=user-row]").count() == rows + 1

    # edit skills; reset the password; sign out; disable
    page.get_by_test_id("edit-dana").click()
    page.get_by_test_id("check-skills-senior").uncheck()
    page.get_by_test_id("check-skills-payments").check()
    page.get_by_test_id("editor-save").click()
    dana = page.locator("[data-testid=user-row][data-username=dana]")
    page.wait_for_function("() => [...document.querySelectorAll('[data-username=dana] .pill')]"
                           ".map(p => p.textContent).join(',').includes('payments')")
    assert "senior" not in dana.inner_text()
    # a preferred skill must be one of the skills: refused, then set
    page.get_by_test_id("edit-dana").click()
    page.get_by_test_id("check-preferred_skills-loans").check()
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=problem-preferred_skills]")
    page.get_by_test_id("check-preferred_skills-loans").uncheck()
    page.get_by_test_id("check-preferred_skills-payments").check()
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-username=dana] [data-testid=user-skills] .pill.ok")
    assert dana.locator("[data-testid=user-skills] .pill.ok").inner_text() == "★ payments"
    page.get_by_test_id("password-dana").click()
    page.wait_for_selector("[data-testid=generated-password]")
    page.get_by_test_id("end-dana").click()
    page.wait_for_function("() => document.querySelector('[data-testid=notice]')"
                           "?.textContent.includes('signed out')")
    page.get_by_test_id("disable-dana").click()
    page.wait_for_selector("[data-testid=enable-dana]")
    assert "Disabled" in dana.get_by_test_id("user-status").inner_text()
    screenshot(page, "admin-staff")

    # a service's target answer time: a bad value refused, then set
    page.get_by_test_id("tab-services").click()
    page.wait_for_selector("body[data-loaded=services]")
    page.get_by_test_id("edit-service-contact_change").click()
    page.get_by_test_id("field-target_answer_s").fill("0")
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=problem-target_answer_s]")
    page.get_by_test_id("field-target_answer_s").fill("45")
    page.get_by_test_id("editor-save").click()
    page.wait_for_function("() => document.querySelector('[data-code=contact_change] "
                           "[data-testid=service-target]')?.textContent === '45 s'")

    # routing rules: the service's own skill as a fallback is refused, then a valid rule set
    page.get_by_test_id("edit-service-card_loss").click()
    page.get_by_test_id("check-routing-fallback_skills-cards").check()
    page.get_by_test_id("editor-save").click()
    page.get_by_test_id("problem-routing.fallback_skills").wait_for()
    assert "own skill" in page.get_by_test_id("problem-routing.fallback_skills").inner_text()
    page.get_by_test_id("check-routing-fallback_skills-cards").uncheck()
    page.get_by_test_id("check-routing-fallback_skills-security").check()
    page.get_by_test_id("field-routing-widen_after_s").fill("30")
    page.get_by_test_id("field-routing-max_consecutive_offers").fill("3")
    screenshot(page, "admin-service-routing")
    page.get_by_test_id("editor-save").click()
    page.wait_for_function("() => document.querySelector('[data-code=card_loss] "
                           "[data-testid=service-routing]')?.textContent.includes('3 in a row')")
    routing = page.locator("[data-code=card_loss] [data-testid=service-routing]").inner_text()
    assert "security after 30 s" in routing, routing

    # a customer, and their reference photo: two faces refused, one face enrolled
    page.get_by_test_id("tab-customers").click()
    page.wait_for_selector("body[data-loaded=customers]")
    page.get_by_test_id("add-customer").click()
    page.get_by_test_id("field-id").fill("BANK-7731")
    page.get_by_test_id("field-name").fill("Barack Example")
    page.get_by_test_id("field-card_last4").fill("12x4")
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=problem-card_last4]")
    page.get_by_test_id("field-card_last4").fill("1234")
    page.get_by_test_id("editor-save").click()
    row = page.locator("[data-testid=customer-row][data-customer=BANK-7731]")
    row.wait_for()
    page.get_by_test_id("photo-input-BANK-7731").set_input_files(str(photos / "two_people.jpg"))
    page.wait_for_function("() => document.querySelector('[data-testid=notice]')"
                           "?.dataset.code === 'multiple_faces'", timeout=60_000)
    assert "more than one face" in notice(page)
    assert "None" in row.get_by_test_id("customer-photo").inner_text()
    page.get_by_test_id("photo-input-BANK-7731").set_input_files(str(photos / "obama.jpg"))
    page.wait_for_function("() => document.querySelector('[data-customer=BANK-7731] "
                           "[data-testid=customer-photo]')?.textContent === 'On file'",
                           timeout=60_000)

    # a webhook subscription: the secret shown once; a test event reaches the receiver
    page.get_by_test_id("tab-webhooks").click()
    page.wait_for_selector("body[data-loaded=webhooks]")
    page.get_by_test_id("add-webhook").click()
    page.get_by_test_id("field-name").fill("CRM")
    page.get_by_test_id("field-url").fill("ftp://crm.bank.example/hooks")
    page.get_by_test_id("check-event_types-call.ended").check()
    page.get_by_test_id("editor-save").click()
    page.wait_for_function("() => document.querySelector('.form-notice [data-testid=notice]')"
                           "?.dataset.code === 'invalid_url'")
    page.get_by_test_id("field-url").fill(receiver)
    page.get_by_test_id("editor-save").click()
    page.wait_for_selector("[data-testid=webhook-secret]")
    assert page.get_by_test_id("webhook-secret").inner_text().startswith("whsec_")
    hook = page.locator("[data-testid=webhook-row]").last
    hook_id = hook.get_attribute("data-webhook")
    page.get_by_test_id(f"test-webhook-{hook_id}").click()
    page.wait_for_selector("[data-testid=delivery-row][data-state=delivered]", timeout=20_000)
    assert any(e["type"] == "webhook.test" for e in Hooks.received)
    screenshot(page, "admin-webhooks")

    # the audit log has every change, by the administrator
    page.get_by_test_id("tab-audit").click()
    page.wait_for_selector("body[data-loaded=audit]")
    kinds = page.locator("[data-testid=audit-row]").evaluate_all(
        "rows => rows.map(r => r.dataset.kind)")
    for kind in ("admin.user_created", "admin.user_updated", "admin.password_set",
                 "admin.end_sessions", "admin.disable", "admin.service_updated",
                 "admin.customer_created", "admin.customer_photo", "admin.webhook_created",
                 "admin.webhook_tested"):
        assert kind in kinds, kind
    assert "admin:admin" in page.get_by_test_id("audit-table").inner_text()
    screenshot(page, "admin-audit")
    page.get_by_test_id("tab-webhooks").click()
    page.wait_for_selector("body[data-loaded=webhooks]")
    page.on("dialog", lambda d: d.accept())
    page.get_by_test_id(f"delete-webhook-{hook_id}").click()
    page.wait_for_function("() => !document.querySelector('[data-testid=webhook-row]')")
    assert page.js_errors == []
