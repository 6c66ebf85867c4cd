"""Selection for review: deterministic, explainable sampling rules (versioned data in
``cloudcounter/audit/data/sampling.yaml``; docs/supervision.md).

Pure functions on plain data: :func:`call_signals` turns what a call left behind into
signals, :func:`select` says whether and why one call is selected, :func:`select_period`
adds the per-agent weekly minimum. Every selection names its rule and the rule set's
version; the random draw is ``SHA-256("<call id>|<version>")`` read as a number in [0, 1).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import yaml

from cloudcounter.errors import InvalidMessage

DATA = Path(__file__).parent / "data" / "sampling.yaml"
SIGNALS = {"risk_level": str, "failed_checks": int, "skipped_checks": int, "declined": bool,
           "overridden_steps": int, "outcome_changed": bool}
OPS = {"eq", "in", "gte"}
PASSING = {"identity": "match", "liveness": "pass"}
RANDOM, MINIMUM, MANUAL = "random_share", "agent_minimum", "manual"


@dataclass(frozen=True)
class Rule:
    id: str
    when: tuple[tuple[str, str, Any], ...]
    reason: str

    def fires(self, signals: dict[str, Any]) -> bool:
        for signal, op, value in self.when:
            v = signals.get(signal)
            if op == "eq" and v != value:
                return False
            if op == "in" and v not in value:
                return False
            if op == "gte" and not (isinstance(v, (int, float)) and v >= value):
                return False
        return True


@dataclass(frozen=True)
class RuleSet:
    version: int
    random_share: float
    min_per_agent_per_week: int
    due_working_days: int
    rules: tuple[Rule, ...]
    sha256: str = ""

    @classmethod
    def parse(cls, text: str) -> "RuleSet":
        """Validate the YAML; refuse anything unknown (``invalid_sampling_rules``)."""
        def bad(why: str) -> InvalidMessage:
            return InvalidMessage(f"sampling rules: {why}", code="invalid_sampling_rules")
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise bad(f"not YAML ({exc.__class__.__name__})") from None
        if not isinstance(raw, dict) or set(raw) != {"version", "random_share",
                                                     "min_per_agent_per_week",
                                                     "due_working_days", "rules"}:
            raise bad("expected version, random_share, min_per_agent_per_week, "
                      "due_working_days and rules")
        if not isinstance(raw["version"], int) or raw["version"] < 1:
            raise bad("version must be a positive whole number")
        share = raw["random_share"]
        if not isinstance(share, (int, float)) or not 0 <= share <= 1:
            raise bad("random_share must be from 0 to 1")
        for k in ("min_per_agent_per_week", "due_working_days"):
            if not isinstance(raw[k], int) or not 0 <= raw[k] <= 100:
                raise bad(f"{k} must be a whole number from 0 to 100")
        rules, seen = [], set()
        for r in raw["rules"] or []:
            if not isinstance(r, dict) or set(r) != {"id", "when", "reason"} or \
                    not isinstance(r["id"], str) or not isinstance(r["reason"], str) or \
                    not isinstance(r["when"], list) or not r["when"]:
                raise bad("each rule has id, when (a list of conditions) and reason")
            if r["id"] in seen or r["id"] in (RANDOM, MINIMUM, MANUAL):
                raise bad(f"rule id {r['id']!r} is taken")
            seen.add(r["id"])
            conds = []
            for c in r["when"]:
                if not isinstance(c, dict) or set(c) != {"signal", "op", "value"} or \
                        c["signal"] not in SIGNALS or c["op"] not in OPS:
                    raise bad(f"rule {r['id']}: a condition is {{signal, op, value}} with a "
                              f"signal of {sorted(SIGNALS)} and op of {sorted(OPS)}")
                value = tuple(c["value"]) if isinstance(c["value"], list) else c["value"]
                conds.append((c["signal"], c["op"], value))
            rules.append(Rule(r["id"], tuple(conds), r["reason"]))
        return cls(raw["version"], float(share), raw["min_per_agent_per_week"],
                   raw["due_working_days"], tuple(rules),
                   hashlib.sha256(text.encode()).hexdigest())


@lru_cache(maxsize=1)
def default_rules() -> RuleSet:
    return RuleSet.parse(DATA.read_text(encoding="utf-8"))


def draw(call_id: str, version: int) -> float:
    """The call's random draw for a rule set version: reproducible, in [0, 1)."""
    h = hashlib.sha256(f"{call_id}|{version}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def call_signals(call: Any, events: Iterable[Any], steps: Iterable[Any]) -> dict[str, Any]:
    """The signals of one call: its row, its timeline and its script steps."""
    failed = skipped = wrapups = 0
    late = False
    for e in events:
        p = e.payload if isinstance(e.payload, dict) else {}
        if e.kind == "check.result" and p.get("kind") in PASSING and \
                p.get("verdict") != PASSING[p["kind"]]:
            failed += 1
        elif e.kind in ("check.skipped", "check.abandoned"):
            skipped += 1
        elif e.kind == "call.wrapped_up":
            wrapups += 1
            late = late or bool(p.get("late"))
    step_list = list(steps)
    return {
        "risk_level": getattr(call, "risk_level", None),
        "failed_checks": failed, "skipped_checks": skipped,
        "declined": getattr(call, "business_state", None) == "declined"
        or any(s.state == "declined" for s in step_list),
        "overridden_steps": sum(1 for s in step_list
                                if s.state == "skipped" or s.method == "agent_manual"),
        "outcome_changed": wrapups > 1 or late,
    }


@dataclass(frozen=True)
class Selection:
    call_id: str
    rule_id: str
    rule_version: int
    reason: str
    draw: float


def select(call_id: str, signals: dict[str, Any], rules: RuleSet) -> Selection | None:
    """Whether a call is selected by a rule or by the random share, and why."""
    d = draw(call_id, rules.version)
    for rule in rules.rules:
        if rule.fires(signals):
            return Selection(call_id, rule.id, rules.version, rule.reason, d)
    if d < rules.random_share:
        return Selection(call_id, RANDOM, rules.version,
                         f"Random share: draw {d:.4f} below {rules.random_share:g}", d)
    return None


@dataclass
class Candidate:
    call_id: str
    agent: str | None  # who handled it (the weekly minimum is per agent)
    day: date
    signals: dict[str, Any] = field(default_factory=dict)


def week_of(day: date | datetime) -> tuple[int, int]:
    y, w, _ = day.isocalendar()
    return y, w


def select_period(candidates: list[Candidate], rules: RuleSet,
                  already: dict[tuple[str, tuple[int, int]], int] | None = None
                  ) -> list[Selection]:
    """Select among the calls of a period: the rules and the random share, then the
    weekly minimum per agent (counting ``already`` selected calls of each agent and
    week), lowest draws first. The same input always gives the same selection."""
    already = dict(already or {})
    out: list[Selection] = []
    rest: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: c.call_id):
        sel = select(c.call_id, c.signals, rules)
        if sel is None:
            rest.append(c)
            continue
        out.append(sel)
        if c.agent is not None:
            key = (c.agent, week_of(c.day))
            already[key] = already.get(key, 0) + 1
    rest.sort(key=lambda c: (draw(c.call_id, rules.version), c.call_id))
    for c in rest:
        if c.agent is None:
            continue
        key = (c.agent, week_of(c.day))
        if already.get(key, 0) < rules.min_per_agent_per_week:
            already[key] = already.get(key, 0) + 1
            y, w = key[1]
            out.append(Selection(c.call_id, MINIMUM, rules.version,
                                 f"At least {rules.min_per_agent_per_week} calls of each "
                                 f"agent a week ({c.agent}, week {y}-W{w:02d})",
                                 draw(c.call_id, rules.version)))
    return out
