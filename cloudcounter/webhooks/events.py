"""The webhook event types, in one place, and the envelope every receiver gets.

Call events are derived from the call's timeline as the journal writes it
(:func:`from_timeline`), in the same transaction: an event is published if and only if it
is on the timeline. Other parts of the hub (post-event supervision's findings, callbacks)
publish their own types with :func:`cloudcounter.webhooks.outbox.publish`.

Payloads carry identifiers and verdicts, never names, notes or free text: a receiver that
needs more asks the bank's systems (or ``GET /api/calls/{id}``) with its own rights.
"""

from __future__ import annotations

import enum
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping

API_VERSION = "1"


class EventType(str, enum.Enum):
    # call lifecycle (from the timeline)
    CALL_REQUESTED = "call.requested"
    CALL_ANSWERED = "call.answered"
    CALL_REQUEUED = "call.requeued"
    CALL_TAKEN_OVER = "call.taken_over"
    CALL_ENDED = "call.ended"
    CALL_WRAPPED_UP = "call.wrapped_up"
    # checks and risk (from the timeline)
    CHECK_COMPLETED = "check.completed"
    RISK_CHANGED = "risk.changed"
    APPROVAL_DECIDED = "approval.decided"
    # post-event supervision (from the timeline: cloudcounter.audit.review)
    REVIEW_COMPLETED = "review.completed"
    FINDING_RECORDED = "finding.recorded"
    FINDING_RESOLVED = "finding.resolved"
    # callbacks (published by the queue's callback rules)
    CALLBACK_REQUESTED = "callback.requested"
    CALLBACK_DUE = "callback.due"
    CALLBACK_CANCELLED = "callback.cancelled"
    CALLBACK_EXPIRED = "callback.expired"
    # sent to one subscription on an administrator's request; not subscribable
    WEBHOOK_TEST = "webhook.test"


DESCRIPTIONS: dict[EventType, str] = {
    EventType.CALL_REQUESTED: "a customer asked for a service (the call is queued)",
    EventType.CALL_ANSWERED: "an agent answered the call",
    EventType.CALL_REQUEUED: "the agent was lost; the call is back in the queue at its place",
    EventType.CALL_TAKEN_OVER: "a team lead took over a call whose agent dropped",
    EventType.CALL_ENDED: "the call ended (reason: completed, abandoned, rejected, failed, "
                          "timed_out)",
    EventType.CALL_WRAPPED_UP: "the agent recorded the outcome",
    EventType.CHECK_COMPLETED: "an identity or liveness check has a verdict",
    EventType.RISK_CHANGED: "the call's fraud-risk assessment changed",
    EventType.APPROVAL_DECIDED: "a team lead approved or refused a high-risk call",
    EventType.REVIEW_COMPLETED: "an auditor completed the review of a call",
    EventType.FINDING_RECORDED: "an auditor recorded a finding on a call",
    EventType.FINDING_RESOLVED: "a finding was resolved",
    EventType.CALLBACK_REQUESTED: "a customer left the queue asking to be called back "
                                  "(their place is kept)",
    EventType.CALLBACK_DUE: "a callback's place came up: the bank's app should reconnect "
                            "the customer now",
    EventType.CALLBACK_CANCELLED: "a callback was cancelled",
    EventType.CALLBACK_EXPIRED: "a callback was not taken up in time",
    EventType.WEBHOOK_TEST: "a test sent by an administrator",
}
SUBSCRIBABLE = tuple(t.value for t in EventType if t is not EventType.WEBHOOK_TEST)


def matches(patterns: list[str] | tuple[str, ...], event_type: str) -> bool:
    """``*`` (everything), an exact type, or a family (``call.*``)."""
    for p in patterns:
        if p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1])):
            return True
    return False


def valid_pattern(pattern: str) -> bool:
    if pattern == "*" or pattern in SUBSCRIBABLE:
        return True
    return pattern.endswith(".*") and any(t.startswith(pattern[:-1]) for t in SUBSCRIBABLE)


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


@dataclass(frozen=True)
class NewEvent:
    """An event to publish: a frozen snapshot of what happened."""

    type: str
    data: Mapping[str, Any]
    call_id: str | None = None
    at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    id: str = field(default_factory=new_event_id)

    def body(self) -> str:
        """The exact bytes every subscriber receives (ASCII JSON: any database stores it,
        any receiver parses it)."""
        return json.dumps({"id": self.id, "type": self.type, "api_version": API_VERSION,
                           "created_at": self.at.astimezone(timezone.utc).isoformat(),
                           "data": dict(self.data)},
                          ensure_ascii=True, separators=(",", ":"), default=str)


