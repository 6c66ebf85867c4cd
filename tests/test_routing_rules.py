"""Contact-centre routing rules (issue 15), pure and table-driven: pool widening, overflow
to a second group, agents' preferred skills, a cap on consecutive offers."""

from __future__ import annotations

from cloudcounter.queue.routing import (
    IdleAgent, ServiceRules, WaitingCall, route, tier,
)

RULES = {
    "card_loss": (ServiceRules(fallback_skills=frozenset({"accounts"}),
                               overflow_after_s=120.0, overflow_skills=frozenset({"loans"}),
                               max_consecutive_offers=3), 60.0),
    "password_reset": (ServiceRules(widen_after_s=10.0,
                                    fallback_skills=frozenset({"cards"})), 30.0),
}


def rules(service: str) -> tuple[ServiceRules, float]:
    return RULES.get(service, (ServiceRules(), 60.0))


def call(cid: str, service: str = "card_loss", skill: str = "cards", at: float = 0.0,
         risk: str = "low", excluded: frozenset[int] = frozenset()) -> WaitingCall:
    return WaitingCall(cid, skill, 0, at, 0, excluded, risk, service)


def agent(aid: int, *skills: str, idle: float = 0.0, preferred: tuple[str, ...] = (),
          streak: tuple[str, int] = ("", 0)) -> IdleAgent:
    return IdleAgent(aid, frozenset(skills), idle, frozenset(preferred), streak)


def assigned(calls: list[WaitingCall], agents: list[IdleAgent], now: float) -> dict[str, int]:
    return {a.call_id: a.agent_id for a in route(calls, agents, now, None, rules)}


def test_assignments_name_their_pool() -> None:
    [a] = route([call("c")], [agent(1, "loans")], 200.0, None, rules)
    assert (a.agent_id, a.tier) == (1, 2)


def test_tiers_open_with_the_wait() -> None:
    c = call("c")
    table = [  # agent skills, waited, tier
        (("cards",), 0.0, 0),
        (("accounts",), 59.9, None), (("accounts",), 60.0, 1),  # widened at the target time
        (("loans",), 119.0, None), (("loans",), 120.0, 2),  # overflow group later
        (("accounts", "loans"), 130.0, 1),  # the nearer tier counts
        (("senior",), 500.0, None),  # senior is not a skill of any tier here
    ]
    for skills, waited, expected in table:
        assert tier(c, agent(1, *skills), waited, rules) == expected, (skills, waited)
    # the explicit widening time beats the target time
    reset = call("p", "password_reset", "accounts")
    assert tier(reset, agent(1, "cards"), 9.0, rules) is None
    assert tier(reset, agent(1, "cards"), 10.0, rules) == 1


def test_high_risk_still_needs_a_senior_and_exclusions_hold_in_every_tier() -> None:
    risky = call("r", risk="high")
    assert tier(risky, agent(1, "accounts"), 500.0, rules) is None
    assert tier(risky, agent(1, "accounts", "senior"), 500.0, rules) == 1
    excluded = call("x", excluded=frozenset({1}))
    assert tier(excluded, agent(1, "accounts"), 500.0, rules) is None


def test_the_service_pool_comes_before_a_widened_pool() -> None:
    calls = [call("c")]
    helper = agent(1, "accounts", idle=0.0)  # idle longest, but only a fallback
    own = agent(2, "cards", idle=5.0)
    assert assigned(calls, [helper, own], now=100.0) == {"c": 2}
    assert assigned(calls, [helper], now=100.0) == {"c": 1}
    assert assigned(calls, [helper], now=30.0) == {}  # not yet widened: it waits


def test_preferred_skills_are_served_first() -> None:
    older_cards = call("cards", at=0.0)
    newer_accounts = call("acct", "change_contact", "accounts", at=10.0)
    ann = agent(1, "cards", "accounts", idle=0.0, preferred=("accounts",))
    bob = agent(2, "cards", idle=1.0)
    # ann takes the accounts call she prefers; bob the cards call
    assert assigned([older_cards, newer_accounts], [ann, bob], 20.0) == {"acct": 1, "cards": 2}
    # without the preference, ann (idle longest) takes the older call and the other waits
    plain = agent(1, "cards", "accounts", idle=0.0)
    assert assigned([older_cards, newer_accounts], [plain, bob], 20.0) == {"cards": 1}


def test_a_streak_of_offers_passes_the_next_call_to_another_free_agent() -> None:
    c = call("c")
    tired = agent(1, "cards", idle=0.0, streak=("card_loss", 3))
    fresh = agent(2, "cards", idle=9.0)
    assert assigned([c], [tired, fresh], 1.0) == {"c": 2}
    assert assigned([c], [tired], 1.0) == {"c": 1}  # soft: nobody else is free
    other_service = agent(1, "cards", idle=0.0, streak=("password_reset", 9))
    assert assigned([c], [other_service, fresh], 1.0) == {"c": 1}
    no_limit = call("n", "password_reset", "cards")
    assert assigned([no_limit], [agent(1, "cards", streak=("password_reset", 99)), fresh],
                    1.0) == {"n": 1}


