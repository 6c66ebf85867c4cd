"""The credit adapter against the reference credit service over real HTTP, with faults:
slow answers, 500s, malformed JSON, connection refused, the circuit breaker; and the
service's idempotency (a result recorded once per key)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator


import aiohttp
import pytest

from cloudcounter.business.credit_client import (
    CircuitBreaker, CreditClient, CreditConfig, CreditError,
)
from cloudcounter.credit.contract import InterviewResult
from tests.credit_service import CreditService
from tests.webhook_receiver import free_port

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[CreditService]:
    svc = await CreditService(tmp_path).start()
    yield svc
    await svc.stop()


async def client_for(url: str, **kw: object) -> CreditClient:
    cfg = dict(base_url=url, timeout_s=1.0, retries=2, backoff_base_s=0.01,
               backoff_max_s=0.05, breaker_threshold=3, breaker_reset_s=30.0)
    clock = kw.pop("clock", None) or Clock()
    cfg.update(kw)
    c = CreditClient(CreditConfig(**cfg), clock=clock)  # type: ignore[arg-type]
    await c.start()
    return c


def result(app_id: str = "APP-2026-1138", outcome: str = "pass") -> InterviewResult:
    return InterviewResult(
        application_id=app_id, customer_id="cus_demo_eileen", call_id="call_" + "ab" * 8,
        outcome=outcome, reasons=["income confirmed"], interviewer="agent:bob",  # type: ignore[arg-type]
        interviewed_at="2026-11-29T22:00:00+00:00",
        recordings=[{"id": "rec1", "participant": "customer", "sha256": "0" * 64}],  # type: ignore[list-item]
        answers=[{"question": "employer", "text": "Who is your employer?",  # type: ignore[list-item]
                  "answer": "Orbital Logistics GmbH"}])


async def test_reads_applications_of_a_customer_and_one_in_full(service: CreditService
                                                                 ) -> None:
    c = await client_for(service.url)
    try:
        apps = await c.applications("cus_demo_eileen")
        assert [a.id for a in apps.applications] == ["APP-2026-1138"]
        a = await c.application("APP-2026-1138")
        assert a.customer_id == "cus_demo_eileen"
        assert a.applicant.employer == "Orbital Logistics GmbH"
        assert a.loan_amount == 32000 and a.down_payment == 8000 and a.term_months == 60
        assert a.credit_report.score_band == "A"
        assert (await c.applications("cus_nobody")).applications == []
        with pytest.raises(CreditError) as e:
            await c.application("APP-0000")
        assert e.value.code == "credit_not_found"
    finally:
        await c.stop()


async def test_a_result_is_recorded_once_per_idempotency_key(service: CreditService) -> None:
    c = await client_for(service.url)
    try:
        first = await c.post_result(result(), "crd_key_0001")
        again = await c.post_result(result(), "crd_key_0001")
        assert not first.duplicate and again.duplicate
        assert again.result_id == first.result_id
        with pytest.raises(CreditError) as e:  # the same key, another body
            await c.post_result(result(outcome="decline"), "crd_key_0001")
        assert e.value.code == "credit_conflict"
        rows = await service.results("APP-2026-1138")
        assert len(rows) == 1 and rows[0]["outcome"] == "pass"
        assert rows[0]["idempotency_key"] == "crd_key_0001"
    finally:
        await c.stop()


async def test_the_service_refuses_bad_results(service: CreditService) -> None:
    url = service.url + "/v1/applications/APP-2026-1138/interview-results"
    good = result().model_dump(mode="json")
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=good) as r:  # no idempotency key
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "idempotency_key_required"
        for bad in ({**good, "outcome": "maybe"}, {**good, "extra": 1},
                    {**good, "interviewer": "a\u0000b"}, {**good, "application_id": "APP-1"}):
            async with http.post(url, json=bad, headers={"Idempotency-Key": "k" * 10}) as r:
                assert r.status == 400, bad
                assert (await r.json())["error"]["code"] == "invalid_result"
        async with http.post(url, data=b"{not json", headers={
                "Idempotency-Key": "k" * 10, "Content-Type": "application/json"}) as r:
            assert r.status == 400
    assert await service.results() == []


async def test_a_slow_answer_times_out_and_is_retried(service: CreditService) -> None:
    service.faults.mode, service.faults.times, service.faults.delay_s = "slow", 1, 30.0
    c = await client_for(service.url, timeout_s=1.5)
    try:
        a = await c.application("APP-2026-1138")  # the first attempt times out, the next works
        assert a.id == "APP-2026-1138" and c.requests == 2
        service.faults.times = None  # always slow: the agent gets a clear error
        with pytest.raises(CreditError) as e:
            await c.application("APP-2026-1138")
        assert e.value.code == "credit_timeout"
        assert c.requests == 2 + 3  # bounded: one try and two retries
    finally:
        await c.stop()


async def test_500s_are_retried_with_a_bound(service: CreditService) -> None:
    service.faults.mode, service.faults.times = "500", 2
    c = await client_for(service.url)
    try:
        assert (await c.applications("cus_demo_eileen")).applications
        assert c.requests == 3
        service.faults.times = None
        with pytest.raises(CreditError) as e:
            await c.applications("cus_demo_eileen")
        assert e.value.code == "credit_unavailable" and e.value.status == 500
        assert c.requests == 6
    finally:
        await c.stop()


async def test_a_malformed_answer_is_an_error_not_retried(service: CreditService) -> None:
    c = await client_for(service.url)
    try:
        for mode in ("garbage", "wrong"):
            service.faults.mode = mode
            before = c.requests
            with pytest.raises(CreditError) as e:
                await c.application("APP-2026-1138")
            assert e.value.code == "credit_bad_response", mode
            assert c.requests == before + 1
    finally:
        await c.stop()


async def test_connection_refused_then_the_circuit_opens_and_closes(tmp_path: Path) -> None:
    port = free_port()
    clock = Clock()
    c = await client_for(f"http://127.0.0.1:{port}", clock=clock, retries=1,
                         breaker_threshold=4, breaker_reset_s=30.0)
    try:
        with pytest.raises(CreditError) as e:
            await c.applications("cus_demo_eileen")
        assert e.value.code == "credit_unavailable" and "unreachable" in e.value.message
        with pytest.raises(CreditError):
            await c.applications("cus_demo_eileen")
        assert c.requests == 4 and c.circuit == "open"
        with pytest.raises(CreditError) as e:  # fails at once: no request made
            await c.applications("cus_demo_eileen")
        assert "circuit open" in e.value.message and c.requests == 4
        svc = await CreditService(tmp_path, port=port).start()  # the system comes back
        try:
            with pytest.raises(CreditError):  # still open until the reset time
                await c.applications("cus_demo_eileen")
            clock.t += 31  # half-open: one trial goes through and closes the circuit
            assert c.circuit == "half_open"
            assert (await c.applications("cus_demo_eileen")).applications
            assert c.circuit == "closed" and c.requests == 5
        finally:
            await svc.stop()
    finally:
        await c.stop()


async def test_the_bearer_token_is_sent(tmp_path: Path) -> None:
    svc = await CreditService(tmp_path, token="t0ken-for-the-credit-system").start()
    try:
        c = await client_for(svc.url)
        with pytest.raises(CreditError) as e:
            await c.applications("cus_demo_eileen")
        assert e.value.code == "credit_refused" and e.value.status == 401
        await c.stop()
        c = await client_for(svc.url, token="t0ken-for-the-credit-system")
        assert (await c.applications("cus_demo_eileen")).applications
        await c.stop()
    finally:
        await svc.stop()


def test_circuit_breaker_states() -> None:
    b = CircuitBreaker(threshold=2, reset_s=10)
    assert b.allow(0) and b.state(0) == "closed"
    b.failure(0)
    assert b.state(0) == "closed"
    b.failure(1)
    assert b.state(1) == "open" and not b.allow(5)
    assert b.state(11) == "half_open" and b.allow(11) and not b.allow(11)  # one trial
    b.failure(12)  # the trial failed: open again
    assert b.state(12) == "open" and not b.allow(21)
    assert b.allow(22)
    b.success()
    assert b.state(22) == "closed" and b.failures == 0


def test_the_openapi_contract_is_valid_and_matches_the_reference_service(tmp_path: Path
                                                                         ) -> None:
    import yaml
    from openapi_spec_validator import validate

    from cloudcounter.credit.service import create_credit_app
    from tests.conftest import ROOT

    spec = yaml.safe_load((ROOT / "docs/credit-system.openapi.yaml").read_text())
    validate(spec)
    documented = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    app = create_credit_app(str(tmp_path / "c.db"))
    served = {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    assert documented == served


def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (PEM files)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, k: Any, issuer: str, ik: Any, ca: bool = False,
             san: Any = None) -> x509.Certificate:
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san is not None:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(ik, hashes.SHA256())

    ca_key, server_key, client_key = key(), key(), key()
    ca = cert("test CA", ca_key, "test CA", ca_key, ca=True)
    server = cert("127.0.0.1", server_key, "test CA", ca_key,
                  san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    client = cert("hub", client_key, "test CA", ca_key)
    out = {}
    for label, c, k in (("ca", ca, None), ("server", server, server_key),
                        ("client", client, client_key)):
        out[label] = tmp / f"{label}.pem"
        out[label].write_bytes(c.public_bytes(serialization.Encoding.PEM))
        if k is not None:
            out[label + "_key"] = tmp / f"{label}.key"
            out[label + "_key"].write_bytes(k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()))
    return out


async def test_mutual_tls(tmp_path: Path) -> None:
    import ssl

    from aiohttp import web

    from cloudcounter.credit.service import create_credit_app

    pki = _pki(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki["ca"]))
    server_ctx.load_cert_chain(str(pki["server"]), str(pki["server_key"]))
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # the hub must show its certificate
    runner = web.AppRunner(create_credit_app(str(tmp_path / "c.db")), shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ctx).start()
    url = f"https://127.0.0.1:{port}"
    try:
        c = await client_for(url, ca_file=str(pki["ca"]), retries=0)
        with pytest.raises(CreditError) as e:  # no client certificate: refused
            await c.applications("cus_demo_eileen")
        assert e.value.code == "credit_unavailable"
        await c.stop()
        c = await client_for(url, ca_file=str(pki["ca"]), client_cert=str(pki["client"]),
                             client_key=str(pki["client_key"]))
        assert [a.id for a in (await c.applications("cus_demo_eileen")).applications] == [
            "APP-2026-1138"]
        await c.stop()
    finally:
        await runner.cleanup()
