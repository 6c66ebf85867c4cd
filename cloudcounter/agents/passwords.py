"""The staff password policy and the TOTP second factor.

Policy (checked when an account is created or its password set, never at sign-in):

* at least :data:`MIN_LENGTH` (12) characters, at most 256;
* not the username, nor the username with digits and symbols around it
  (``alice2024!!!!``), nor the username reversed;
* not a common password: not one of the 30,000 most common passwords that the
  maintained ``zxcvbn`` package ships, also with digits and symbols stripped from its
  ends (``password123456``, ``!!qwertyuiop!!``);
* at least 5 different characters (no ``aaaaaaaaaaaa``), not only digits.

TOTP (RFC 6238, ``pyotp``): 6 digits, 30 s steps, one step of clock drift either way; a
code is accepted once (the last used step is stored with the account).
"""

from __future__ import annotations

import functools
import re
import time

import pyotp

MIN_LENGTH = 12
MAX_LENGTH = 256
MIN_DISTINCT = 5
_EDGES = re.compile(r"^[\W\d_]+|[\W\d_]+$")


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` is refused for ``username``, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"passwords have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"passwords have at most {MAX_LENGTH} characters"
    lowered = password.lower()
    core = _EDGES.sub("", lowered)
    name = username.strip().lower()
    if name and (lowered == name or core == name or core == name[::-1]
                 or lowered == name[::-1]):
        return "the password must not be the username"
    common = common_passwords()
    if lowered in common or (len(core) >= 4 and core in common):
        return "that password is too common: choose another"
    if len(set(password)) < MIN_DISTINCT:
        return f"passwords have at least {MIN_DISTINCT} different characters"
    if password.isdigit():
        return "passwords are not only digits"
    return None


# -- TOTP ---------------------------------------------------------------------------------
STEP_S = 30


def new_totp_secret() -> str:
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, issuer: str = "cloudcounter") -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=issuer)


def totp_step(secret: str, code: str, last_step: int | None, now: float | None = None,
              drift_steps: int = 1) -> int | None:
    """The time step ``code`` is valid for (within ``drift_steps``), if it is later than
    ``last_step``; None when the code is wrong or was already used."""
    if not re.fullmatch(r"\d{6}", code or ""):
        return None
    now = time.time() if now is None else now
    totp = pyotp.TOTP(secret)
    step_now = int(now // STEP_S)
    for step in range(step_now - drift_steps, step_now + drift_steps + 1):
        if pyotp.utils.strings_equal(totp.at(step * STEP_S), code):
            if last_step is not None and step <= last_step:
                return None
            return step
    return None
