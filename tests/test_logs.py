"""Structured logs: one JSON object (or readable line) an event, with the call, the agent
and the node when known; secrets never reach the output."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from cloudcounter.hub.auth import StaffIdentity, mint_staff_token
from cloudcounter.logs import configure, log_context

SECRET = "s3cr3t-value-of-the-hub-0123456789"


@pytest.fixture
def output() -> Iterator[tuple[io.StringIO, Any]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()

    def setup(fmt: str) -> io.StringIO:
        stream.seek(0)
        stream.truncate()
        configure("INFO", fmt, "hub-a", [SECRET], stream)
        return stream
    yield stream, setup
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_name_the_call_the_agent_and_the_node(output: Any) -> None:
    _, setup = output
    stream = setup("json")
    log = logging.getLogger("cloudcounter.test")
    with log_context(call_id="call_00000000000000aa", actor="agent:alice", agent="alice"):
        log.warning("media stalled")
    log.info("call %s: ended", "call_00000000000000bb")  # found in the message
    log.info("no call here", extra={"agent": "bob"})
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third, fourth = lines(stream)
    assert first == {**first, "level": "warning", "logger": "cloudcounter.test",
                     "message": "media stalled", "call_id": "call_00000000000000aa",
                     "agent": "alice", "actor": "agent:alice", "node": "hub-a"}
    assert second["call_id"] == "call_00000000000000bb" and "agent" not in second
    assert third["agent"] == "bob" and "call_id" not in third
    assert "ValueError: boom" in fourth["exception"]


def test_secrets_are_masked(output: Any) -> None:
    _, setup = output
    stream = setup("json")
    token = mint_staff_token("k" * 40, StaffIdentity(1, "alice", "agent"), 60)
    log = logging.getLogger("cloudcounter.test")
    log.error("settings %s", SECRET)
    log.error("header Authorization: Bearer %s", token)
    log.error("login body password=hunter2-long-phrase otp=123456")
    log.error("refresh rt_%s and webhook whsec_%s", "A" * 40, "B" * 40)
    text = stream.getvalue()
    for leaked in (SECRET, token, "hunter2", "123456", "A" * 40, "B" * 40):
        assert leaked not in text
    assert text.count("[redacted]") >= 6


def test_text_lines_are_readable(output: Any) -> None:
    _, setup = output
    stream = setup("text")
    with log_context(call_id="call_00000000000000cc", actor="agent:carol", agent="carol"):
        logging.getLogger("cloudcounter.test").warning("hello %s", SECRET)
    line = stream.getvalue().strip()
    assert "WARNING cloudcounter.test [call_id=call_00000000000000cc agent=carol]: hello " \
           "[redacted]" in line


@pytest.mark.integration
async def test_a_refused_socket_message_is_logged_with_its_call_and_agent(
        hub_factory: Any, output: Any) -> None:
    _, setup = output
    hub = await hub_factory(vision_workers=0)
    stream = setup("json")
    from cloudcounter.sim.client import Connection
    conn = Connection(hub.url, "/agent", await hub.agent_token("alice"))
    await conn.connect()
    try:
        reply = await conn.call("call:note", {"call_id": "call_0000000000000abc", "text": "x"})
        assert reply["error"]["code"] == "unknown_call"
    finally:
        await conn.close()
    refused = [entry for entry in lines(stream) if "refused" in entry["message"]]
    assert refused and refused[0]["call_id"] == "call_0000000000000abc"
    assert refused[0]["agent"] == "alice" and refused[0]["node"] == "hub-a"
