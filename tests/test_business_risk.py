"""The risk engine's rules, table-driven: signals in, score, level and reasons out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudcounter.business.risk import (
    CallSignals, assess, assess_signals, level_for, parse_rules, signal_values,
)
from cloudcounter.errors import InvalidMessage

RULES = parse_rules(yaml.safe_load(
    (Path(__file__).resolve().parent.parent / "cloudcounter/business/data/risk_rules.yaml")
    .read_text()), version=1)
BASE = CallSignals(service="card_loss", identity_verdict="match", identity_distance=0.4,
                   identity_threshold=0.6, liveness_verdict="pass", confirmation="confirmed")


@pytest.mark.parametrize("changes, level, rules", [
    ({}, "low", []),
    ({"customer_risk": "medium"}, "low", ["record_medium_risk"]),
    ({"customer_risk": "high"}, "medium", ["record_high_risk"]),
    ({"identity_verdict": "no_match", "identity_distance": 0.8}, "high", ["identity_no_match"]),
    ({"identity_distance": 0.58}, "low", ["identity_close_match"]),
    ({"identity_verdict": "no_face", "identity_distance": None}, "low",
     ["identity_inconclusive"]),
    ({"liveness_verdict": "fail"}, "high", ["liveness_failed"]),
    ({"identity_verdict": "no_match", "identity_distance": 0.8, "liveness_verdict": "fail"},
     "block", ["identity_no_match", "liveness_failed", "impersonation"]),
    ({"coercion_concerns": 1}, "high", ["coercion_answer"]),
    ({"coercion_concerns": 2}, "high", ["coercion_answer", "coercion_answers"]),
    ({"confirmation": "declined"}, "medium", ["confirmation_declined"]),
    ({"confirmation_delay_s": 45.0}, "low", ["confirmation_hesitant"]),
    ({"confirmation_spoken": True}, "low", ["confirmation_spoken_only"]),
    ({"service": "large_transfer", "amount": 25000.0}, "low", ["large_amount"]),
    ({"service": "large_transfer", "amount": 80000.0}, "medium",
     ["large_amount", "very_large_amount"]),
    ({"service": "large_transfer", "days_since_contact_change": 3.0}, "high",
     ["takeover_pattern"]),
    ({"service": "large_transfer", "days_since_contact_change": 45.0}, "low", []),
    ({"service": "card_loss", "days_since_contact_change": 3.0}, "low", []),
    ({"address_changes": 1}, "low", ["network_changed"]),
    ({"agent_concern": True}, "high", ["agent_concern"]),
    ({"customer_risk": "high", "agent_concern": True, "coercion_concerns": 1}, "block",
     ["record_high_risk", "coercion_answer", "agent_concern"]),
])
def test_rules(changes: dict[str, Any], level: str, rules: list[str]) -> None:
    a = assess_signals(replace(BASE, **changes), RULES, now=0.0)
    assert [r.rule for r in a.reasons] == rules
    assert a.level == level and a.score == sum(r.weight for r in a.reasons)
    assert a.rules_version == 1


def test_alert_durations_count_until_the_alert_ends() -> None:
    s = BASE.with_alert("multiple_faces", 100.0)
    assert signal_values(s, 101.0)["multiple_faces_s"] == 1.0
    assert [r.rule for r in assess_signals(s, RULES, 101.0).reasons] == []
    assert [r.rule for r in assess_signals(s, RULES, 103.5).reasons] == ["several_faces"]
    s = s.with_alert("face_ok", 102.0).with_alert("no_face", 110.0)
    v = signal_values(s, 125.0)
    assert v["multiple_faces_s"] == 2.0 and v["face_absent_s"] == 15.0
    assert s.alert_open and not s.with_alert("face_ok", 126.0).alert_open


def test_min_level_raises_the_level_but_never_lowers_it() -> None:
    rules = parse_rules({"thresholds": {"medium": 10, "high": 20, "block": 30}, "rules": [
        {"id": "a", "when": [{"signal": "agent_concern", "op": "eq", "value": True}],
         "weight": 35, "min_level": "medium", "reason": "A"}]})
    assert assess({"agent_concern": True}, rules).level == "block"
    assert level_for(19, rules.thresholds) == "medium"


@pytest.mark.parametrize("data, fragment", [
    ({"thresholds": {"medium": 50, "high": 20, "block": 100}, "rules": []}, "must rise"),
    ({"thresholds": {"medium": 1, "high": 2, "block": 3},
      "rules": [{"id": "a", "when": [{"signal": "moon_phase", "op": "eq", "value": 1}],
                 "weight": 1, "reason": "x"}]}, "unknown signal"),
    ({"thresholds": {"medium": 1, "high": 2, "block": 3},
      "rules": [{"id": "a", "when": [{"signal": "service", "op": "gte", "value": 1}],
                 "weight": 1, "reason": "x"}]}, "compares numbers"),
    ({"thresholds": {"medium": 1, "high": 2, "block": 3},
      "rules": [{"id": "a", "when": [{"signal": "amount", "op": "in", "value": 5}],
                 "weight": 1, "reason": "x"}]}, "non-empty list"),
    ({"thresholds": {"medium": 1, "high": 2, "block": 3}, "rules": [
        {"id": "a", "when": [{"signal": "amount", "op": "gt", "value": 5}], "weight": 1,
         "reason": "x"},
        {"id": "a", "when": [{"signal": "amount", "op": "gt", "value": 6}], "weight": 1,
         "reason": "y"}]}, "duplicate rule id"),
    ({"thresholds": {"medium": 1, "high": 2, "block": 3},
      "rules": [{"id": "a", "when": [{"signal": "amount", "op": "gt", "value": 5}],
                 "weight": -5, "reason": "x"}]}, "weight"),
])
def test_invalid_rule_sets_are_refused(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidMessage) as exc:
        parse_rules(data)
    assert exc.value.code == "invalid_rules" and fragment in exc.value.message, exc.value.message


def test_rule_set_round_trip() -> None:
    again = parse_rules(RULES.to_dict(), version=1)
    assert again == RULES and again.sha256 == RULES.sha256
