"""Service scripts: the ordered, versioned steps an agent works through for a service.

A script is data (YAML to import and export, JSON in the database), validated here before
anything is stored. Texts may name facts of the call in braces (``{card_last4}``); they are
filled from the customer's record and the call's subject when the call is answered.
"""

from __future__ import annotations

import enum
import hashlib
import json
import string
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError,
    model_validator,
)

from cloudcounter.errors import InvalidMessage
from cloudcounter.text import check_text


class StepKind(str, enum.Enum):
    CHECK_IDENTITY = "check_identity"
    CHECK_LIVENESS = "check_liveness"
    CONFIRM_STATEMENT = "confirm_statement"
    QUESTION = "question"
    LOOKUP = "lookup"
    ACTION = "action"
    AGENT_ATTEST = "agent_attest"


#: check steps complete by themselves from the check of this kind (hub analysis)
CHECK_OF: dict[StepKind, str] = {StepKind.CHECK_IDENTITY: "identity",
                                 StepKind.CHECK_LIVENESS: "liveness"}
#: the verdict that completes a check step automatically
PASSING: dict[str, str] = {"identity": "match", "liveness": "pass"}
#: steps the customer's page can show (and the customer answer)
CUSTOMER_FACING = frozenset({StepKind.CONFIRM_STATEMENT, StepKind.QUESTION})
#: steps that need the customer in the call; the others may be done during wrap-up
NEEDS_CUSTOMER = frozenset({StepKind.CHECK_IDENTITY, StepKind.CHECK_LIVENESS,
                            StepKind.CONFIRM_STATEMENT, StepKind.QUESTION})
STATEMENT_ANSWERS = ("confirm", "decline")

#: facts a script text may name, and what they are
FACTS: dict[str, str] = {
    "customer_name": "the customer's name on file",
    "card_last4": "the last four digits of the customer's card on file",
    "phone_masked": "the customer's phone number on file, masked",
    "reference": "the reference of the request (subject of the call)",
    "amount": "the amount of the request, formatted with its currency",
    "payee": "the payee of the transfer",
    "purpose": "the purpose of the transfer",
    "service_name": "the service's name",
    "today": "today's date (YYYY-MM-DD, UTC)",
}
MISSING = "[not on file]"
MAX_STEPS = 40


def _text(v: str) -> str:
    return check_text(v, multiline=True)


def _line(v: str) -> str:
    return check_text(v, multiline=False)


StepId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,47}$")]
Code = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000),
                 AfterValidator(_text)]
Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120),
                 AfterValidator(_line)]


class OptionDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    value: Code
    label: Line


class StepDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: StepId
    kind: Literal["check_identity", "check_liveness", "confirm_statement", "question", "lookup",
                  "action", "agent_attest"]
    text: Text
    title: Line | None = None
    required: bool = True
    options: list[OptionDoc] | None = Field(default=None, min_length=2, max_length=6)
    concern_if: list[Code] | None = None
    account_change: Code | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "StepDoc":
        if self.kind == "question":
            if not self.options:
                raise ValueError("a question needs 'options' (2 to 6)")
            values = [o.value for o in self.options]
            if len(set(values)) != len(values):
                raise ValueError("option values must be unique")
            unknown = set(self.concern_if or ()) - set(values)
            if unknown:
                raise ValueError(f"concern_if names unknown option(s): {sorted(unknown)}")
        elif self.options is not None or self.concern_if is not None:
            raise ValueError("only a question has 'options' and 'concern_if'")
        if self.account_change is not None and self.kind != "action":
            raise ValueError("only an action step records an 'account_change'")
        for name in placeholders(self.text):
            if name not in FACTS:
                raise ValueError(f"unknown fact {{{name}}} in the text (known: "
                                 f"{', '.join(sorted(FACTS))})")
        return self


