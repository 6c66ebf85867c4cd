"""Demo data: agents with different skills, a team lead, an auditor, an admin, several
customers (one with a recent change of contact details, one whose record says high risk),
routing rules for the services that have none, and the service scripts shipped in
``cloudcounter/business/data/scripts``.

Idempotent: running it again adds nothing that exists. Passwords are for local demos only.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import yaml

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.business.store import BusinessStore, utc
from cloudcounter.db import repo
from cloudcounter.db.models import Customer, CustomerAccountChange, Role, ServiceType
from cloudcounter.agents import accounts
from cloudcounter.hub.customers import enrol_photo
from cloudcounter.queue.routing import ServiceRules

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "business" / "data" / "scripts"

DEMO_USERS = [
    # username, password, role, display name, skills
    ("alice", "alice-demo-1", Role.AGENT, "Alice Chen", ["cards", "security", "accounts"]),
    ("bob", "bob-demo-123", Role.AGENT, "Bob Martin", ["payments", "loans"]),
    ("carol", "carol-demo-1", Role.AGENT, "Carol Diaz",
     ["cards", "security", "accounts", "payments", "loans", "senior"]),
    ("leo", "leo-lead-demo-1", Role.LEAD, "Leo Novak", []),
    ("audrey", "audrey-demo-1", Role.AUDITOR, "Audrey Klein", []),
    ("admin", "admin-demo-1", Role.ADMIN, "Operations Admin", []),
]

# service code -> its routing rules (docs/api.md, Routing rules). The demo agents who hold a
# fallback or overflow skill also hold the service's own (alice and carol; bob and carol),
# so the demo routes calls as without the rules; a new agent with only ``accounts`` would
# take waiting card-loss calls after the target answer time.
DEMO_ROUTING = {
    "card_loss": ServiceRules(fallback_skills=frozenset({"accounts"})),
    "password_reset": ServiceRules(fallback_skills=frozenset({"accounts"})),
    "large_transfer": ServiceRules(overflow_after_s=180.0, overflow_skills=frozenset({"loans"})),
}

# id, name, masked id number, phone, risk level, reference photo (relative to the faces
# dir), last four digits of the card on file
DEMO_CUSTOMERS = [
    ("cus_demo_barack", "Barack Obama", "***-**-6789", "+15550100101", "low", "photos/obama.jpg",
     "4821"),
    ("cus_demo_joe", "Joseph Biden", "***-**-4321", "+15550100102", "medium", "photos/biden.jpg",
     "7305"),
    ("cus_demo_eileen", "Eileen Collins", "***-**-1111", "+15550100103", "low",
     "photos/astronaut.png", "1966"),
    ("cus_demo_grace", "Grace Hopper", "***-**-2222", "+15550100104", "medium", None, "1906"),
    ("cus_demo_morgan", "Morgan Reyes", "***-**-3333", "+15550100105", "high", None, "0042"),
]
# customer id, kind, days before the seed: Joe changed his contact details three days ago
# (a large transfer now shows the account-takeover pattern)
DEMO_ACCOUNT_CHANGES = [("cus_demo_joe", "contact_details", 3)]
# what the bank's systems say a demo call is about (the demo customer token carries it)
DEMO_SUBJECTS: dict[str, dict[str, Any]] = {
    "cus_demo_barack": {"reference": "TRF-2026-0042", "amount": 25000.0, "currency": "EUR",
                        "payee": "Northwind Motors Ltd", "purpose": "car purchase"},
    "cus_demo_joe": {"reference": "TRF-2026-0077", "amount": 48000.0, "currency": "EUR",
                     "payee": "Harbour Trading Co", "purpose": "invoice 2231"},
    "cus_demo_eileen": {"reference": "APP-2026-1138", "amount": 32000.0, "currency": "EUR",
                        "payee": "CloudCounter Bank car loans", "purpose": "car loan"},
}


async def seed(sm: async_sessionmaker, faces_dir: Path) -> list[str]:
    """Create what is missing; return lines describing what was created."""
    created: list[str] = []
    for username, password, role, name, skills in DEMO_USERS:
        if await repo.get_user(sm, username=username) is None:
            await accounts.create(sm, username=username, password=password, role=role,
                                  display_name=name, skills=skills)
            created.append(f"user {username} ({role.value})")
    async with sm() as s, s.begin():  # rules only where an administrator has set none
        for code, rules in DEMO_ROUTING.items():
            service = await s.get(ServiceType, code)
            if service is not None and service.routing is None:
                service.routing = rules.to_dict()
                created.append(f"routing rules of {code}")
    async with sm() as s, s.begin():
        existing = set((await s.scalars(select(Customer.id))).all())
        for cid, name, idn, phone, risk, photo, card in DEMO_CUSTOMERS:
            if cid in existing:
                continue
            path, descriptor = None, None
            if photo and (faces_dir / photo).is_file():
                path, descriptor = await asyncio.to_thread(enrol_photo, faces_dir / photo)
            s.add(Customer(id=cid, name=name, id_number_masked=idn, phone=phone, risk_level=risk,
                           card_last4=card, photo_path=str(path) if path else None,
                           face_descriptor=descriptor))
            created.append(f"customer {cid} ({name})" + ("" if path else ", no reference photo"))
            for change_cid, kind, days in DEMO_ACCOUNT_CHANGES:
                if change_cid == cid:
                    await s.flush()
                    s.add(CustomerAccountChange(
                        customer_id=cid, kind=kind, channel="branch", detail="demo data",
                        changed_at=utc(time.time() - days * 86400)))
    store = BusinessStore(sm)
    for path in sorted(SCRIPTS_DIR.glob("*.yaml")):
        service = path.stem
        if await store.current_script(service) is None:
            data = yaml.safe_load(await asyncio.to_thread(path.read_text))
            script = await store.import_script(service, data, "demo:seed",
                                               "seeded by cloudcounter demo seed")
            created.append(f"script {service} v{script.version} ({len(script.steps)} steps)")
    from cloudcounter.credit.seed import seed_roster  # interview appointments
    created += await seed_roster(sm)
    return created



def credentials_text(base_url: str) -> str:
    lines = ["Demo accounts (local demo only):"]
    for username, password, role, name, skills in DEMO_USERS:
        extra = f", skills {','.join(skills)}" if skills else ""
        lines.append(f"  {role.value:8} {username:7} / {password}   ({name}{extra})")
    lines.append(f"Customer page: {base_url}/customer  (pick a demo customer)")
    lines.append(f"Agent console: {base_url}/agent")
    lines.append(f"Approvals:     {base_url}/lead  (team leads)")
    lines.append(f"Audit replay:  {base_url}/audit")
    return "\n".join(lines)
