"""Evidence packages (docs/supervision.md): written, verified offline, every change found;
each export on the call's timeline; the CLI and the API."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cloudcounter.audit.package import export_call, verify_package
from cloudcounter.db.engine import make_engine, make_sessionmaker
from cloudcounter.db.journal import DbJournal
from cloudcounter.db.migrate import upgrade_engine
from cloudcounter.db.models import CallEvent
from cloudcounter.errors import InvalidMessage, InvalidState
from tests.test_audit_chain import Cli, make_call

KEY = b"p" * 40
CID = "call_00000000000000a7"


def rewrite(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    """Copy a zip, replacing (bytes) or leaving out (None) some of its files."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in change:
                if change[name] is not None:
                    zout.writestr(name, change[name])  # type: ignore[arg-type]
            else:
                zout.writestr(name, zin.read(name))
        for name, blob in change.items():
            if name not in zin.namelist() and blob is not None:
                zout.writestr(name, blob)


def manifest_with(src: Path, name: str, blob: bytes) -> bytes:
    with zipfile.ZipFile(src) as z:
        m = json.loads(z.read("manifest.json"))
    m["files"][name] = {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
    return json.dumps(m).encode()


@pytest.fixture
def db(tmp_path: Path) -> Any:
    url = f"sqlite+aiosqlite:///{tmp_path}/p.db"

    async def prepare() -> None:
        engine = make_engine(url)
        try:
            await upgrade_engine(engine)
            await make_call(make_sessionmaker(engine), CID, tmp_path)
        finally:
            await engine.dispose()
    asyncio.run(prepare())
    return url


def export(url: str, out: Path, key: bytes | None) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        engine = make_engine(url)
        try:
            sm = make_sessionmaker(engine)
            m = await export_call(sm, DbJournal(sm), CID, out, None, key, "cli:test")
            async with sm() as s:
                last = (await s.scalars(select(CallEvent).where(CallEvent.call_id == CID)
                                        .order_by(CallEvent.seq.desc()))).first()
            assert last is not None and last.kind == "audit.exported"
            assert last.payload["manifest_sha256"] == m["sha256"] and last.actor == "cli:test"
            return m
        finally:
            await engine.dispose()
    return asyncio.run(go())


def test_a_package_verifies_and_every_change_is_found(db: str, tmp_path: Path) -> None:
    pkg = tmp_path / "p.zip"
    m = export(db, pkg, KEY)
    assert m["chain"]["verified_at_export"] and m["chain"]["head_seq"] == 6
    with zipfile.ZipFile(pkg) as z:
        names = set(z.namelist())
        timeline = json.loads(z.read("timeline.json"))
    assert {"call.json", "timeline.json", "checks.json", "recordings.json", "manifest.json",
            "manifest.sig"} <= names
    assert [n for n in names if n.startswith("recordings/")]
    assert [e["kind"] for e in timeline][-1] == "call.ended"
    ok = verify_package(pkg, KEY)
    assert ok.ok and ok.signed and ok.call_id == CID, ok.problems
    unchecked = verify_package(pkg, None)
    assert unchecked.ok and unchecked.signed is None
    wrong = verify_package(pkg, b"q" * 40)
    assert not wrong.ok and wrong.signed is False

    rec = next(n for n in names if n.startswith("recordings/"))
    ev = next(n for n in names if n.startswith("evidence/"))
    cases: dict[str, tuple[dict[str, bytes | None], bytes | None, str]] = {
        "file changed": ({rec: b"another film"}, KEY, "SHA-256 does not match"),
        "file removed": ({rec: None}, KEY, "missing"),
        "file added": ({"extra.txt": b"x"}, KEY, "not in the manifest"),
        "manifest rewritten to fit": ({rec: b"another film", "manifest.json":
                                       manifest_with(pkg, rec, b"another film")},
                                      KEY, "manifest.sig does not match"),
        "unsigned, manifest rewritten: the chain still knows the recording": (
            {rec: b"another film", "manifest.json": manifest_with(pkg, rec, b"another film"),
             "manifest.sig": None}, None, "not the recording the timeline holds"),
        "timeline event changed": ({"timeline.json": json.dumps(
            [{**e, "actor": "agent:bob"} if e["seq"] == 3 else e for e in timeline]).encode()},
            None, "at event 3: changed"),
        "not signed at all": ({"manifest.sig": None}, KEY, "not signed"),
        "unsigned, evidence swapped: the chain still knows the frame": (
            {ev: b"another face", "manifest.json": manifest_with(pkg, ev, b"another face"),
             "manifest.sig": None}, None, "not the file the timeline holds"),
    }
    for case, (change, key, expected) in cases.items():
        bad = tmp_path / "bad.zip"
        rewrite(pkg, bad, change)
        rep = verify_package(bad, key)
        assert not rep.ok and any(expected in p for p in rep.problems), (case, rep.problems)
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"not a zip")
    assert not verify_package(garbage, KEY).ok


