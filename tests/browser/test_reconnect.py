"""The customer's page in real Chromium loses its connection to the hub mid-call and comes
back within the grace period: the call goes on, with the same adviser, and the picture too.

The page reaches the hub through a TCP relay run by the test (``Relay``): cutting every
connection it carries and refusing new ones for a while is what a phone going through a
tunnel does to the signalling (media flows over UDP straight to the hub and is kept).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import DESKTOP, PHONE, HubProcess, page_of, sign_in
from .test_web_clients import MEDIA_SETTLED, media_state, video_progress

pytestmark = pytest.mark.browser


class Relay:
    """A TCP relay on ``listen`` (127.0.0.1) to ``target``: ``cut()`` closes every connection it
    carries; while ``offline`` is set, new connections are closed at once."""

    def __init__(self, target: tuple[str, int], listen: str = "127.0.0.1") -> None:
        self.target = target
        self.host = listen
        self.listener = socket.create_server((listen, 0))
        self.port = self.listener.getsockname()[1]
        self.offline = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._closed = False
        self.accepted = 0
        self.refused = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @staticmethod
    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.offline.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.accepted += 1
            with self._lock:
                self._open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        with self._lock:
            self._open.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def cut(self) -> int:
        with self._lock:
            carried = list(self._open)
        for s in carried:
            self._drop(s)
        return len(carried)

    def close(self) -> None:
        self._closed = True
        self.listener.close()
        self.cut()


@pytest.fixture
def relay(hub: HubProcess) -> Iterator[Relay]:
    host, port = hub.url.removeprefix("http://").split(":")
    r = Relay((host, int(port)))
    try:
        yield r
    finally:
        r.close()


def call_detail(hub: HubProcess, call_id: str) -> dict[str, Any]:
    """The auditor's view of a call (timeline included), through the HTTP API."""
    login = urllib.request.Request(
        hub.url + "/api/login", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"username": "audrey", "password": "audrey-demo-1"}).encode())
    with urllib.request.urlopen(login, timeout=10) as r:
        token = json.loads(r.read())["token"]
    get = urllib.request.Request(hub.url + f"/api/calls/{call_id}",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(get, timeout=10) as r:
        return dict(json.loads(r.read()))


def test_the_customer_reconnects_within_the_grace_period_and_the_call_goes_on(
        hub: HubProcess, browser_factory: Any, relay: Relay) -> None:
    agent = page_of(browser_factory("reconnect-agent", **DESKTOP))
    customer = page_of(browser_factory("reconnect-customer", **PHONE))
    sign_in(agent, hub.url + "/agent", "carol", "carol-demo-1")
    agent.wait_for_selector("[data-testid=agent-state][data-state=away]")
    agent.get_by_test_id("status-available").click()

    customer.goto(relay.url + "/customer?customer=cus_demo_eileen")  # through the relay
    customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
    customer.get_by_test_id("service-card_loss").click()
    customer.get_by_test_id("call-button").click()
    customer.wait_for_function("() => !!document.body.dataset.callId")
    call_id = customer.evaluate("document.body.dataset.callId")
    agent.get_by_test_id("incoming-call").wait_for()
    agent.get_by_test_id("accept-button").click()
    customer.wait_for_selector("body[data-view=call]")
    for page in (customer, agent):
        page.wait_for_function(MEDIA_SETTLED, timeout=25_000)
        assert media_state(page) == "connected"
    before = video_progress(customer, "remote-video")

    # the phone loses the hub: every connection cut, new ones refused
    relay.offline.set()
    assert relay.cut() > 0
    customer.wait_for_selector("[data-testid=call-status][data-state=reconnecting]")
    customer.wait_for_selector("[data-testid=notice][data-code=connection_lost]")
    customer.wait_for_function("() => document.body.dataset.view === 'call'")
    relay.offline.clear()  # back online: socket.io reconnects on its own
    customer.wait_for_selector("[data-testid=notice][data-code=reconnected]", timeout=30_000)
    assert relay.accepted >= 2  # the first connection, then the reconnection

    # the same call, the same adviser; the media went on through the cut
    assert customer.evaluate("document.body.dataset.view") == "call"
    assert customer.evaluate("document.body.dataset.callId") == call_id
    assert media_state(customer) == "connected" and media_state(agent) == "connected"
    agent.get_by_test_id("stage-call").wait_for()
    assert not agent.get_by_test_id("wrapup-form").is_visible()
    after = video_progress(customer, "remote-video")
    assert after["t2"] > before["t2"], (before, after)
    # and it stays in the call: another 6 s of the adviser's video (the page once ended
    # the call 4 s after a reconnect when call:state arrived before socket.io's connect)
    customer.wait_for_function(
        f"() => document.querySelector('[data-testid=remote-video]').currentTime > "
        f"{after['t2']} + 6", timeout=30_000)
    assert customer.evaluate("document.body.dataset.view") == "call"
    video_progress(agent, "remote-video")

    agent.get_by_test_id("hangup-button").click()
    customer.wait_for_selector("body[data-view=ended]")
    reason = customer.get_by_test_id("ended-reason")
    assert reason.get_attribute("data-by") == "agent"
    agent.get_by_test_id("wrapup-form").wait_for()
    agent.get_by_test_id("wrapup-submit").click()
    agent.wait_for_selector("[data-testid=agent-state][data-state=available]")
    for page in (customer, agent):
        assert page.js_errors == []

    detail = call_detail(hub, call_id)
    kinds = [e["kind"] for e in detail["timeline"]]
    assert "customer.disconnected" in kinds and "customer.reconnected" in kinds, kinds
    assert kinds.count("call.answered") == 1 and "call.requeued" not in kinds, kinds
    assert detail["call"]["end_reason"] == "completed", detail["call"]
