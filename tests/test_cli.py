"""The command line, run as a user would: clear messages and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cloudcounter.hub.auth import verify_customer_token
from cloudcounter.hub.settings import DEMO_CUSTOMER_TOKEN_SECRET

pytestmark = pytest.mark.integration


def cli(tmp_path: Path, *args: str, demo: bool = True, **env: str) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    full["CLOUDCOUNTER_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    if demo:
        full["CLOUDCOUNTER_DEMO"] = "1"
    full.update(env)
    return subprocess.run([sys.executable, "-m", "cloudcounter", *args], env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    r = cli(tmp_path, "db", "upgrade")
    assert r.returncode == 0, r.stderr
    return tmp_path


def test_missing_secret_outside_demo_mode_is_a_clear_error(tmp_path: Path) -> None:
    r = cli(tmp_path, "db", "upgrade", demo=False)
    assert r.returncode == 2
    assert "CLOUDCOUNTER_SECRET_KEY" in r.stderr and r.stderr.startswith("error:")


def test_user_add_and_its_errors(db: Path) -> None:
    ok = cli(db, "user", "add", "--role", "agent", "--username", "ana", "--password",
             "secret-pass-phrase", "--skills", "cards,loans")
    assert ok.returncode == 0 and "ana (agent) created" in ok.stdout
    dup = cli(db, "user", "add", "--role", "auditor", "--username", "ana", "--password",
              "secret-pass-phrase")
    assert dup.returncode == 2 and "already taken" in dup.stderr
    bad = cli(db, "user", "add", "--role", "agent", "--username", "ben", "--password",
              "secret-pass-phrase", "--skills", "cards,juggling")
    assert bad.returncode == 2 and "unknown skill(s): juggling" in bad.stderr
    weak = cli(db, "user", "add", "--role", "agent", "--username", "cy", "--password", "short")
    assert weak.returncode == 2 and "at least 12" in weak.stderr
    role = cli(db, "user", "add", "--role", "wizard", "--username", "d", "--password", "x" * 9)
    assert role.returncode == 2 and "invalid choice" in role.stderr


def test_customer_add_token_and_photo_errors(db: Path, tmp_path: Path) -> None:
    r = cli(db, "customer", "add", "--name", "Dana Scully", "--phone", "+15550001111",
            "--id-number", "123456789")
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    assert cid.startswith("cus_")
    tok = cli(db, "token", "customer", cid, "--services", "card_loss")
    assert tok.returncode == 0, tok.stderr
    ident = verify_customer_token(DEMO_CUSTOMER_TOKEN_SECRET, tok.stdout.strip())
    assert ident.customer_id == cid and ident.services == ("card_loss",)
    missing = cli(db, "token", "customer", "cus_nobody")
    assert missing.returncode == 2 and "no customer" in missing.stderr
    junk = tmp_path / "not-a-photo.jpg"
    junk.write_bytes(b"this is not an image")
    bad = cli(db, "customer", "add", "--name", "X", "--photo", str(junk))
    assert bad.returncode == 2 and "not a readable image" in bad.stderr
    gone = cli(db, "customer", "add", "--name", "X", "--photo", str(tmp_path / "nope.jpg"))
    assert gone.returncode == 2 and "does not exist" in gone.stderr


@pytest.mark.vision
def test_customer_photo_is_enrolled_or_refused(db: Path, faces: Path, tmp_path: Path) -> None:
    import cv2
    import numpy as np
    two = cli(db, "customer", "add", "--name", "Pair", "--photo",
              str(faces / "photos/two_people.jpg"))
    assert two.returncode == 2 and "more than one face" in two.stderr
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 200, np.uint8))
    none = cli(db, "customer", "add", "--name", "Nobody", "--photo", str(blank))
    assert none.returncode == 2 and "shows no face" in none.stderr
    good = cli(db, "customer", "add", "--name", "Barack", "--photo",
               str(faces / "photos/obama.jpg"))
    assert good.returncode == 0, good.stderr
    import sqlite3
    row = sqlite3.connect(db / "cli.db").execute(
        "select photo_path, length(face_descriptor) from customers where id=?",
        (good.stdout.strip(),)).fetchone()
    assert row[0].endswith("obama.jpg") and row[1] == 128 * 8


def test_demo_seed_is_idempotent(db: Path) -> None:
    first = cli(db, "demo", "seed")
    assert first.returncode == 0 and "user alice (agent)" in first.stdout
    again = cli(db, "demo", "seed")
    assert again.returncode == 0 and "already present" in again.stdout
