"""Demo data: agents with different skills, an auditor, an admin and several customers.

Idempotent: running it again adds nothing that exists. Passwords are for local demos only.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker

from cloudcounter.db import repo
from cloudcounter.db.models import Customer, Role
from cloudcounter.agents import accounts
from cloudcounter.hub.customers import enrol_photo

DEMO_USERS = [
    # username, password, role, display name, skills
    ("alice", "alice-demo-1", Role.AGENT, "Alice Chen", ["cards", "security", "accounts"]),
    ("bob", "bob-demo-123", Role.AGENT, "Bob Martin", ["payments", "loans"]),
    ("carol", "carol-demo-1", Role.AGENT, "Carol Diaz",
     ["cards", "security", "accounts", "payments", "loans"]),
    ("audrey", "audrey-demo-1", Role.AUDITOR, "Audrey Klein", []),
    ("admin", "admin-demo-1", Role.ADMIN, "Operations Admin", []),
]

# id, name, masked id number, phone, risk level, reference photo (relative to the faces dir)
DEMO_CUSTOMERS = [
    ("cus_demo_barack", "Barack Obama", "***-**-6789", "+15550100101", "low", "photos/obama.jpg"),
    ("cus_demo_joe", "Joseph Biden", "***-**-4321", "+15550100102", "medium", "photos/biden.jpg"),
    ("cus_demo_eileen", "Eileen Collins", "***-**-1111", "+15550100103", "low",
     "photos/astronaut.png"),
    ("cus_demo_grace", "Grace Hopper", "***-**-2222", "+15550100104", "high", None),
]


async def seed(sm: async_sessionmaker, faces_dir: Path) -> list[str]:
    """Create what is missing; return lines describing what was created."""
    created: list[str] = []
    for username, password, role, name, skills in DEMO_USERS:
        if await repo.get_user(sm, username=username) is None:
            await accounts.create(sm, username=username, password=password, role=role,
                                  display_name=name, skills=skills)
            created.append(f"user {username} ({role.value})")
    async with sm() as s, s.begin():
        existing = set((await s.scalars(select(Customer.id))).all())
        for cid, name, idn, phone, risk, photo in DEMO_CUSTOMERS:
            if cid in existing:
                continue
            path, descriptor = None, None
            if photo and (faces_dir / photo).is_file():
                path, descriptor = await asyncio.to_thread(enrol_photo, faces_dir / photo)
            s.add(Customer(id=cid, name=name, id_number_masked=idn, phone=phone, risk_level=risk,
                           photo_path=str(path) if path else None, face_descriptor=descriptor))
            created.append(f"customer {cid} ({name})" + ("" if path else ", no reference photo"))
    return created


def credentials_text(base_url: str) -> str:
    lines = ["Demo accounts (local demo only):"]
    for username, password, role, name, skills in DEMO_USERS:
        extra = f", skills {','.join(skills)}" if skills else ""
        lines.append(f"  {role.value:8} {username:7} / {password}   ({name}{extra})")
    lines.append(f"Customer page: {base_url}/customer  (pick a demo customer)")
    lines.append(f"Agent console: {base_url}/agent")
    lines.append(f"Audit replay:  {base_url}/audit")
    return "\n".join(lines)
