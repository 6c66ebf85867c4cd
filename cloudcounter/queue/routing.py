"""Routing decisions and wait estimates: pure functions over plain data and the time.

Order: highest (effective) priority first, then the longest-waiting call; each call goes
to the longest-idle available agent who has the call's skill. A call waiting longer than
``aging_s`` per priority level gains one level, so low-priority calls are never starved.
A customer whose record says high risk is served only by a ``senior`` agent.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from cloudcounter.agents.skills import SENIOR
from cloudcounter.queue import erlang

HIGH_RISK = "high"


@dataclass(frozen=True)
class ServiceRules:
    """A service's routing rules (the service catalogue's ``routing``; docs/routing.md).

    * **pool widening**: once a call has waited ``widen_after_s`` (None: the service's
      target answer time), agents with any of ``fallback_skills`` may take it too;
    * **overflow**: once it has waited ``overflow_after_s`` (None: never), agents of a
      second service group (``overflow_skills``) may take it;
    * ``max_consecutive_offers``: an agent is offered at most this many calls of this
      service in a row while another free agent could take the call (None: no limit).
    """

    widen_after_s: float | None = None
    fallback_skills: frozenset[str] = frozenset()
    overflow_after_s: float | None = None
    overflow_skills: frozenset[str] = frozenset()
    max_consecutive_offers: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"widen_after_s": self.widen_after_s,
                "fallback_skills": sorted(self.fallback_skills),
                "overflow_after_s": self.overflow_after_s,
                "overflow_skills": sorted(self.overflow_skills),
                "max_consecutive_offers": self.max_consecutive_offers}

    @classmethod
    def from_dict(cls, data: Any) -> "ServiceRules":
        """From stored JSON (already validated on the way in); unknown keys are ignored."""
        if not isinstance(data, dict):
            return cls()

        def seconds(key: str) -> float | None:
            v = data.get(key)
            return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) \
                and v >= 0 else None

        def skills(key: str) -> frozenset[str]:
            v = data.get(key)
            return frozenset(x for x in v if isinstance(x, str)) if isinstance(v, list) \
                else frozenset()
        limit = data.get("max_consecutive_offers")
        return cls(seconds("widen_after_s"), skills("fallback_skills"),
                   seconds("overflow_after_s"), skills("overflow_skills"),
                   limit if isinstance(limit, int) and not isinstance(limit, bool)
                   and limit >= 1 else None)


NO_RULES = ServiceRules()


@dataclass(frozen=True)
class WaitingCall:
    call_id: str
    skill: str
    priority: int
    enqueued_at: float
    seq: int = 0
    excluded: frozenset[int] = frozenset()
    customer_risk: str = "low"  # the customer's risk level on file
    service: str = ""  # whose ServiceRules apply (``route``'s ``rules``)


@dataclass(frozen=True)
class IdleAgent:
    agent_id: int
    skills: frozenset[str]
    idle_since: float
    preferred: frozenset[str] = frozenset()  # skills whose calls this agent takes first
    streak: tuple[str, int] = ("", 0)  # (service, offers of it in a row)


#: a service's rules and its target answer time (the default widening time)
Rules = Callable[[str], tuple[ServiceRules, float]]


def no_rules(service: str) -> tuple[ServiceRules, float]:
    return NO_RULES, 60.0


@dataclass(frozen=True)
class Assignment:
    call_id: str
    agent_id: int
    tier: int = 0  # 0 the service's pool, 1 a widened pool, 2 an overflow group


def needed_skills(skill: str, customer_risk: str) -> frozenset[str]:
    """Every skill an agent needs for a call: the service's, and ``senior`` when the
    customer's record says high risk."""
    return frozenset({skill, SENIOR}) if customer_risk == HIGH_RISK else frozenset({skill})


def eligible(call: WaitingCall, agent: IdleAgent) -> bool:
    return needed_skills(call.skill, call.customer_risk) <= agent.skills \
        and agent.agent_id not in call.excluded


def tier(call: WaitingCall, agent: IdleAgent, now: float, rules: Rules = no_rules
         ) -> int | None:
    """How an agent may take a call now: 0 with the service's skill, 1 with a fallback
    skill (pool widened), 2 with an overflow group's skill; None when not at all. A
    high-risk customer needs ``senior`` whatever the tier; exclusions always apply."""
    if agent.agent_id in call.excluded:
        return None
    if call.customer_risk == HIGH_RISK and SENIOR not in agent.skills:
        return None
    if call.skill in agent.skills:
        return 0
    r, target_s = rules(call.service)
    fallback, overflow = opened(r, target_s, now - call.enqueued_at)
    if fallback and r.fallback_skills & agent.skills:
        return 1
    if overflow and r.overflow_skills & agent.skills:
        return 2
    return None


def opened(r: ServiceRules, target_s: float, waited: float) -> tuple[bool, bool]:
    """Whether a call that has waited ``waited`` seconds may go to the widened pool and to
    the overflow group (each only when the rules name skills for it)."""
    widen = r.widen_after_s if r.widen_after_s is not None else target_s
    return (bool(r.fallback_skills) and waited >= widen,
            bool(r.overflow_skills) and r.overflow_after_s is not None
            and waited >= r.overflow_after_s)


