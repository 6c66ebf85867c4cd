"""Erlang C against published worked examples, and the staffing search."""

from __future__ import annotations

import math

import pytest

from cloudcounter.queue import erlang


@pytest.mark.parametrize("traffic, agents, expected", [
    (2.0, 3, 4 / 9),  # ErlangC[3, 2] (Wolfram's documentation example)
    (6.0, 10, 0.1013),  # 120 customers an hour, 3 minutes each, 10 servers: "about 0.10"
    (48.0, 55, 0.2387),  # 0.2 calls/s, 240 s, 55 agents (the Maxima erlang.mac example)
    (10.0, 11, 0.6821),  # 100 calls in 30 min, 180 s: the textbook staffing table
    (10.0, 14, 0.1741),
])
def test_probability_of_waiting(traffic: float, agents: int, expected: float) -> None:
    assert erlang.erlang_c(traffic, agents) == pytest.approx(expected, abs=5e-4)


def test_service_level_and_speed_of_answer_of_the_published_example() -> None:
    # 0.2 calls/s, 240 s handle time, 55 agents: mean wait 8.184 s, 84.59 % within 15 s
    assert erlang.average_speed_of_answer(48.0, 55, 240.0) == pytest.approx(8.184, abs=1e-3)
    assert erlang.service_level(48.0, 55, 240.0, 15.0) == pytest.approx(0.8459, abs=1e-4)


def test_staffing_for_eighty_percent_in_twenty_seconds() -> None:
    # 100 calls in 30 minutes, 180 s each: 13 agents give 79.6 %, 14 give 88.8 %
    assert erlang.service_level(10.0, 13, 180.0, 20.0) == pytest.approx(0.7956, abs=1e-4)
    assert erlang.agents_needed(100 / 1800, 180.0, 20.0, 0.8) == 14
    # 30 calls an hour of 5 minutes, 90 % not delayed at all: 6 agents
    assert erlang.agents_needed(30 / 3600, 300.0, 0.0, 0.9) == 6
    assert erlang.agents_needed(0.0, 180.0, 20.0) == 0
    # occupancy cap: 10 erlangs at most 85 % busy need at least 12 agents
    assert erlang.agents_needed(100 / 1800, 180.0, 600.0, 0.5, max_occupancy=0.85) == 12


def test_overload_and_edges() -> None:
    assert erlang.erlang_c(5.0, 5) == 1.0 and erlang.erlang_c(0.0, 3) == 0.0
    assert erlang.service_level(12.0, 10, 180.0, 20.0) == 0.0
    assert math.isinf(erlang.average_speed_of_answer(12.0, 10, 180.0))
    assert 0 < erlang.erlang_c(900.0, 1000) < 1e-3  # stable for large centres (no overflow)
    assert erlang.wait_at_position(0, 4, 200.0) == 50.0
    assert erlang.wait_at_position(7, 4, 200.0) == 400.0
    assert math.isinf(erlang.wait_at_position(3, 0, 200.0))
    with pytest.raises(ValueError):
        erlang.agents_needed(1.0, 10.0, 10.0, 1.5)


def test_the_hub_estimate_beats_the_earlier_one_on_simulated_traffic() -> None:
    """The comparison of docs/routing.md, small (seeded: the same figures every run)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "loadtests" / "eta_compare.py"
    spec = importlib.util.spec_from_file_location("eta_compare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for agents, load in ((5, 0.85), (20, 0.85)):
        r = module.simulate(agents, load, 3000, seed=7)
        waited = [i for i, a in enumerate(r["actual"]) if a > 0]
        error = {k: sum(abs(r[k][i] - r["actual"][i]) for i in waited) / len(waited)
                 for k in ("position", "hub")}
        assert error["hub"] < error["position"], (agents, load, error)
