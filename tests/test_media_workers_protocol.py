"""The media workers' internal protocol against fixed examples, the channel over a real
Unix socket pair, and placement and backoff (pure)."""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest

from cloudcounter.errors import InvalidState
from cloudcounter.media.workers.placement import WorkerView, choose
from cloudcounter.media.workers.protocol import (
    MAX_HEADER, Channel, ProtocolError, RemoteFailure, WorkerGone, WorkerTimeout,
    decode_header, encode,
)
from cloudcounter.media.workers.supervisor import BACKOFF_MAX_S, next_backoff


def test_a_frame_is_two_lengths_a_json_header_and_a_payload() -> None:
    frame = encode({"t": "ev", "e": "keyframe", "a": {"media": "c1", "role": "customer"}},
                   b"\x01\x02")
    body = b'{"t":"ev","e":"keyframe","a":{"media":"c1","role":"customer"}}'
    assert frame == struct.pack("!II", len(body), 2) + body + b"\x01\x02"


@pytest.mark.parametrize("body", [
    b"[]", b"not json", b'{"t":"req","id":"1","m":"x","a":{}}', b'{"t":"req","id":1,"a":{}}',
    b'{"t":"ev","e":"x"}', b'{"t":"res","id":1}', b'{"t":"bye"}'])
def test_malformed_headers_are_refused_with_a_code(body: bytes) -> None:
    with pytest.raises(ProtocolError) as err:
        decode_header(body)
    assert err.value.code == "worker_protocol"


def test_an_oversized_header_is_refused() -> None:
    with pytest.raises(ProtocolError):
        encode({"t": "ev", "e": "x", "a": {"sdp": "x" * MAX_HEADER}})


async def pair(handler: Any = None, on_event: Any = None) -> tuple[Channel, Channel, list[Any]]:
    a, b = socket.socketpair()
    ra, wa = await asyncio.open_unix_connection(sock=a)
    rb, wb = await asyncio.open_unix_connection(sock=b)
    hub = Channel(ra, wa, name="hub")
    worker = Channel(rb, wb, handler=handler, on_event=on_event, name="worker")
    tasks = [asyncio.create_task(hub.run()), asyncio.create_task(worker.run())]
    return hub, worker, tasks


async def test_requests_are_answered_once_with_results_or_error_codes() -> None:
    events: list[tuple[str, dict[str, Any], bytes]] = []

    async def handler(method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "answer":
            return {"sdp": "v=0 " + args["offer"]}
        if method == "slow":
            await asyncio.sleep(30)
        raise InvalidState("no such call on this worker", code="no_media")
    hub, worker, tasks = await pair(handler, lambda e, a, p: events.append((e, a, p)))
    assert await hub.request("answer", {"offer": "o"}) == {"sdp": "v=0 o"}
    with pytest.raises(RemoteFailure) as err:
        await hub.request("close", {})
    assert (err.value.code, err.value.http_status) == ("no_media", 409)
    with pytest.raises(WorkerTimeout):
        await hub.request("slow", {}, timeout_s=0.2)
    assert hub.notify("frame", {"media": "c1"}, b"\x00" * 10, lossy=True)
    await asyncio.sleep(0)
    for _ in range(100):
        if events:
            break
        await asyncio.sleep(0.01)
    assert events == [("frame", {"media": "c1"}, b"\x00" * 10)]
    lost: list[bool] = []
    hub.on_closed = lambda: lost.append(True)
    await worker.close()  # the worker dies: waiting and later requests fail at once
    with pytest.raises(WorkerGone):
        await hub.request("answer", {"offer": "o"})
    await asyncio.gather(*tasks)
    assert lost == [True] and hub.closed


def view(wid: str, calls: int = 0, cpu: float = 0.0, alive: bool = True,
         draining: bool = False, capacity: int = 10) -> WorkerView:
    return WorkerView(wid, alive, draining, calls, capacity, cpu)


def test_a_new_call_goes_to_the_most_spare_capacity() -> None:
    assert choose([view("a", calls=3), view("b", calls=1)]) == "b"
    assert choose([view("a", calls=1, cpu=0.9), view("b", calls=4, cpu=0.2)]) == "b"
    assert choose([view("a"), view("b")]) == "a"  # a tie: the id, so it is stable


def test_no_call_to_a_worker_without_a_lease_draining_or_full() -> None:
    assert choose([view("a", alive=False), view("b", calls=9)]) == "b"
    assert choose([view("a", draining=True), view("b", calls=5)]) == "b"
    assert choose([view("a", calls=10), view("b", alive=False), view("c", draining=True)]) \
        is None
    assert choose([]) is None


def test_restarts_back_off_after_crashes_and_not_after_a_clean_exit() -> None:
    assert next_backoff(0.0, 1.0, clean=True) == 0.0
    waits = [0.0]
    for _ in range(10):
        waits.append(next_backoff(waits[-1], 1.0, clean=False))
    assert waits[1] == 0.5 and waits[2] == 1.0 and waits[-1] == BACKOFF_MAX_S
    assert next_backoff(BACKOFF_MAX_S, 3600.0, clean=False) == 0.0  # it ran for an hour


def test_a_worker_silent_for_three_leases_is_frozen() -> None:
    from cloudcounter.media.workers.supervisor import frozen

    assert not frozen(100.0, 108.9, 3.0) and frozen(100.0, 109.1, 3.0)
