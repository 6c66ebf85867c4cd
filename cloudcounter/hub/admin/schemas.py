"""What administrators send (the admin API's bodies and queries; the CLI builds the same
models from its arguments, so both refuse the same values with the same messages)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator

from cloudcounter.db.models import Role
from cloudcounter.queue.routing import ServiceRules
from cloudcounter.signaling.schemas import Message

Username = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
DisplayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                               max_length=128)]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Skill = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
ServiceCode = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,31}$")]
CustomerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,40}$")]
Phone = Annotated[str, StringConstraints(strip_whitespace=True,
                                         pattern=r"^(\+?[0-9][0-9 ()-]{3,30})?$")]
IdNumber = Annotated[str, StringConstraints(strip_whitespace=True,
                                            pattern=r"^[A-Za-z0-9 -]{0,32}$")]
Card4 = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
RiskLevel = Literal["low", "medium", "high"]
Check = Literal["identity", "liveness"]
ServiceKind = Literal["counter_service", "loan_interview"]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80)]
Url = Annotated[str, StringConstraints(min_length=8, max_length=2048)]
EventPattern = Annotated[str, StringConstraints(pattern=r"^(\*|[a-z_]+\.(\*|[a-z_]+))$")]


def _unique_skills(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise ValueError("a skill is listed twice")
    return sorted(value)


class UserCreate(Message):
    username: Username
    role: Role
    display_name: DisplayName | None = None
    skills: list[Skill] = Field(default_factory=list, max_length=32)
    # none: the hub generates one and returns it once
    password: Password | None = None
    # skills whose calls the agent takes first: some of ``skills``
    preferred_skills: list[Skill] = Field(default_factory=list, max_length=32)

    _skills = field_validator("skills", "preferred_skills")(_unique_skills)


class UserUpdate(Message):
    display_name: DisplayName | None = None
    role: Role | None = None
    skills: list[Skill] | None = Field(default=None, max_length=32)
    # none: kept (those still among the skills)
    preferred_skills: list[Skill] | None = Field(default=None, max_length=32)

    @field_validator("skills", "preferred_skills")
    @classmethod
    def _skills(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _unique_skills(value)


class RoleChange(Message):
    role: Role


class PasswordSet(Message):
    password: Password | None = None


Seconds = Annotated[float, Field(ge=0, le=3600, strict=True, allow_inf_nan=False)]


class RoutingRules(Message):
    """A service's routing rules (:class:`cloudcounter.queue.routing.ServiceRules`; the
    skills are checked against the known ones when the change is made)."""

    widen_after_s: Seconds | None = None  # None: the target answer time; 0: no widening
    fallback_skills: list[Skill] = Field(default_factory=list, max_length=16)
    overflow_after_s: Seconds | None = None  # None: no overflow
    overflow_skills: list[Skill] = Field(default_factory=list, max_length=16)
    max_consecutive_offers: Annotated[int, Field(ge=1, le=100, strict=True)] | None = None

    _fallback = field_validator("fallback_skills")(_unique_skills)
    _overflow = field_validator("overflow_skills")(_unique_skills)

    def rules(self) -> ServiceRules:
        return ServiceRules(self.widen_after_s, frozenset(self.fallback_skills),
                            self.overflow_after_s, frozenset(self.overflow_skills),
                            self.max_consecutive_offers)


class ServiceCreate(Message):
    code: ServiceCode
    name: DisplayName
    kind: ServiceKind = "counter_service"
    required_skill: Skill
    priority: int = Field(default=0, ge=0, le=9)
    auto_checks: list[Check] = Field(default_factory=list, max_length=2)
    target_answer_s: int = Field(default=60, ge=5, le=3600)
    routing: RoutingRules | None = None

    @field_validator("auto_checks")
    @classmethod
    def _checks(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a check is listed twice")
        return value


class ServiceUpdate(Message):
    name: DisplayName | None = None
    kind: ServiceKind | None = None
    required_skill: Skill | None = None
    priority: int | None = Field(default=None, ge=0, le=9)
    auto_checks: list[Check] | None = Field(default=None, max_length=2)
    target_answer_s: int | None = Field(default=None, ge=5, le=3600)
    routing: RoutingRules | None = None  # replaces the rules ({}: none)

    @field_validator("auto_checks")
    @classmethod
    def _checks(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a check is listed twice")
        return value


class CustomerCreate(Message):
    id: CustomerId | None = None  # the bank's customer number (the tokens' ``sub``)
    name: DisplayName
    phone: Phone = ""
    id_number: IdNumber = ""
    risk_level: RiskLevel = "low"
    card_last4: Card4 | None = None


class CustomerUpdate(Message):
    name: DisplayName | None = None
    phone: Phone | None = None
    id_number: IdNumber | None = None
    risk_level: RiskLevel | None = None
    card_last4: Card4 | None = None


class CustomerQuery(Message):
    q: str | None = Field(default=None, max_length=80)
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class WebhookCreate(Message):
    name: Name
    url: Url
    event_types: list[EventPattern] = Field(min_length=1, max_length=32)
    active: bool = True


class WebhookUpdate(Message):
    name: Name | None = None
    url: Url | None = None
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=32)
    active: bool | None = None


class DeliveryQuery(Message):
    state: Literal["pending", "delivered", "failed", "cancelled"] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    before_id: int | None = Field(default=None, ge=1)