def test_export_refusals(db: str, tmp_path: Path) -> None:
    async def go() -> None:
        engine = make_engine(db)
        try:
            sm = make_sessionmaker(engine)
            with pytest.raises(InvalidMessage) as unknown:
                await export_call(sm, DbJournal(sm), "call_ffffffffffffffff",
                                  tmp_path / "x.zip", None, None, "t")
            assert unknown.value.code == "unknown_call"
            j = DbJournal(sm)
            from cloudcounter.queue.model import Call
            j.call_created(Call("call_00000000000000a8", "cus_t", "card_loss", "cards", 0,
                                0.0, 1), 1_700_000_000.0)
            await j.flush()
            with pytest.raises(InvalidState) as live:
                await export_call(sm, j, "call_00000000000000a8", tmp_path / "x.zip", None,
                                  None, "t")
            assert live.value.code == "call_not_ended"
            assert not (tmp_path / "x.zip").exists()
        finally:
            await engine.dispose()
    asyncio.run(go())


def test_cli_export_and_verify_package(db: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    env = {"CLOUDCOUNTER_DATABASE_URL": db, "CLOUDCOUNTER_DEMO": "1",
           "CLOUDCOUNTER_AUDIT_KEY": KEY.decode()}
    cli = Cli(monkeypatch, capsys, env)
    out = tmp_path / "cli.zip"
    r = cli("export", CID, "--out", str(out))
    assert r.returncode == 0 and "signed" in r.stdout, r.stderr
    # offline: no database, no hub secrets, only the key (a real command, started afresh)
    offline = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDCOUNTER_")}
    offline["CLOUDCOUNTER_AUDIT_KEY"] = KEY.decode()
    r = subprocess.run([sys.executable, "-m", "cloudcounter", "audit", "verify-package",
                        str(out)], env=offline, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "signature valid" in r.stdout, r.stdout + r.stderr
    keyfile = tmp_path / "k"
    keyfile.write_bytes(b"z" * 40)
    r = cli("verify-package", str(out), "--key-file", str(keyfile))
    assert r.returncode == 1 and "signature INVALID" in r.stdout
    # the export is on the timeline, and the chain still verifies with it
    r = cli("verify", CID)
    assert r.returncode == 0, r.stdout
    assert cli("export", "call_ffffffffffffffff", "--out", str(out)).returncode == 2
    r = cli("export-search", "--from", "2023-11-14", "--service", "card_loss", "--out",
            str(tmp_path / "search"))
    assert r.returncode == 0 and "1 package(s)" in r.stdout, r.stdout + r.stderr
    assert verify_package(tmp_path / "search" / f"{CID}.zip", KEY).ok
    assert cli("export-search", "--from", "2023-11-14", "--agent", "nobody", "--out",
               str(tmp_path / "none")).stdout.startswith("0 package(s)")
    r = cli("sample", "--from", "2023-11-14")
    assert r.returncode == 0 and "selected from 2023-11-14 to 2023-11-14" in r.stdout, r.stderr
    assert cli("sample", "--from", "2023-11-14").stdout.startswith("0 call(s)")  # idempotent
    assert cli("escalate").returncode == 0
