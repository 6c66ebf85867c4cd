"""Compare the queue's wait estimates against simulated traffic (docs/routing.md).

An M/M/n contact centre (Poisson arrivals, exponential handle times, FIFO, no abandons) is
simulated call by call; at each arrival both estimators see what the hub sees — the call's
position, the agents serving, how many of them are busy, the last 50 handle times — and
their estimate is compared with the wait the call then has:

* ``position``: the earlier estimate: ``ceil(pos / n) · h − h / 2`` with the median handle
  time ``h``;
* ``hub``: the estimate the hub gives now (``routing.estimate_wait``, the M/M/n
  expectation for the position): ``position · AHT / n`` with the mean handle time;
* ``erlang``: the same, but 0 when an agent is free (the hub does not count free agents:
  a call that finds one is answered at once, so its estimate is shown for an instant).

Prints mean absolute error and bias (seconds) per load, for all calls and for the calls that
waited. Deterministic (seeded): ``python loadtests/eta_compare.py [--calls N]``.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
from collections import deque

from cloudcounter.queue import erlang, routing

AHT = 180.0


def earlier_estimate(position: int, agents: int, times: list[float]) -> float:
    handle = statistics.median(times) if times else AHT
    return math.ceil(position / agents) * handle - handle / 2


def simulate(agents: int, load: float, calls: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    rate = load * agents / AHT
    free_at = [0.0] * agents  # heap of times agents become free
    heapq.heapify(free_at)
    recent: deque[float] = deque(maxlen=50)
    done: list[tuple[float, float]] = []  # (end time, handle) of calls, for `recent`
    waiting_ends: deque[float] = deque()  # start times of calls still waiting, FIFO
    t = 0.0
    out: dict[str, list[float]] = {"actual": [], "position": [], "hub": [], "erlang": []}
    for _ in range(calls):
        t += rng.expovariate(rate)
        while done and done[0][0] <= t:  # handles finished by now are known to the hub
            recent.append(heapq.heappop(done)[1])
        while waiting_ends and waiting_ends[0] <= t:
            waiting_ends.popleft()
        busy = sum(1 for f in free_at if f > t)
        ahead = len(waiting_ends)
        position = ahead + 1
        start = max(t, heapq.heappop(free_at))
        handle = rng.expovariate(1 / AHT)
        heapq.heappush(free_at, start + handle)
        heapq.heappush(done, (start + handle, handle))
        if start > t:
            waiting_ends.append(start)
        times = list(recent)
        out["actual"].append(start - t)
        out["position"].append(earlier_estimate(position, agents, times))
        out["hub"].append(routing.estimate_wait(position, agents, times, AHT))
        mean = statistics.fmean(times) if times else AHT
        out["erlang"].append(0.0 if busy < agents and ahead == 0
                             else erlang.wait_at_position(ahead, agents, mean))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    keys = ("position", "hub", "erlang")
    head = "".join(f"{k:>9}" for k in keys)
    print(f"{'agents':>6} {'load':>5} {'waited':>7} | {'MAE, all calls (s)':>27} | "
          f"{'MAE, calls that waited (s)':>27} | {'bias, calls that waited (s)':>27}")
    print(f"{'':>6} {'':>5} {'':>7} | {head} | {head} | {head}")
    for agents in (5, 20):
        for load in (0.7, 0.85, 0.95):
            r = simulate(agents, load, args.calls, seed=agents * 100 + int(load * 100))
            waited = [i for i, a in enumerate(r["actual"]) if a > 0]

            def mae(key: str, idx: list[int]) -> float:
                return statistics.fmean(abs(r[key][i] - r["actual"][i]) for i in idx)

            def bias(key: str, idx: list[int]) -> float:
                return statistics.fmean(r[key][i] - r["actual"][i] for i in idx)
            every = list(range(len(r["actual"])))
            print(f"{agents:>6} {load:>5.2f} {len(waited) / len(every):>7.1%} | "
                  + "".join(f"{mae(k, every):>9.1f}" for k in keys) + " | "
                  + "".join(f"{mae(k, waited):>9.1f}" for k in keys) + " | "
                  + "".join(f"{bias(k, waited):>9.1f}" for k in keys))


if __name__ == "__main__":
    main()
