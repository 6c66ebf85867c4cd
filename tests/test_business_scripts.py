"""Service scripts as data: validation of imported documents, rendering of facts."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudcounter.business.scripts import (
    MISSING, StepKind, parse_script, render, text_sha256,
)
from cloudcounter.errors import InvalidMessage

DATA = Path(__file__).resolve().parent.parent / "cloudcounter/business/data/scripts"


def doc(*steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"title": "Test", "steps": list(steps), **extra}


STEP = {"id": "s1", "kind": "action", "text": "Do it."}


@pytest.mark.parametrize("path", sorted(DATA.glob("*.yaml")), ids=lambda p: p.stem)
def test_seeded_scripts_are_valid(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    script = parse_script(data, path.stem)
    assert script.service == path.stem and script.steps
    assert any(s.kind is StepKind.CONFIRM_STATEMENT for s in script.steps)
    assert parse_script(script.to_dict(), path.stem) == script  # export/import round trip


@pytest.mark.parametrize("data, fragment", [
    (doc({"id": "s1", "kind": "teleport", "text": "x"}), "steps.0.kind"),
    (doc({"id": "s1", "kind": "action"}), "steps.0.text: Field required"),
    (doc({"id": "s1", "kind": "action", "text": "   "}), "steps.0.text"),
    (doc(STEP, STEP), "duplicate step id 's1'"),
    (doc(), "steps"),
    (doc({"id": "S 1", "kind": "action", "text": "x"}), "steps.0.id"),
    (doc({"id": "q", "kind": "question", "text": "Sure?"}), "needs 'options'"),
    (doc({"id": "q", "kind": "question", "text": "Sure?", "concern_if": ["maybe"],
          "options": [{"value": "yes", "label": "Yes"}, {"value": "no", "label": "No"}]}),
     "unknown option"),
    (doc({"id": "s1", "kind": "action", "text": "x", "options": [
        {"value": "a", "label": "A"}, {"value": "b", "label": "B"}]}), "only a question"),
    (doc({"id": "s1", "kind": "lookup", "text": "x", "account_change": "phone"}),
     "only an action"),
    (doc({"id": "s1", "kind": "action", "text": "Card {pin}"}), "unknown fact {pin}"),
    (doc({"id": "s1", "kind": "action", "text": "Card {card_last4:>8}"}), "malformed"),
    (doc({"id": "s1", "kind": "action", "text": "bad\x00text"}), "U+0000"),
    (doc(STEP, colour="red"), "colour"),
    (doc(STEP, service="card_loss"), "not 'password_reset'"),
    ([STEP], "a script is a mapping"),
])
def test_invalid_scripts_are_refused_with_a_clear_message(data: Any, fragment: str) -> None:
    with pytest.raises(InvalidMessage) as exc:
        parse_script(data, "password_reset")
    assert exc.value.code == "invalid_script"
    assert fragment in exc.value.message, exc.value.message


def test_render_fills_facts_and_names_the_missing_ones() -> None:
    text, missing = render("Card ending {card_last4} of {customer_name}, {amount}.",
                           {"card_last4": "4821", "customer_name": "Ana", "amount": None})
    assert text == f"Card ending 4821 of Ana, {MISSING}."
    assert missing == ("amount",)
    assert text_sha256("é") == hashlib.sha256(b"\xc3\xa9").hexdigest()  # UTF-8, as sent
