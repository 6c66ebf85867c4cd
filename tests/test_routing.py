"""Routing and wait estimates: pure functions, tested without I/O."""

from __future__ import annotations

import math

from cloudcounter.agents.skills import SENIOR
from cloudcounter.queue.routing import (
    Assignment, IdleAgent, WaitingCall, eligible, estimate_wait, needed_skills, positions,
    queue_order, route, staffed,
)

CARDS = frozenset({"cards"})
LOANS = frozenset({"loans"})
BOTH = CARDS | LOANS


def call(cid: str, skill: str = "cards", prio: int = 0, at: float = 0.0, seq: int = 0,
         excluded: frozenset[int] = frozenset()) -> WaitingCall:
    return WaitingCall(cid, skill, prio, at, seq, excluded)


def test_highest_priority_first_then_longest_waiting() -> None:
    calls = [call("old-low", prio=0, at=1), call("new-high", prio=5, at=9),
             call("older-high", prio=5, at=3), call("oldest-low", prio=0, at=0)]
    order = [c.call_id for c in queue_order(calls, now=10)]
    assert order == ["older-high", "new-high", "oldest-low", "old-low"]


def test_same_instant_broken_by_sequence() -> None:
    calls = [call("b", at=1, seq=2), call("a", at=1, seq=1)]
    assert [c.call_id for c in queue_order(calls, now=2)] == ["a", "b"]


def test_longest_idle_agent_with_the_skill_gets_the_call() -> None:
    agents = [IdleAgent(1, CARDS, idle_since=50), IdleAgent(2, CARDS, idle_since=10),
              IdleAgent(3, LOANS, idle_since=0)]
    assert route([call("c1")], agents, now=60) == [Assignment("c1", 2)]


def test_each_agent_gets_at_most_one_call_and_skills_are_respected() -> None:
    calls = [call("card1", at=0), call("card2", at=1), call("loan1", "loans", at=2)]
    agents = [IdleAgent(1, BOTH, 0), IdleAgent(2, LOANS, 5)]
    got = route(calls, agents, now=10)
    # card1 takes the longest-idle agent (1, who can do both); loan1 goes to agent 2;
    # card2 waits because nobody else has the cards skill.
    assert got == [Assignment("card1", 1), Assignment("loan1", 2)]


def test_no_agent_with_the_skill_means_no_assignment() -> None:
    assert route([call("c", "loans")], [IdleAgent(1, CARDS, 0)], now=1) == []
    assert route([], [IdleAgent(1, CARDS, 0)], now=1) == []
    assert route([call("c")], [], now=1) == []


def test_excluded_agent_is_skipped_for_that_call_only() -> None:
    calls = [call("c1", at=0, excluded=frozenset({1})), call("c2", at=1)]
    agents = [IdleAgent(1, CARDS, 0), IdleAgent(2, CARDS, 5)]
    assert route(calls, agents, now=10) == [Assignment("c1", 2), Assignment("c2", 1)]
    # the excluded agent alone: the call waits instead of bouncing back at once
    assert route([call("c1", excluded=frozenset({1}))], [IdleAgent(1, CARDS, 0)], now=1) == []


def test_aging_lifts_a_long_waiting_low_priority_call() -> None:
    calls = [call("low-waited-long", prio=0, at=0), call("high-new", prio=1, at=590)]
    assert queue_order(calls, now=600, aging_s=None)[0].call_id == "high-new"
    # 600 s of waiting at 300 s per level: priority 0 becomes 2 and overtakes 1.
    assert queue_order(calls, now=600, aging_s=300)[0].call_id == "low-waited-long"


def test_positions_count_per_skill() -> None:
    calls = [call("c1", at=0), call("l1", "loans", at=1), call("c2", at=2),
             call("c0", prio=3, at=5)]
    assert positions(calls, now=10) == {"c0": 1, "c1": 2, "c2": 3, "l1": 1}


def test_estimate_wait_is_the_erlang_expectation_for_the_position() -> None:
    # mean handle time 100 s; one agent frees up every 100 / n seconds on average
    times = [90.0, 100.0, 110.0, 105.0, 95.0]
    assert estimate_wait(1, 1, times) == 100.0
    assert estimate_wait(3, 1, times) == 300.0
    assert estimate_wait(3, 3, times) == 100.0
    assert estimate_wait(6, 4, times) == 150.0
    assert estimate_wait(0, 2, times) == 0.0
    assert estimate_wait(1, 1, [], default_handle_s=180) == 180.0
    assert math.isinf(estimate_wait(1, 0, times))


def test_position_of_one_call_agrees_with_positions_of_all() -> None:
    from cloudcounter.queue.routing import position_of
    calls = [call("c1", at=0), call("l1", "loans", at=1), call("c2", at=2),
             call("c0", prio=3, at=5), call("c3", at=3, seq=1), call("c4", at=3, seq=2)]
    everyone = positions(calls, now=10)
    for c in calls:
        assert position_of(c, [o for o in calls if o is not c], now=10) == everyone[c.call_id]


# -- customers whose record says high risk: senior agents only ------------------------------
def test_high_risk_customers_go_to_senior_agents_only() -> None:
    risky = WaitingCall("risky", "cards", 5, 0.0, 1, frozenset(), customer_risk="high")
    plain = WaitingCall("plain", "cards", 0, 1.0, 2)
    junior = IdleAgent(1, CARDS, idle_since=0.0)  # idle longest
    senior = IdleAgent(2, CARDS | {SENIOR}, idle_since=5.0)
    assert route([risky, plain], [junior, senior], now=10) == [
        Assignment("risky", 2), Assignment("plain", 1)]
    assert route([risky], [junior], now=10) == []  # waits for a senior agent
    assert route([risky], [IdleAgent(3, frozenset({SENIOR}), 0.0)], now=10) == []  # and skill
    assert needed_skills("cards", "high") == {"cards", SENIOR}
    assert needed_skills("cards", "medium") == {"cards"}
    assert staffed([CARDS, CARDS | {SENIOR}, LOANS | {SENIOR}], needed_skills("cards", "high")) \
        == 1
    assert eligible(plain, senior) and not eligible(risky, junior)
