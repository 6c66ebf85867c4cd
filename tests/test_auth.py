"""Passwords and tokens."""

from __future__ import annotations

import time

import jwt
import pytest

from cloudcounter.errors import Unauthenticated
from cloudcounter.hub.auth import (
    StaffIdentity, hash_password, mint_customer_token, mint_staff_token, verify_customer_token,
    verify_password, verify_staff_token,
)

SECRET = "s" * 64
OTHER = "o" * 64


def test_password_hashes_verify_and_are_salted() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2") and h != hash_password("correct horse")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong horse")
    assert not verify_password(None, "correct horse")
    assert not verify_password("not-a-hash", "x")
    with pytest.raises(ValueError):
        hash_password("short")


def test_staff_token_round_trip() -> None:
    ident = StaffIdentity(3, "alice", "agent", "Alice", ("cards",))
    assert verify_staff_token(SECRET, mint_staff_token(SECRET, ident, 60)) == ident


def test_customer_token_round_trip_and_service_limits() -> None:
    tok = mint_customer_token(SECRET, "cus_1", 60, services=["card_loss"], priority=7)
    ident = verify_customer_token(SECRET, tok)
    assert ident.customer_id == "cus_1" and ident.priority == 7
    assert ident.may_request("card_loss") and not ident.may_request("car_loan")
    assert verify_customer_token(SECRET, mint_customer_token(SECRET, "c", 60)).may_request("any")


@pytest.mark.parametrize("make,code", [
    (lambda: mint_customer_token(OTHER, "cus_1", 60), "unauthenticated"),  # wrong secret
    (lambda: mint_customer_token(SECRET, "cus_1", 60, now=time.time() - 120), "token_expired"),
    (lambda: mint_staff_token(SECRET, StaffIdentity(1, "a", "agent"), 60), "unauthenticated"),
    (lambda: jwt.encode({"sub": "c", "aud": "cloudcounter-customer", "exp": time.time() + 60},
                        SECRET, algorithm="HS512"), "unauthenticated"),  # algorithm not allowed
    (lambda: jwt.encode({"sub": "c", "aud": "cloudcounter-customer",
                         "exp": time.time() + 60, "prio": 99}, SECRET), "unauthenticated"),
    (lambda: "garbage", "unauthenticated"),
    (lambda: None, "unauthenticated"),
    (lambda: 12, "unauthenticated"),
])
def test_bad_customer_tokens_are_refused(make, code: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(Unauthenticated) as info:
        verify_customer_token(SECRET, make())
    assert info.value.code == code


def test_a_customer_token_is_not_a_staff_token() -> None:
    with pytest.raises(Unauthenticated):
        verify_staff_token(SECRET, mint_customer_token(SECRET, "cus_1", 60))
