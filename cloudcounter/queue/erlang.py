"""Erlang C: the queueing model of a contact centre (M/M/n: Poisson arrivals, exponential
handle times, ``n`` agents, callers wait). Pure functions over floats.

* ``traffic`` (erlangs) = arrival rate × average handle time;
* :func:`erlang_c`: the probability that a caller has to wait;
* :func:`service_level`: the share answered within a target time;
* :func:`average_speed_of_answer`: the mean wait over all callers;
* :func:`agents_needed`: the fewest agents that reach a service-level target;
* :func:`wait_at_position`: the expected wait of a caller with ``k`` callers ahead when
  every agent is busy (what a waiting customer is told).

The probability is computed with the Erlang B recursion (stable for hundreds of agents,
no factorials): ``B(0) = 1``, ``B(k) = a·B(k-1) / (k + a·B(k-1))``, then
``C = n·B / (n - a·(1 - B))``.
"""

from __future__ import annotations

import math

MAX_AGENTS = 10_000


def erlang_b(traffic: float, agents: int) -> float:
    """Blocking probability of ``agents`` servers offered ``traffic`` erlangs."""
    if traffic < 0 or agents < 0:
        raise ValueError("traffic and agents must not be negative")
    b = 1.0
    for k in range(1, agents + 1):
        b = traffic * b / (k + traffic * b)
    return b


def erlang_c(traffic: float, agents: int) -> float:
    """Probability that a caller waits; 1.0 when the agents cannot keep up (a ≥ n)."""
    if agents <= 0 or traffic >= agents:
        return 1.0
    if traffic <= 0:
        return 0.0
    b = erlang_b(traffic, agents)
    return agents * b / (agents - traffic * (1.0 - b))


def service_level(traffic: float, agents: int, handle_s: float, target_s: float) -> float:
    """Share of callers answered within ``target_s`` seconds."""
    if agents <= 0 or traffic >= agents:
        return 0.0
    if handle_s <= 0:
        return 1.0
    c = erlang_c(traffic, agents)
    return max(0.0, 1.0 - c * math.exp(-(agents - traffic) * target_s / handle_s))


def average_speed_of_answer(traffic: float, agents: int, handle_s: float) -> float:
    """Mean wait in seconds over all callers (inf when the agents cannot keep up)."""
    if agents <= 0 or traffic >= agents:
        return math.inf
    return erlang_c(traffic, agents) * handle_s / (agents - traffic)


def agents_needed(arrivals_per_s: float, handle_s: float, target_s: float,
                  target_level: float = 0.8, max_occupancy: float = 1.0) -> int:
    """The fewest agents that answer ``target_level`` of callers within ``target_s`` (and
    keep occupancy at most ``max_occupancy``); 0 when no calls arrive."""
    if not 0 < target_level < 1:
        raise ValueError("target_level is a share between 0 and 1")
    traffic = arrivals_per_s * handle_s
    if traffic <= 0:
        return 0
    n = max(1, math.floor(traffic) + 1, math.ceil(traffic / max_occupancy))
    while n < MAX_AGENTS:
        if service_level(traffic, n, handle_s, target_s) >= target_level:
            return n
        n += 1
    return MAX_AGENTS


def wait_at_position(ahead: int, agents: int, handle_s: float) -> float:
    """Expected wait of a caller with ``ahead`` callers in front of it while all
    ``agents`` are busy: one agent frees up every ``handle_s / agents`` seconds on average,
    and the caller needs ``ahead + 1`` of them (inf without agents)."""
    if agents <= 0:
        return math.inf
    return (ahead + 1) * handle_s / agents
