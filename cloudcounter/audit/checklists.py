"""Review checklists per service (versioned data in ``data/checklists.yaml``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from cloudcounter.errors import InvalidMessage

DATA = Path(__file__).parent / "data" / "checklists.yaml"
ID = re.compile(r"^[a-z][a-z0-9_]{0,47}$")


@dataclass(frozen=True)
class Item:
    id: str
    text: str


@dataclass(frozen=True)
class Checklists:
    version: int
    categories: tuple[str, ...]
    common: tuple[Item, ...]
    services: dict[str, tuple[Item, ...]]

    def for_service(self, service: str) -> tuple[Item, ...]:
        return self.common + self.services.get(service, ())

    @classmethod
    def parse(cls, text: str) -> "Checklists":
        def bad(why: str) -> InvalidMessage:
            return InvalidMessage(f"checklists: {why}", code="invalid_checklists")
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict) or set(raw) != {"version", "categories", "common",
                                                     "services"}:
            raise bad("expected version, categories, common and services")
        if not isinstance(raw["version"], int) or raw["version"] < 1:
            raise bad("version must be a positive whole number")

        def items(lst: object) -> tuple[Item, ...]:
            if not isinstance(lst, list):
                raise bad("items are a list")
            out = []
            for i in lst:
                if not isinstance(i, dict) or set(i) != {"id", "text"} or \
                        not ID.match(str(i["id"])) or not isinstance(i["text"], str):
                    raise bad(f"an item is {{id, text}}: {i!r}")
                out.append(Item(i["id"], i["text"]))
            return tuple(out)
        common = items(raw["common"])
        services = {str(k): items(v) for k, v in (raw["services"] or {}).items()}
        for k, v in services.items():
            ids = [i.id for i in common + v]
            if len(ids) != len(set(ids)):
                raise bad(f"service {k}: an item id is used twice")
        cats = raw["categories"]
        if not isinstance(cats, list) or not all(isinstance(c, str) and ID.match(c)
                                                 for c in cats):
            raise bad("categories are a list of ids")
        return cls(raw["version"], tuple(cats), common, services)


@lru_cache(maxsize=1)
def default_checklists() -> Checklists:
    return Checklists.parse(DATA.read_text(encoding="utf-8"))
