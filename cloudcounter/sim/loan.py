"""The simulated agent's car-loan interview: look the application up, answer the interview
questions consistently with it, and record the outcome (``sim agent --outcome``)."""

from __future__ import annotations

from typing import Any

from cloudcounter.sim.client import Connection, SimError

REASONS = {"refer": ["simulated: refer to an underwriter"],
           "decline": ["simulated: the applicant's answers do not support the loan"]}


def answers_for(application: dict[str, Any] | None) -> dict[str, str]:
    app = application or {}
    applicant = app.get("applicant") or {}
    income = applicant.get("monthly_income")
    return {
        "purpose": "Commuting to work and family trips",
        "employer": applicant.get("employer") or "Self-employed",
        "income": f"{income:.0f} {app.get('currency', '')}".strip() if income else "not said",
        "driver": "I will drive it myself",
        "dealer": "None: I found the car at the dealer's showroom",
        "others": "No, I repay it myself and arranged it myself",
    }


async def interview(conn: Connection, call_id: str) -> dict[str, Any]:
    """During the call: the application and the answers. Returns the panel's view."""
    view = await conn.call("credit:lookup", {"call_id": call_id})
    if not view.get("ok"):
        raise SimError(f"credit lookup refused: {view.get('error')}")
    for question, answer in answers_for(view.get("application")).items():
        reply = await conn.call("credit:answer", {"call_id": call_id, "question": question,
                                                  "answer": answer})
        if not reply.get("ok"):
            raise SimError(f"answer refused: {reply.get('error')}")
    return view


async def record_outcome(conn: Connection, call_id: str, outcome: str) -> dict[str, Any]:
    """The outcome form; a refusal (no application known) is returned, not raised: the
    wrap-up then gives a skip reason and the hub records the interview as not assessed."""
    return await conn.call("credit:outcome", {"call_id": call_id, "outcome": outcome,
                                              "reasons": REASONS.get(outcome, [])})