def test_without_rules_routing_is_unchanged() -> None:
    calls = [call("a", "x", "cards", at=0.0), call("b", "x", "cards", at=1.0)]
    agents = [agent(1, "cards", idle=3.0), agent(2, "cards", idle=1.0)]
    assert {a.call_id: a.agent_id for a in route(calls, agents, 5.0)} == {"a": 2, "b": 1}


# -- in the dispatcher, on a fake clock ----------------------------------------------------
async def test_the_dispatcher_widens_the_pool_when_the_wait_reaches_the_target() -> None:
    from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
    from cloudcounter.queue.model import AgentState
    from cloudcounter.queue.ports import MemoryJournal
    from cloudcounter.queue.store import MemoryQueueStore
    from tests.test_dispatcher import Clock, Recorder

    clock = Clock()
    q = Dispatcher(MemoryQueueStore(), Recorder(), MemoryJournal(),  # type: ignore[arg-type]
                   QueueConfig(position_interval_s=1), clock=clock, rules=rules)
    await q.agent_online(1, "acc", frozenset({"accounts"}))
    await q.set_agent_status(1, AgentState.AVAILABLE)
    call, _, _ = await q.request_call(customer_id="c1", service="card_loss", skill="cards")
    assert await q.route_once() == 0  # only an accounts agent is free: not yet
    clock.t += 59
    await q.tick()
    assert await q.route_once() == 0
    clock.t += 1  # the target answer time (60 s): the accounts pool may take it
    await q.tick()
    assert q._kick.is_set()  # the timer asks routing to look again
    assert await q.route_once() == 1
    journal: MemoryJournal = q.journal  # type: ignore[assignment]
    offered = [p for c, _, k, p in journal.events if c == call.call_id and k == "call.offered"]
    assert offered == [{"agent": "acc", "timeout_s": 15.0, "pool": "widened"}]


async def test_the_dispatcher_counts_streaks_and_passes_on_preferences() -> None:
    from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
    from cloudcounter.queue.model import AgentState
    from cloudcounter.queue.ports import MemoryJournal
    from cloudcounter.queue.store import MemoryQueueStore
    from tests.test_dispatcher import Clock, Recorder

    clock = Clock()
    rec = Recorder()
    q = Dispatcher(MemoryQueueStore(), rec, MemoryJournal(),  # type: ignore[arg-type]
                   QueueConfig(wrap_up_s=0), clock=clock, rules=rules)
    await q.agent_online(1, "ann", frozenset({"cards"}), preferred=frozenset({"cards", "x"}))
    assert (await q.store.get_agent(1)).preferred == frozenset({"cards"})  # type: ignore[union-attr]
    await q.set_agent_status(1, AgentState.AVAILABLE)
    clock.t += 1
    await q.agent_online(2, "bob", frozenset({"cards"}))
    await q.set_agent_status(2, AgentState.AVAILABLE)
    for n in range(4):  # ann (idle longest) answers three card_loss calls in a row
        cid = (await q.request_call(customer_id=f"c{n}", service="card_loss",
                                    skill="cards"))[0].call_id
        await q.route_once()
        who = next(a[1].username for name, a in reversed(rec.log) if name == "call_offered")
        assert who == ("ann" if n < 3 else "bob"), n  # the fourth goes to bob
        uid = 1 if who == "ann" else 2
        await q.accept(uid, cid)
        await q.agent_hangup(uid, cid)
        await q.finish_wrap_up(uid, cid, "resolved", "", AgentState.AVAILABLE)
        clock.t += 1
    streaks = {a.agent_id: a.streak for a in await q.store.agents()}
    assert streaks == {1: ("card_loss", 3), 2: ("card_loss", 1)}


async def test_an_agent_signing_in_again_brings_the_current_skills() -> None:
    from cloudcounter.queue.dispatcher import Dispatcher, QueueConfig
    from cloudcounter.queue.ports import MemoryJournal
    from cloudcounter.queue.store import MemoryQueueStore
    from tests.test_dispatcher import Clock, Recorder

    q = Dispatcher(MemoryQueueStore(), Recorder(), MemoryJournal(),  # type: ignore[arg-type]
                   QueueConfig(), clock=Clock())
    await q.agent_online(1, "ann", frozenset({"cards"}))
    await q.agent_offline(1)
    await q.agent_online(1, "ann", frozenset({"cards", "loans"}), preferred=frozenset({"loans"}))
    ann = await q.store.get_agent(1)
    assert ann is not None and (ann.skills, ann.preferred) == (
        frozenset({"cards", "loans"}), frozenset({"loans"}))