# -- the timeline -------------------------------------------------------------------------
TIMELINE: dict[str, EventType] = {
    "call.requested": EventType.CALL_REQUESTED,
    "call.answered": EventType.CALL_ANSWERED,
    "call.requeued": EventType.CALL_REQUEUED,
    "call.taken_over": EventType.CALL_TAKEN_OVER,
    "call.ended": EventType.CALL_ENDED,
    "call.wrapped_up": EventType.CALL_WRAPPED_UP,
    "check.result": EventType.CHECK_COMPLETED,
    "risk.assessed": EventType.RISK_CHANGED,
    "approval.decided": EventType.APPROVAL_DECIDED,
    "callback.requested": EventType.CALLBACK_REQUESTED,
    "callback.due": EventType.CALLBACK_DUE,
    "callback.cancelled": EventType.CALLBACK_CANCELLED,
    "callback.expired": EventType.CALLBACK_EXPIRED,
    # post-event supervision (cloudcounter.audit.review writes these on the timeline)
    "review.completed": EventType.REVIEW_COMPLETED,
    "finding.recorded": EventType.FINDING_RECORDED,
    "finding.accepted": EventType.FINDING_RESOLVED,
}


def _pick(payload: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: payload.get(k) for k in keys}


def _risk(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    out = _pick(value, "score", "level", "rules_version")
    reasons = value.get("reasons")
    if isinstance(reasons, list):
        out["reasons"] = [r.get("rule") for r in reasons if isinstance(r, Mapping)]
    return out


def timeline_data(kind: str, actor: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a timeline event says, for receivers: identifiers and verdicts only."""
    if kind == "call.requested":
        return _pick(payload, "priority")
    if kind == "call.answered":
        return {"taken_over": True} if payload.get("taken_over") else {}
    if kind == "call.taken_over":
        return _pick(payload, "lead", "from_agent", "after_s")
    if kind == "call.requeued":
        return _pick(payload, "reason", "was_in_call")
    if kind == "call.ended":
        return {"reason": payload.get("reason"), "by": actor.split(":", 1)[0],
                **({"cause": payload["cause"]} if "cause" in payload else {})}
    if kind == "call.wrapped_up":
        out = _pick(payload, "outcome", "business_state")
        out["late"] = bool(payload.get("late", False))
        out["skipped_steps"] = list(payload.get("skipped_steps") or [])
        out["risk"] = _risk(payload.get("risk"))
        return out
    if kind == "check.result":
        return _pick(payload, "check_id", "kind", "verdict")
    if kind == "risk.assessed":
        return {**(_risk(payload) or {}), "previous_level": payload.get("previous_level")}
    if kind == "callback.requested":
        return _pick(payload, "position", "estimated_wait_s")
    if kind == "callback.due":
        return _pick(payload, "answer_within_s")
    if kind == "approval.decided":
        return {**_pick(payload, "approval_id", "decision", "agent", "lead"),
                "risk": _risk(payload.get("risk"))}
    if kind == "review.completed":
        return {**_pick(payload, "task_id", "state", "findings"), "by": actor}
    if kind == "finding.recorded":
        return {**_pick(payload, "task_id", "finding_id", "severity", "category"), "by": actor}
    if kind == "finding.accepted":
        return {**_pick(payload, "task_id", "finding_id"), "by": actor}
    return {}


@dataclass(frozen=True)
class CallFacts:
    """The call a timeline event belongs to (from its row)."""

    service: str | None = None
    customer_id: str | None = None
    agent: str | None = None


def from_timeline(event: Mapping[str, Any], facts: CallFacts) -> NewEvent | None:
    """The webhook event of one timeline row (``call_id``, ``seq``, ``actor``, ``kind``,
    ``payload``, ``at``), or None when the kind is not published."""
    kind = str(event.get("kind", ""))
    etype = TIMELINE.get(kind)
    if etype is None:
        return None
    payload = event.get("payload") or {}
    at = event.get("at")
    call_id = str(event["call_id"])
    data = {"call_id": call_id, "service": facts.service, "customer_id": facts.customer_id,
            "agent": facts.agent, "timeline_seq": event.get("seq"),
            **timeline_data(kind, str(event.get("actor", "")), payload)}
    if kind == "call.requested":
        data["service"] = payload.get("service", facts.service)
        actor = str(event.get("actor", ""))
        if actor.startswith("customer:"):
            data["customer_id"] = actor.split(":", 1)[1]
    if kind == "call.answered" and payload.get("agent"):
        data["agent"] = payload["agent"]
    if isinstance(at, datetime):
        return NewEvent(etype.value, data, call_id=call_id, at=at)
    return NewEvent(etype.value, data, call_id=call_id)
