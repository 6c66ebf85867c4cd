"""docs/openapi.yaml is a valid OpenAPI 3.1 document and lists every route of the app,
and nothing the app does not serve."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from openapi_spec_validator import validate

from cloudcounter.hub.app import create_app
from tests.conftest import ROOT, make_settings

SPEC = ROOT / "docs/openapi.yaml"
METHODS = {"get", "post", "put", "patch", "delete", "options"}


def app_routes(tmp_path: Path) -> set[tuple[str, str]]:
    app = create_app(make_settings(tmp_path))
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD" or route.resource is None:  # HEAD comes with GET
            continue
        path = route.resource.canonical
        if path == "/static":  # the static directory
            path = "/static/{filename}"
        out.add((route.method.lower(), path))
    return out


def spec_routes() -> set[tuple[str, str]]:
    spec = yaml.safe_load(SPEC.read_text())
    return {(method, path) for path, item in spec["paths"].items()
            for method in item if method in METHODS}


def test_the_openapi_document_is_valid() -> None:
    validate(yaml.safe_load(SPEC.read_text()))


def test_every_route_is_documented(tmp_path: Path) -> None:
    served, documented = app_routes(tmp_path), spec_routes()
    assert not served - documented, f"not in docs/openapi.yaml: {sorted(served - documented)}"
    assert not documented - served, f"documented, not served: {sorted(documented - served)}"


def test_api_md_names_every_api_route() -> None:
    text = (ROOT / "docs/api.md").read_text()
    missing = [f"{m.upper()} {p}" for m, p in sorted(spec_routes())
               if p.startswith("/api/") and not re.search(
                   rf"`{m.upper()} {re.escape(p)}`", text)]
    assert not missing, f"docs/api.md does not describe: {missing}"
