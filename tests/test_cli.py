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
    full["CLOUDCOUNTER_CUSTOMER_PHOTOS_DIR"] = str(tmp_path / "photos")
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
    small = cli(db, "customer", "add", "--name", "Small", "--photo",
                str(faces / "photos/obama-240p.jpg"))
    assert small.returncode == 2 and "62 px wide; at least 80 px" in small.stderr
    good = cli(db, "customer", "add", "--name", "Barack", "--photo",
               str(faces / "photos/obama.jpg"))
    assert good.returncode == 0, good.stderr
    import sqlite3
    row = sqlite3.connect(db / "cli.db").execute(
        "select photo_path, length(face_descriptor) from customers where id=?",
        (good.stdout.strip(),)).fetchone()
    # a copy of the photo, kept with the hub's customer photos
    assert row[0].startswith(str((db / "photos").resolve())) and row[1] == 128 * 8


def test_demo_seed_is_idempotent(db: Path) -> None:
    first = cli(db, "demo", "seed")
    assert first.returncode == 0 and "user alice (agent)" in first.stdout
    again = cli(db, "demo", "seed")
    assert again.returncode == 0 and "already present" in again.stdout


def test_service_scripts_export_edit_import_as_new_versions(db: Path) -> None:
    assert cli(db, "demo", "seed").returncode == 0
    out = db / "card_loss.yaml"
    r = cli(db, "service", "script", "export", "card_loss", str(out))
    assert r.returncode == 0, r.stderr
    text = out.read_text()
    assert text.startswith("# card_loss script version 1") and "kind: confirm_statement" in text
    # a bank changes the statement: version 2
    out.write_text(text.replace("block it now", "block it immediately"))
    r = cli(db, "service", "script", "import", "card_loss", str(out), "--note", "wording")
    assert r.returncode == 0 and "version 2 is current" in r.stdout, r.stderr
    # the same content again adds no version
    r = cli(db, "service", "script", "import", "card_loss", str(out))
    assert "version 2 is current" in r.stdout
    listing = cli(db, "service", "script", "list", "card_loss").stdout.splitlines()
    assert [line.split()[0] for line in listing] == ["v1", "v2"] and "(wording)" in listing[1]
    # invalid files: a clear error, nothing imported
    bad = db / "bad.yaml"
    for content, fragment in [
        ("title: X\nsteps:\n  - {id: a, kind: teleport, text: x}\n", "steps.0.kind"),
        ("title: X\nsteps:\n  - {id: a, kind: action}\n", "steps.0.text"),
        ("title: X\nsteps:\n  - {id: a, kind: action, text: x}\n  - {id: a, kind: action, "
         "text: y}\n", "duplicate step id 'a'"),
        ("title: [unclosed\n", "not valid YAML"),
    ]:
        bad.write_text(content)
        r = cli(db, "service", "script", "import", "card_loss", str(bad))
        assert r.returncode == 2 and fragment in r.stderr, (content, r.stderr)
    r = cli(db, "service", "script", "import", "no_such_service", str(out))
    assert r.returncode == 2 and "not 'no_such_service'" in r.stderr
    assert len(cli(db, "service", "script", "list", "card_loss").stdout.splitlines()) == 2
    r = cli(db, "service", "script", "export", "card_loss", "-", "--version", "1")
    assert "block it now" in r.stdout


def test_risk_rules_and_account_changes_and_leads(db: Path) -> None:
    out = db / "rules.yaml"
    assert cli(db, "risk", "rules", "export", str(out)).returncode == 0
    assert "takeover_pattern" in out.read_text()
    out.write_text(out.read_text().replace("weight: 45", "weight: 55"))
    r = cli(db, "risk", "rules", "import", str(out))
    # version 3: migration 0009 stored version 2 (the car-loan rule credit_contradictions)
    assert r.returncode == 0 and "version 3 are current" in r.stdout, r.stderr
    out.write_text("thresholds: {medium: 5, high: 1, block: 9}\nrules: []\n")
    r = cli(db, "risk", "rules", "import", str(out))
    assert r.returncode == 2 and "must rise" in r.stderr
    assert cli(db, "demo", "seed").returncode == 0
    r = cli(db, "customer", "change", "cus_demo_barack", "--kind", "phone", "--at", "2026-01-02")
    assert r.returncode == 0 and "2026-01-02" in r.stdout, r.stderr
    r = cli(db, "customer", "change", "cus_nobody", "--kind", "phone")
    assert r.returncode == 2 and "no customer" in r.stderr
    r = cli(db, "user", "add", "--role", "lead", "--username", "lena", "--password",
            "lena-lead-pass-1")
    assert r.returncode == 0 and "(lead)" in r.stdout, r.stderr
    r = cli(db, "user", "add", "--role", "lead", "--username", "lars", "--password",
            "lars-lead-pass-1", "--skills", "cards")
    assert r.returncode == 2 and "only agents have skills" in r.stderr


def test_user_preferred_skills(db: Path) -> None:
    ok = cli(db, "user", "add", "--role", "agent", "--username", "ana", "--password",
             "secret-pass-phrase", "--skills", "cards,loans", "--preferred", "loans")
    assert ok.returncode == 0, ok.stderr
    bad = cli(db, "user", "add", "--role", "agent", "--username", "ben", "--password",
              "secret-pass-phrase", "--skills", "cards", "--preferred", "loans")
    assert bad.returncode == 2 and "preferred skills must be among" in bad.stderr
    edit = cli(db, "user", "edit", "ana", "--preferred", "cards")
    assert edit.returncode == 0 and "preferred cards" in edit.stdout, edit.stderr
    edit = cli(db, "user", "edit", "ana", "--preferred", "")
    assert edit.returncode == 0 and "preferred -" in edit.stdout, edit.stderr


def test_service_routing_rules(db: Path) -> None:
    ok = cli(db, "service", "edit", "car_loan", "--fallback", "payments", "--widen-after", "90")
    assert ok.returncode == 0, ok.stderr
    assert "fallback_skills=payments" in ok.stdout and "widen_after_s=90.0" in ok.stdout
    ok = cli(db, "service", "edit", "car_loan", "--max-offers", "4", "--widen-after", "none")
    assert ok.returncode == 0, ok.stderr  # the other rules are kept
    assert "fallback_skills=payments" in ok.stdout and "max_consecutive_offers=4" in ok.stdout
    assert "widen_after_s" not in ok.stdout
    own = cli(db, "service", "edit", "car_loan", "--overflow", "loans")
    assert own.returncode == 2 and "own skill" in own.stderr
    unknown = cli(db, "service", "edit", "car_loan", "--fallback", "juggling")
    assert unknown.returncode == 2 and "unknown skill(s) in the routing rules" in unknown.stderr
    bad = cli(db, "service", "edit", "car_loan", "--overflow-after", "soon")
    assert bad.returncode == 2 and "not a number" in bad.stderr
    far = cli(db, "service", "edit", "car_loan", "--overflow-after", "4000")
    assert far.returncode == 2 and "overflow_after_s" in far.stderr
    listed = cli(db, "service", "list")
    assert "max_consecutive_offers=4" in listed.stdout and "fallback_skills=payments" in \
        listed.stdout
