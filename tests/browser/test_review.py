"""The review workflow on the audit page in Chromium (docs/supervision.md): an auditor
selects a call with a reason, reviews it against the checklist beside the replay, records
a finding at a time in the recording, completes the review and sees it in the task list."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from typing import Any

from sqlalchemy import text

from .conftest import DESKTOP, HubProcess, page_of, screenshot, sign_in

CALL = "call_00000000000b0e01"


def a_finished_call(hub: HubProcess) -> None:
    """An ended call of alice's, written to the hub's database as its journal would."""
    from cloudcounter.db.engine import make_engine, make_sessionmaker
    from cloudcounter.db.journal import DbJournal
    from cloudcounter.queue.model import Call

    async def go() -> None:
        engine = make_engine(hub.env["CLOUDCOUNTER_DATABASE_URL"])
        try:
            sm = make_sessionmaker(engine)
            async with sm() as s:
                alice = (await s.execute(text("SELECT id FROM users WHERE username = 'alice'"))
                         ).scalar_one()
                if (await s.execute(text("SELECT 1 FROM call_sessions WHERE id = :c"),
                                    {"c": CALL})).first():
                    return
            j = DbJournal(sm)
            t0 = time.time() - 86400  # yesterday: in the summary's last 30 days
            j.call_created(Call(CALL, "cus_demo_barack", "card_loss", "cards", 0, 0.0, 1), t0)
            j.call_updated(CALL, state="ended", agent_id=alice, answered_at=t0 + 10,
                           ended_at=t0 + 200, end_reason="completed")
            j.event(CALL, "agent:alice", "call.answered", {}, at=t0 + 10)
            j.event(CALL, "agent:alice", "call.ended", {"reason": "completed"}, at=t0 + 200)
            await j.flush()
        finally:
            await engine.dispose()
    # Playwright's sync API runs an event loop in this thread: write from another one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, go()).result(timeout=60)


def test_an_auditor_reviews_a_call_beside_its_replay(hub: HubProcess,
                                                     browser_factory: Any) -> None:
    a_finished_call(hub)
    page = page_of(browser_factory("reviewer", **DESKTOP))
    sign_in(page, f"{hub.url}/audit#call={CALL}", "audrey", "audrey-demo-1")
    panel = page.get_by_test_id("review-panel")
    panel.get_by_test_id("manual-reason").fill("Customer complaint 4711")
    panel.get_by_test_id("manual-select").click()
    page.wait_for_selector("#review-panel[data-state=open]")
    panel.get_by_test_id("review-start").click()
    page.wait_for_selector("#review-panel[data-state=in_review]")
    items = page.locator("#checklist li")
    assert items.count() == 6
    for item_id in ("identity_verified", "liveness_passed", "statements_confirmed",
                    "outcome_matches_evidence", "recording_complete"):
        page.get_by_test_id(f"pass-{item_id}").click()
        page.wait_for_selector(f"#checklist li[data-item={item_id}][data-result=pass]")
    page.get_by_test_id("comment-anti_coercion_asked").fill("The questions were not asked")
    page.get_by_test_id("fail-anti_coercion_asked").click()
    page.wait_for_selector("#checklist li[data-item=anti_coercion_asked][data-result=fail]")
    page.get_by_test_id("finding-description").fill("Anti-coercion questions not asked")
    page.get_by_test_id("finding-add").click()
    page.wait_for_selector("[data-testid=finding][data-state=open]")
    page.evaluate("document.querySelector('#review-panel').scrollTop = 0")
    screenshot(page, "review")
    panel.get_by_test_id("verify-record").click()
    page.wait_for_selector("[data-testid=verify-result][data-ok=true]")
    page.get_by_test_id("review-complete").click()
    page.wait_for_selector("#review-panel[data-state=findings_raised]")

    page.goto(f"{hub.url}/audit#review")
    page.wait_for_selector("#view-review:not([hidden])")
    row = page.locator("[data-testid=review-tasks] tbody tr", has_text=CALL)
    row.get_by_test_id("task-state").wait_for()
    assert row.get_by_test_id("task-state").inner_text() == "Findings raised"
    page.get_by_test_id("summary-csv").wait_for()
    screenshot(page, "review-tasks")

    # the agent answers in the console; the auditor accepts
    agent = page_of(browser_factory("agent-findings", **DESKTOP))
    sign_in(agent, f"{hub.url}/agent", "alice", "alice-demo-1")
    mine = agent.locator("[data-testid=my-finding]", has_text="Anti-coercion questions not asked")
    mine.locator("summary").click()
    agent.get_by_test_id("finding-response").fill("I ask them on every call from now on")
    agent.get_by_test_id("finding-respond").click()
    agent.wait_for_selector("[data-testid=my-finding][data-state=responded]")
    screenshot(agent, "agent-findings")
    lead = page_of(browser_factory("lead-findings", **DESKTOP))
    sign_in(lead, f"{hub.url}/lead", "leo", "leo-lead-demo-1")
    team = lead.locator("[data-testid=my-finding]", has_text="Anti-coercion questions not asked")
    team.wait_for()
    assert "alice" in team.inner_text() and lead.locator("[data-testid=finding-response]"
                                                       ).count() == 0
    page.goto(f"{hub.url}/audit#call={CALL}")
    page.wait_for_selector("[data-testid=finding][data-state=responded]")
    page.locator("[data-testid=finding] summary").click()
    page.get_by_test_id("finding-accept").click()
    page.wait_for_selector("#review-panel[data-state=closed]")
    assert page.js_errors == [] and agent.js_errors == [] and lead.js_errors == []