def staffed(agent_skills: Iterable[frozenset[str]], needed: frozenset[str]) -> int:
    """How many of these agents could take a call that needs ``needed``."""
    return sum(1 for skills in agent_skills if needed <= skills)


def effective_priority(call: WaitingCall, now: float, aging_s: float | None) -> int:
    if not aging_s:
        return call.priority
    return call.priority + int(max(0.0, now - call.enqueued_at) // aging_s)


def queue_order(calls: Iterable[WaitingCall], now: float,
                aging_s: float | None = None) -> list[WaitingCall]:
    return sorted(calls, key=lambda c: (-effective_priority(c, now, aging_s), c.enqueued_at, c.seq))


def first_in_line(calls: Iterable[WaitingCall], now: float,
                  aging_s: float | None = None) -> dict[str, str]:
    """Per skill, the id of the call first in queue order (whose place has come up)."""
    first: dict[str, str] = {}
    for wc in queue_order(calls, now, aging_s):
        first.setdefault(wc.skill, wc.call_id)
    return first


def route(calls: Iterable[WaitingCall], agents: Iterable[IdleAgent], now: float,
          aging_s: float | None = None, rules: Rules = no_rules) -> list[Assignment]:
    """Match waiting calls to available agents; each agent gets at most one call.

    Calls are taken in queue order (:func:`queue_order`) in two passes: first each call
    may go only to a free agent who *prefers* its skill (and is under the service's
    consecutive-offers cap), then to any free agent who may take it (:func:`tier`).
    Among the candidates a call goes to, in this order: an agent with the service's own
    skill before a widened pool before an overflow group; an agent under the service's
    ``max_consecutive_offers`` streak before one at it; the longest idle.
    ``call.excluded`` holds the agents who recently missed or declined the call: they are
    skipped (the caller expires exclusions, so the call comes back to them).
    """
    free = sorted(agents, key=lambda a: (a.idle_since, a.agent_id))
    order = queue_order(calls, now, aging_s)
    out: list[Assignment] = []
    placed: set[str] = set()

    def pick(call: WaitingCall, preferred_only: bool) -> IdleAgent | None:
        limit = rules(call.service)[0].max_consecutive_offers
        best: tuple[int, int] | None = None
        chosen = None
        for agent in free:  # longest idle first: the first of the best key wins
            if preferred_only and call.skill not in agent.preferred:
                continue
            t = tier(call, agent, now, rules)
            if t is None:
                continue
            tired = int(limit is not None and agent.streak[0] == call.service
                        and agent.streak[1] >= limit)
            if preferred_only and tired:
                continue  # the cap comes before the preference (the second pass may still)
            key = (t, tired)
            if best is None or key < best:
                best, chosen = key, agent
                if key == (0, 0):
                    break
        return chosen

    for preferred_only in (True, False):
        for call in order:
            if not free:
                return out
            if call.call_id in placed:
                continue
            chosen = pick(call, preferred_only)
            if chosen is not None:
                free.remove(chosen)
                placed.add(call.call_id)
                out.append(Assignment(call.call_id, chosen.agent_id,
                                      tier(call, chosen, now, rules) or 0))
    return out


def positions(calls: Iterable[WaitingCall], now: float,
              aging_s: float | None = None) -> dict[str, int]:
    """1-based position of each call among the calls competing for the same skill."""
    counters: dict[str, int] = {}
    out: dict[str, int] = {}
    for call in queue_order(calls, now, aging_s):
        counters[call.skill] = counters.get(call.skill, 0) + 1
        out[call.call_id] = counters[call.skill]
    return out


def position_of(call: WaitingCall, others: Iterable[WaitingCall], now: float,
                aging_s: float | None = None) -> int:
    """1-based position of ``call`` among ``others`` for the same skill, in one pass."""
    def key(c: WaitingCall) -> tuple[int, float, int]:
        return (-effective_priority(c, now, aging_s), c.enqueued_at, c.seq)
    mine = key(call)
    return 1 + sum(1 for c in others if c.skill == call.skill and key(c) < mine)


def estimate_wait(position: int, staffed_agents: int, handle_times: Sequence[float],
                  default_handle_s: float = 180.0) -> float:
    """Seconds until a call at ``position`` (1-based) is likely answered: the M/M/n
    expectation (:func:`cloudcounter.queue.erlang.wait_at_position`) with every agent busy,
    ``position · AHT / n``, where AHT is the mean of the recent answer-to-ready durations
    (talk plus wrap-up) of the skill. Against simulated traffic it is closer to the waits
    callers then have than the older ``ceil(position / n) · median − median / 2``
    (docs/routing.md has the comparison, ``loadtests/eta_compare.py`` reproduces it)."""
    if position <= 0:
        return 0.0
    if staffed_agents <= 0:
        return math.inf
    handle = statistics.fmean(handle_times) if handle_times else default_handle_s
    return erlang.wait_at_position(position - 1, staffed_agents, handle)