class ScriptDoc(BaseModel):
    """The YAML document of one script (``cloudcounter service script import``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    service: Code | None = None
    title: Line
    steps: list[StepDoc] = Field(min_length=1, max_length=MAX_STEPS)

    @model_validator(mode="after")
    def _unique(self) -> "ScriptDoc":
        seen: set[str] = set()
        for s in self.steps:
            if s.id in seen:
                raise ValueError(f"duplicate step id {s.id!r}")
            seen.add(s.id)
        return self


def placeholders(text: str) -> list[str]:
    """The fact names a text refers to; ValueError for a malformed template."""
    names: list[str] = []
    try:
        for _, name, spec, conv in string.Formatter().parse(text):
            if name is None:
                continue
            if not name or spec or conv or not name.isidentifier():
                raise ValueError(f"malformed placeholder {{{name}}}: write {{fact_name}}")
            names.append(name)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return names


@dataclass(frozen=True)
class Option:
    value: str
    label: str


@dataclass(frozen=True)
class Step:
    id: str
    kind: StepKind
    text: str
    title: str = ""
    required: bool = True
    options: tuple[Option, ...] = ()
    concern_if: tuple[str, ...] = ()
    account_change: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind.value}
        if self.title:
            out["title"] = self.title
        out["text"] = self.text
        out["required"] = self.required
        if self.options:
            out["options"] = [{"value": o.value, "label": o.label} for o in self.options]
        if self.concern_if:
            out["concern_if"] = list(self.concern_if)
        if self.account_change:
            out["account_change"] = self.account_change
        return out


@dataclass(frozen=True)
class Script:
    service: str
    title: str
    steps: tuple[Step, ...]
    version: int = 0
    script_id: int | None = None
    _index: dict[str, Step] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({s.id: s for s in self.steps})

    def step(self, step_id: str) -> Step | None:
        return self._index.get(step_id)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "title": self.title,
                "steps": [s.to_dict() for s in self.steps]}

    @property
    def sha256(self) -> str:
        return content_hash(self.to_dict())


def content_hash(data: Mapping[str, Any]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def problems_text(exc: ValidationError, limit: int = 8) -> str:
    out = []
    for e in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in e["loc"])
        msg = str(e["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {msg}" if where else msg)
    return "; ".join(out)


def parse_script(data: Any, service: str) -> Script:
    """A validated script for ``service`` from a loaded YAML/JSON document; raises
    InvalidMessage (code ``invalid_script``) naming every problem found."""
    if not isinstance(data, dict):
        raise InvalidMessage("a script is a mapping with 'title' and 'steps'",
                             code="invalid_script")
    try:
        doc = ScriptDoc.model_validate(data)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid script: {problems_text(exc)}",
                             code="invalid_script") from None
    if doc.service is not None and doc.service != service:
        raise InvalidMessage(f"the file is a script for {doc.service!r}, not {service!r}",
                             code="invalid_script")
    return Script(service=service, title=doc.title, steps=tuple(
        Step(id=s.id, kind=StepKind(s.kind), text=s.text, title=s.title or "",
             required=s.required,
             options=tuple(Option(o.value, o.label) for o in s.options or ()),
             concern_if=tuple(s.concern_if or ()), account_change=s.account_change)
        for s in doc.steps))


def script_from_row(service: str, title: str, steps: list[dict[str, Any]], version: int,
                    script_id: int | None) -> Script:
    s = parse_script({"title": title, "steps": steps}, service)
    return Script(service, s.title, s.steps, version, script_id)


def render(text: str, facts: Mapping[str, str | None]) -> tuple[str, tuple[str, ...]]:
    """The text with its facts filled in, and the facts that were not on file."""
    missing: list[str] = []
    out: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(text):
        out.append(literal)
        if name is None:
            continue
        value = facts.get(name)
        if value is None or value == "":
            missing.append(name)
            out.append(MISSING)
        else:
            out.append(str(value))
    return "".join(out), tuple(dict.fromkeys(missing))


def text_sha256(text: str) -> str:
    """The SHA-256 of a statement as shown (UTF-8, exactly as sent to the customer)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
