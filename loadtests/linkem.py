"""A userspace link emulator between the root network namespace and a customer's
namespace: loss, delay with jitter and a rate cap, like ``tc netem`` + ``tbf``.

    python loadtests/linkem.py NAMESPACE OUTER_IP INNER_IP '{"loss": 0.05, ...}'

Why not ``tc netem``: the kernel this project's machines run has no ``sch_netem``
(``CONFIG_NET_SCH_NETEM`` is off, modules are not loadable), while TUN devices are
available. The emulator opens two TUN devices, keeps one in the root namespace with
``OUTER_IP/30`` and moves the other into ``NAMESPACE`` with ``INNER_IP/30``; every IP
packet crossing the link passes through this process, which

* drops it with probability ``loss`` (seeded: the same run drops the same packets);
* serializes it at ``rate_kbps`` (a token-bucket-like queue; a packet that would wait
  more than ``queue_ms`` is dropped, as ``tbf latency`` does);
* delivers it ``delay_ms`` ± ``jitter_ms`` (uniform) later, never before the packet sent
  ahead of it (no reordering, as netem with a rate limit).

Each direction is impaired independently with the same parameters. Commands on stdin,
one a line: ``stats`` prints the counters as one JSON line; end of input stops the
emulator (the TUN devices disappear with it). The first line printed is ``{"ready":
true, "outer": NAME, "inner": NAME}`` once both ends are up. Needs root.
"""

from __future__ import annotations

import fcntl
import heapq
import json
import os
import random
import select
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {result.stderr.strip()}")


@dataclass
class Direction:
    """One direction of the link and its counters."""

    name: str
    loss: float
    delay_s: float
    jitter_s: float
    rate_bps: float
    queue_s: float
    packets_in: int = 0
    bytes_in: int = 0
    lost: int = 0  # random loss
    queue_dropped: int = 0  # rate cap exceeded
    delivered: int = 0
    bytes_delivered: int = 0
    _busy_until: float = field(default=0.0, repr=False)
    _last_delivery: float = field(default=0.0, repr=False)

    def schedule(self, size: int, now: float, rng: random.Random) -> float | None:
        """When to deliver a packet of ``size`` bytes arriving ``now`` (None: dropped)."""
        self.packets_in += 1
        self.bytes_in += size
        if rng.random() < self.loss:
            self.lost += 1
            return None
        start = max(now, self._busy_until)
        if start - now > self.queue_s:
            self.queue_dropped += 1
            return None
        self._busy_until = start + size * 8 / self.rate_bps if self.rate_bps else start
        at = self._busy_until + self.delay_s + rng.uniform(-self.jitter_s, self.jitter_s)
        at = max(at, self._last_delivery, self._busy_until)
        self._last_delivery = at
        return at

    def counters(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


def main(namespace: str, outer_ip: str, inner_ip: str, config: dict[str, Any]) -> None:
    tag = f"{os.getpid() % 100000}"
    outer_name, inner_name = f"lem{tag}o", f"lem{tag}i"
    outer, inner = open_tun(outer_name), open_tun(inner_name)
    run("ip", "link", "set", inner_name, "netns", namespace)
    run("ip", "addr", "add", f"{outer_ip}/30", "dev", outer_name)
    run("ip", "link", "set", outer_name, "up")
    run("ip", "netns", "exec", namespace, "ip", "addr", "add", f"{inner_ip}/30", "dev",
        inner_name)
    run("ip", "netns", "exec", namespace, "ip", "link", "set", inner_name, "up")
    params = dict(loss=float(config.get("loss", 0.0)),
                  delay_s=float(config.get("delay_ms", 0.0)) / 1000,
                  jitter_s=float(config.get("jitter_ms", 0.0)) / 1000,
                  rate_bps=float(config.get("rate_kbps", 0.0)) * 1000,
                  queue_s=float(config.get("queue_ms", 300.0)) / 1000)
    up = Direction("uplink", **params)  # customer → hub (inner → outer)
    down = Direction("downlink", **params)  # hub → customer
    rng = random.Random(int(config.get("seed", 1)))
    routes = {inner: (up, outer), outer: (down, inner)}
    pending: list[tuple[float, int, int, bytes]] = []  # (at, order, fd, packet)
    order = 0
    stdin = sys.stdin.fileno()
    print(json.dumps({"ready": True, "outer": outer_name, "inner": inner_name}), flush=True)
    while True:
        now = time.monotonic()
        while pending and pending[0][0] <= now:
            _, _, fd, packet = heapq.heappop(pending)
            direction = up if fd == outer else down
            try:
                os.write(fd, packet)
                direction.delivered += 1
                direction.bytes_delivered += len(packet)
            except OSError:
                pass  # the interface went down: the packet is lost
        timeout = max(0.0, pending[0][0] - now) if pending else 0.5
        readable, _, _ = select.select([inner, outer, stdin], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            if fd == stdin:
                line = sys.stdin.readline()
                if not line:
                    return
                if line.strip() == "stats":
                    print(json.dumps({"uplink": up.counters(), "downlink": down.counters()}),
                          flush=True)
                continue
            direction, target = routes[fd]
            for _ in range(64):  # drain what is there, a bounded batch per wake-up
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:  # the namespace (and the device in it) is gone
                    return
                at = direction.schedule(len(packet), now, rng)
                if at is not None:
                    heapq.heappush(pending, (at, order, target, packet))
                    order += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]))
