"""The customer's Chromium changes networks mid-call (Wi-Fi to 4G), for real.

Chromium runs inside a network namespace (``ip netns exec`` as its executable) with two
veth links to this machine; the hub's address for it (10.231.50.1, reached through a
TCP relay for the web page and the signalling, directly over UDP for media) is routed
over whichever link is up. The test takes the Wi-Fi link down and its address away and
brings 4G up: the page's media path and its WebSocket die; it reconnects, the hub asks
for a new leg, and the call goes on with the same adviser. Slow tier (about a minute);
skipped without root or ``ip netns``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from datetime import datetime
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import BASE_ARGS, CHROMIUM, CLI, DESKTOP, PHONE, ROOT, HubProcess, page_of, \
    sign_in
from .test_reconnect import Relay, call_detail
from .test_web_clients import MEDIA_SETTLED, media_state, video_progress

sys.path.insert(0, str(ROOT))
from tests.netlab import Namespace, namespace, require_netns  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SERVICE_IP = "10.231.50.1"  # the hub as the phone sees it, on either network


@pytest.fixture
def phone_net() -> Iterator[Namespace]:
    require_netns()
    with namespace("ccbr", {"wifi": 51, "lte": 52}) as ns:
        wifi = ns.links["wifi"]
        subprocess.run(["ip", "addr", "add", f"{SERVICE_IP}/32", "dev", wifi.outer],
                       check=True)
        ns.up("wifi")
        ns.run("ip", "route", "add", "default", "via", wifi.outer_ip)
        yield ns


@pytest.fixture
def media_hub(tmp_path: Path, phone_net: Namespace) -> Iterator[HubProcess]:
    """A demo hub whose media also answers on the phone's service address."""
    port = Relay.free_port()
    env = {**os.environ, "CLOUDCOUNTER_DEMO": "1",
           "CLOUDCOUNTER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/hub.db",
           "CLOUDCOUNTER_RECORDINGS_DIR": str(tmp_path / "rec"),
           "CLOUDCOUNTER_MEDIA_HOST_ADDRESSES": f"127.0.0.1,{SERVICE_IP}",
           "CLOUDCOUNTER_ICE_SERVERS": "[]", "CLOUDCOUNTER_WRAP_UP_S": "5",
           "CLOUDCOUNTER_VISION_WORKERS": "0", "CLOUDCOUNTER_LOG_LEVEL": "WARNING"}
    for cmd in (["db", "upgrade"], ["demo", "seed"]):
        subprocess.run([str(CLI), *cmd], cwd=ROOT, env=env, check=True, capture_output=True,
                       timeout=120)
    log = tmp_path / "hub.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(CLI), "serve", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    hub = HubProcess(f"http://127.0.0.1:{port}", env, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, hub.log_tail()
            try:
                if hub.get("/healthz").get("ok"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, hub.log_tail()
            time.sleep(0.2)
        yield hub
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def phone_browser(pw: Any, ns: Namespace, tmp: Path, camera: Path, origin: str) -> Any:
    """Chromium in the namespace: its executable is a wrapper around ``ip netns exec``."""
    wrapper = tmp / "chromium-in-netns"
    wrapper.write_text(f"#!/bin/sh\nexec ip netns exec {ns.name} {CHROMIUM} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    args = [*BASE_ARGS, f"--use-file-for-fake-video-capture={camera}",
            "--use-fake-ui-for-media-stream",
            f"--unsafely-treat-insecure-origin-as-secure={origin}"]  # the camera needs it
    return pw.chromium.launch_persistent_context(
        str(tmp / "phone-profile"), executable_path=str(wrapper), headless=True, args=args,
        locale="en-GB", timezone_id="UTC", **PHONE)


def test_the_customer_switches_networks_and_the_call_goes_on(
        media_hub: HubProcess, phone_net: Namespace, playwright: Any, browser_factory: Any,
        fake_camera: Path, tmp_path: Path) -> None:
    host, port = media_hub.url.removeprefix("http://").split(":")
    relay = Relay((host, int(port)), listen=SERVICE_IP)
    phone = phone_browser(playwright, phone_net, tmp_path, fake_camera, relay.url)
    try:
        agent = page_of(browser_factory("netchange-agent", **DESKTOP))
        customer = page_of(phone)
        console: list[str] = []
        customer.on("console", lambda m: console.append(f"{time.monotonic():.1f} {m.text}"))
        sign_in(agent, media_hub.url + "/agent", "carol", "carol-demo-1")
        agent.wait_for_selector("[data-testid=agent-state][data-state=away]")
        agent.get_by_test_id("status-available").click()

        customer.goto(relay.url + "/customer?customer=cus_demo_eileen")
        customer.wait_for_selector("[data-testid=call-status][data-state=ready]")
        customer.get_by_test_id("service-card_loss").click()
        customer.get_by_test_id("call-button").click()
        customer.wait_for_function("() => !!document.body.dataset.callId")
        call_id = customer.evaluate("document.body.dataset.callId")
        agent.get_by_test_id("incoming-call").wait_for()
        agent.get_by_test_id("accept-button").click()
        customer.wait_for_selector("body[data-view=call]")
        for page in (customer, agent):
            page.wait_for_function(MEDIA_SETTLED, timeout=30_000)
            assert media_state(page) == "connected"
        video_progress(agent, "remote-video")

        # Wi-Fi gone, 4G up: a new address, a new route to the hub
        lte = phone_net.links["lte"]
        phone_net.down("wifi")
        phone_net.up("lte")
        phone_net.run("ip", "route", "replace", "default", "via", lte.outer_ip)
        switched = time.monotonic()

        # the hub asks for a new leg (media stalled) or the page offers one after it
        # reconnects; either way a renegotiated customer leg must carry video again
        def renegotiated() -> bool:
            timeline = call_detail(media_hub, call_id)["timeline"]
            return any(e["kind"] == "media.negotiated" and e["payload"]["role"] == "customer"
                       and e["payload"]["renegotiated"] for e in timeline)

        deadline = time.monotonic() + 90
        while not renegotiated():
            assert time.monotonic() < deadline, "no new customer leg after the switch"
            agent.wait_for_timeout(500)
        customer.wait_for_function(
            "() => document.body.dataset.mediaState === 'connected'", timeout=60_000)
        t0 = agent.eval_on_selector("[data-testid=remote-video]", "v => v.currentTime")
        agent.wait_for_function(
            f"() => document.querySelector('[data-testid=remote-video]').currentTime > {t0} + 1",
            timeout=30_000)
        print(f"network change: video again at the agent {time.monotonic() - switched:.1f} s "
              "after the switch (figure, not asserted); the hub's timeline from the switch:")
        switched_at = time.time() - (time.monotonic() - switched)
        for e in call_detail(media_hub, call_id)["timeline"]:
            at = datetime.fromisoformat(e["at"]).timestamp() - switched_at
            if at > -1:
                print(f"  {at:+6.1f} s  {e['kind']}  {e['payload']}")
        video_progress(customer, "remote-video")
        assert customer.evaluate("document.body.dataset.callId") == call_id
        view = customer.evaluate("document.body.dataset.view")
        if view != "call":
            reason = customer.get_by_test_id("ended-reason")
            kinds = [(e["kind"], e["payload"]) for e in
                     call_detail(media_hub, call_id)["timeline"][-12:]]
            raise AssertionError(f"the customer's page left the call: {view}, "
                                 f"{reason.get_attribute('data-reason')} "
                                 f"{reason.get_attribute('data-by')}; timeline {kinds}; "
                                 f"switched at {switched:.1f}; console {console[-30:]}")

        agent.get_by_test_id("hangup-button").click()
        customer.wait_for_selector("body[data-view=ended]")
        agent.get_by_test_id("wrapup-form").wait_for()
        agent.get_by_test_id("wrapup-submit").click()
        detail = call_detail(media_hub, call_id)
        kinds = [e["kind"] for e in detail["timeline"]]
        assert kinds.count("call.answered") == 1 and "call.requeued" not in kinds, kinds
        assert detail["call"]["end_reason"] == "completed", detail["call"]
        assert len({r["participant"] for r in detail["recordings"]}) == 2
    finally:
        phone.close()
        relay.close()
