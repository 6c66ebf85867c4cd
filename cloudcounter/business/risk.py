"""The fraud-risk engine: a pure function from a call's signals to a score, a level and the
reasons that produced them.

Rules and weights are data (a versioned rule set, YAML to import and export). A rule fires
when all of its conditions hold; the score is the sum of the fired rules' weights; the
level is the highest threshold the score reaches, raised to the ``min_level`` of any fired
rule. No I/O, no clock: the caller passes the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
    model_validator,
)

from cloudcounter.business.scripts import content_hash, problems_text
from cloudcounter.errors import InvalidMessage
from cloudcounter.text import check_text

LEVELS = ("low", "medium", "high", "block")
Level = Literal["low", "medium", "high", "block"]
OPS = ("eq", "ne", "in", "gte", "gt", "lte", "lt")

#: every signal a rule may test, with its type and meaning (docs/services.md)
SIGNALS: dict[str, tuple[str, str]] = {
    "service": ("code", "the service code of the call"),
    "customer_risk": ("code", "the customer's risk level on file: low, medium or high"),
    "amount": ("number", "the amount of the request (null when the call has none)"),
    "identity_verdict": ("code", "latest identity check: match, no_match, no_face, "
                         "multiple_faces, or none"),
    "identity_distance": ("number", "face distance of the latest identity check"),
    "identity_margin": ("number", "threshold minus distance of the latest identity check"),
    "liveness_verdict": ("code", "latest liveness check: pass, fail, or none"),
    "face_absent_s": ("number", "seconds without a face in view (continuity alerts)"),
    "multiple_faces_s": ("number", "seconds with several faces in view"),
    "face_changed_s": ("number", "seconds with a face unlike the one at the start"),
    "coercion_concerns": ("number", "anti-coercion questions answered with a concern"),
    "confirmation": ("code", "statements: none, confirmed, or declined (any declined)"),
    "confirmation_spoken": ("bool", "a statement was confirmed aloud and recorded by the "
                            "agent instead of on the customer's screen"),
    "confirmation_delay_s": ("number", "longest time between a statement shown and answered"),
    "days_since_contact_change": ("number", "days since the customer's contact details last "
                                  "changed (null: no change on file)"),
    "days_since_account_change": ("number", "days since any account change on file"),
    "address_changes": ("number", "times the customer reconnected from another network "
                        "address during the call"),
    "agent_concern": ("bool", "the agent raised \"I have concerns\""),
    "credit_contradictions": ("number", "car-loan interview answers that contradict the "
                              "credit application (employer, income)"),
}


# ------------------------------------------------------------------ the rule set as data
def _line(v: str) -> str:
    return check_text(v, multiline=False)


RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Scalar = str | float | int | bool | None


class ConditionDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    signal: str
    op: Literal["eq", "ne", "in", "gte", "gt", "lte", "lt"]
    value: Scalar | list[str | float | int]

    @model_validator(mode="after")
    def _known(self) -> "ConditionDoc":
        if self.signal not in SIGNALS:
            raise ValueError(f"unknown signal {self.signal!r} (known: {', '.join(SIGNALS)})")
        kind = SIGNALS[self.signal][0]
        if self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("'in' takes a non-empty list")
        elif isinstance(self.value, list):
            raise ValueError(f"{self.op!r} takes one value")
        if self.op in ("gte", "gt", "lte", "lt") and (
                kind != "number" or isinstance(self.value, bool)
                or not isinstance(self.value, (int, float))):
            raise ValueError(f"{self.op!r} compares numbers ({self.signal} is a {kind})")
        return self


class RuleDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: RuleId
    when: list[ConditionDoc] = Field(min_length=1, max_length=8)
    weight: int = Field(ge=0, le=1000)
    min_level: Level | None = None
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=200), AfterValidator(_line)]


class Thresholds(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    medium: int = Field(ge=1)
    high: int = Field(ge=1)
    block: int = Field(ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> "Thresholds":
        if not self.medium < self.high < self.block:
            raise ValueError("thresholds must rise: medium < high < block")
        return self


class RuleSetDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    thresholds: Thresholds
    rules: list[RuleDoc] = Field(min_length=1, max_length=200)

    @model_validator(mode="after")
    def _unique(self) -> "RuleSetDoc":
        ids = [r.id for r in self.rules]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"duplicate rule id(s): {dup}")
        return self


@dataclass(frozen=True)
class Condition:
    signal: str
    op: str
    value: Any

    def holds(self, values: Mapping[str, Any]) -> bool:
        v = values.get(self.signal)
        if self.op == "eq":
            return bool(v == self.value)
        if self.op == "ne":
            return bool(v != self.value)
        if self.op == "in":
            return v in self.value
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            return False
        target = float(self.value)
        return {"gte": v >= target, "gt": v > target, "lte": v <= target,
                "lt": v < target}[self.op]


@dataclass(frozen=True)
class Rule:
    id: str
    when: tuple[Condition, ...]
    weight: int
    reason: str
    min_level: str | None = None


@dataclass(frozen=True)
class RuleSet:
    thresholds: dict[str, int]
    rules: tuple[Rule, ...]
    version: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "rules": [
            {"id": r.id, "when": [{"signal": c.signal, "op": c.op, "value": c.value}
                                  for c in r.when],
             "weight": r.weight, **({"min_level": r.min_level} if r.min_level else {}),
             "reason": r.reason} for r in self.rules]}

    @property
    def sha256(self) -> str:
        return content_hash(self.to_dict())


def parse_rules(data: Any, version: int = 0) -> RuleSet:
    """A validated rule set; raises InvalidMessage (``invalid_rules``) naming the problems."""
    if not isinstance(data, dict):
        raise InvalidMessage("a rule set is a mapping with 'thresholds' and 'rules'",
                             code="invalid_rules")
    data = {k: v for k, v in data.items() if k != "version"}  # assigned on import
    try:
        doc = RuleSetDoc.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid rule set: {problems_text(exc)}",
                             code="invalid_rules") from None
    return RuleSet(thresholds=doc.thresholds.model_dump(), version=version, rules=tuple(
        Rule(r.id, tuple(Condition(c.signal, c.op, c.value) for c in r.when), r.weight,
             r.reason, r.min_level) for r in doc.rules))


# ------------------------------------------------------------------ the signals of a call
@dataclass(frozen=True)
class AlertSpan:
    """A continuity alert reported by the analysis, from ``start`` until ``end`` (open)."""

    signal: str
    start: float
    end: float | None = None


@dataclass(frozen=True)
class CallSignals:
    """Everything the engine looks at, as an immutable snapshot (times in seconds)."""

    service: str
    customer_risk: str = "low"
    amount: float | None = None
    identity_verdict: str | None = None
    identity_distance: float | None = None
    identity_threshold: float | None = None
    liveness_verdict: str | None = None
    alerts: tuple[AlertSpan, ...] = ()
    coercion_concerns: int = 0
    confirmation: str = "none"
    confirmation_spoken: bool = False
    confirmation_delay_s: float | None = None
    days_since_contact_change: float | None = None
    days_since_account_change: float | None = None
    address_changes: int = 0
    agent_concern: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def with_alert(self, signal: str, t: float) -> "CallSignals":
        """The analysis reported ``signal`` at ``t`` (``face_ok`` ends the current alert)."""
        spans = list(self.alerts)
        if spans and spans[-1].end is None:
            if spans[-1].signal == signal:
                return self
            spans[-1] = replace(spans[-1], end=t)
        if signal != "face_ok":
            spans.append(AlertSpan(signal, t))
        return replace(self, alerts=tuple(spans))

    @property
    def alert_open(self) -> bool:
        return bool(self.alerts) and self.alerts[-1].end is None


def alert_seconds(alerts: tuple[AlertSpan, ...], signal: str, now: float) -> float:
    return round(sum(max(0.0, (a.end if a.end is not None else now) - a.start)
                     for a in alerts if a.signal == signal), 2)


def signal_values(s: CallSignals, now: float) -> dict[str, Any]:
    """The flat, named values rules test (see :data:`SIGNALS`)."""
    margin = None
    if s.identity_distance is not None and s.identity_threshold is not None:
        margin = round(s.identity_threshold - s.identity_distance, 4)
    return {
        "service": s.service, "customer_risk": s.customer_risk, "amount": s.amount,
        "identity_verdict": s.identity_verdict or "none",
        "identity_distance": s.identity_distance, "identity_margin": margin,
        "liveness_verdict": s.liveness_verdict or "none",
        "face_absent_s": alert_seconds(s.alerts, "no_face", now),
        "multiple_faces_s": alert_seconds(s.alerts, "multiple_faces", now),
        "face_changed_s": alert_seconds(s.alerts, "face_changed", now),
        "coercion_concerns": s.coercion_concerns, "confirmation": s.confirmation,
        "confirmation_spoken": s.confirmation_spoken,
        "confirmation_delay_s": s.confirmation_delay_s,
        "days_since_contact_change": s.days_since_contact_change,
        "days_since_account_change": s.days_since_account_change,
        "address_changes": s.address_changes, "agent_concern": s.agent_concern,
        "credit_contradictions": 0,
        **s.extra,
    }


# ------------------------------------------------------------------ the engine
@dataclass(frozen=True)
class Reason:
    rule: str
    weight: int
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "weight": self.weight, "text": self.text}


@dataclass(frozen=True)
class Assessment:
    score: int
    level: str
    reasons: tuple[Reason, ...]
    rules_version: int

    @property
    def rule_ids(self) -> frozenset[str]:
        return frozenset(r.rule for r in self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "level": self.level, "rules_version": self.rules_version,
                "reasons": [r.to_dict() for r in self.reasons]}


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def level_for(score: int, thresholds: Mapping[str, int]) -> str:
    level = "low"
    for name in ("medium", "high", "block"):
        if score >= thresholds[name]:
            level = name
    return level


def assess(values: Mapping[str, Any], rules: RuleSet) -> Assessment:
    """Score ``values`` (from :func:`signal_values`) against ``rules``."""
    fired = [r for r in rules.rules if all(c.holds(values) for c in r.when)]
    score = sum(r.weight for r in fired)
    level = level_for(score, rules.thresholds)
    for r in fired:
        if r.min_level is not None and level_rank(r.min_level) > level_rank(level):
            level = r.min_level
    return Assessment(score, level, tuple(Reason(r.id, r.weight, r.reason) for r in fired),
                      rules.version)


def assess_signals(signals: CallSignals, rules: RuleSet, now: float) -> Assessment:
    return assess(signal_values(signals, now), rules)


def days_between(earlier: float, later: float) -> float:
    return math.floor((later - earlier) / 86400.0 * 10) / 10
