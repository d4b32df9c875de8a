"""End-to-end: the official `openai` Python SDK against a real `certgate serve` process.

Run: CERTGATE_BIN=target/release/certgate python -m pytest tests/e2e -q
Each test runs twice: on a fresh SQLite file and on a fresh PostgreSQL schema (skipped with a
reason when no PostgreSQL is reachable). Fixtures are in conftest.py.
"""

from __future__ import annotations

import datetime as dt
import time

import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import Server, create_org

# --------------------------------------------------------------------------------------------
# Certificates made with `cryptography`


def make_cert(cn: str, *, ca: bool = True, days: int = 365) -> tuple[str, x509.Certificate]:
    """A self-signed P-256 certificate as PEM. `ca=True`: CA:TRUE (critical), keyUsage
    keyCertSign+cRLSign (critical), SKI. `ca=False`: an end-entity certificate (CA:FALSE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM).decode(), cert


def epoch(t: dt.datetime) -> int:
    return int(t.replace(tzinfo=dt.timezone.utc).timestamp()) if t.tzinfo is None else int(t.timestamp())


# --------------------------------------------------------------------------------------------
# An SDK client that counts the HTTP requests it sends


class Counter:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def hook(self, request) -> None:
        self.requests.append((request.method, request.url.path))

    def reset(self) -> None:
        self.requests.clear()


def make_client(server: Server, key: str | None = None, counter: Counter | None = None, **kw) -> openai.OpenAI:
    # Every answer is also checked against the server's /openapi.json (openapi_conformance).
    hooks = {"response": [server.conformance.check]}
    if counter is not None:
        hooks["request"] = [counter.hook]
    http_client = openai.DefaultHttpxClient(event_hooks=hooks)
    return openai.OpenAI(
        admin_api_key=key or server.admin_key,
        api_key="unused",
        base_url=server.base_url,
        http_client=http_client,
        # Every response must match the SDK's models exactly (missing required fields fail).
        _strict_response_validation=True,
        **kw,
    )


def assert_request_id(rid) -> None:
    assert isinstance(rid, str) and rid.startswith("req_"), rid


# --------------------------------------------------------------------------------------------
# The whole lifecycle


def test_certificate_lifecycle(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    certs = client.admin.organization.certificates

    pem_a, x_a = make_cert("e2e root A")
    pem_b, x_b = make_cert("e2e root B")
    # Uploaded content is given back byte for byte, surrounding whitespace and all.
    pem_b_as_sent = "\n" + pem_b + "\n\n"

    # --- upload
    a = certs.create(certificate=pem_a, name="Root A")
    assert a.object == "certificate"
    assert a.id.startswith("cert_")
    assert a.name == "Root A"
    assert isinstance(a.created_at, int) and abs(a.created_at - time.time()) < 300
    assert a.certificate_details.valid_at == epoch(x_a.not_valid_before_utc)
    assert a.certificate_details.expires_at == epoch(x_a.not_valid_after_utc)
    assert a.certificate_details.content is None
    assert a.active is None, "active is not returned on upload"
    assert_request_id(a._request_id)

    b = certs.create(certificate=pem_b_as_sent)  # no name
    assert b.object == "certificate" and b.name is None
    assert b.id != a.id

    # --- retrieve, with and without content
    got = certs.retrieve(a.id, include=["content"])
    assert got.object == "certificate" and got.id == a.id and got.name == "Root A"
    assert got.certificate_details.content == pem_a
    assert got.certificate_details.valid_at == a.certificate_details.valid_at
    assert got.certificate_details.expires_at == a.certificate_details.expires_at
    assert got.active is None
    assert_request_id(got._request_id)
    assert certs.retrieve(b.id, include=["content"]).certificate_details.content == pem_b_as_sent
    plain = certs.retrieve(a.id)
    assert plain.certificate_details.content is None
    assert plain.certificate_details.valid_at == a.certificate_details.valid_at

    # --- update the name
    upd = certs.update(b.id, name="Root B")
    assert upd.object == "certificate" and upd.id == b.id and upd.name == "Root B"
    assert upd.created_at == b.created_at
    assert certs.retrieve(b.id).name == "Root B"

    # --- list (desc by default): both, inactive
    page = certs.list()
    assert [c.id for c in page.data] == [b.id, a.id]
    assert page.has_more is False and page.last_id == a.id
    for c in page.data:
        assert c.object == "organization.certificate"
        assert c.active is False
    assert_request_id(page._request_id)

    # --- organization activate / deactivate
    act = certs.activate(certificate_ids=[a.id, b.id])
    assert act.object == "organization.certificate.activation"
    assert [c.id for c in act.data] == [a.id, b.id], "items in request order"
    for c in act.data:
        assert c.object == "organization.certificate" and c.active is True
    assert {c.id: c.name for c in act} == {a.id: "Root A", b.id: "Root B"}
    # idempotent
    again = certs.activate(certificate_ids=[a.id])
    assert [c.active for c in again.data] == [True]

    deact = certs.deactivate(certificate_ids=[b.id])
    assert deact.object == "organization.certificate.deactivation"
    assert [(c.id, c.object, c.active) for c in deact.data] == [(b.id, "organization.certificate", False)]
    assert {c.id: c.active for c in certs.list()} == {a.id: True, b.id: False}

    # --- projects and project-scoped certificates
    proj = client.admin.organization.projects.create(name="e2e project")
    assert proj.object == "organization.project" and proj.id.startswith("proj_")
    assert proj.name == "e2e project" and proj.status == "active" and proj.archived_at is None
    assert client.admin.organization.projects.retrieve(proj.id).id == proj.id

    pcerts = client.admin.organization.projects.certificates
    plist = pcerts.list(proj.id)
    assert {c.id for c in plist.data} == {a.id, b.id}, "the project list shows every certificate"
    for c in plist.data:
        assert c.object == "organization.project.certificate"
        assert c.active is False, "organization activation does not leak into project scope"

    pact = pcerts.activate(proj.id, certificate_ids=[b.id])
    assert pact.object == "organization.project.certificate.activation"
    assert [(c.id, c.object, c.active) for c in pact.data] == [(b.id, "organization.project.certificate", True)]
    assert {c.id: c.active for c in pcerts.list(proj.id)} == {a.id: False, b.id: True}
    assert {c.id: c.active for c in certs.list()} == {a.id: True, b.id: False}, "scopes are independent"

    # --- delete while active: 409 certificate_in_use, sent exactly once (no SDK retry)
    for cid, scope_id in ((b.id, proj.id), (a.id, None)):
        counter.reset()
        t0 = time.monotonic()
        with pytest.raises(openai.ConflictError) as ei:
            certs.delete(cid)
        elapsed = time.monotonic() - t0
        err = ei.value
        assert err.status_code == 409
        assert err.code == "certificate_in_use"
        assert err.response.headers.get("x-should-retry") == "false"
        assert counter.requests == [("DELETE", f"/v1/organization/certificates/{cid}")], counter.requests
        assert elapsed < 2.0, f"409 took {elapsed:.2f}s: the SDK retried?"
        assert_request_id(err.request_id)
        if scope_id:
            assert scope_id in err.message
    assert certs.retrieve(a.id).id == a.id and certs.retrieve(b.id).id == b.id

    # --- project deactivate, organization deactivate, then delete
    pdeact = pcerts.deactivate(proj.id, certificate_ids=[b.id])
    assert pdeact.object == "organization.project.certificate.deactivation"
    assert [(c.id, c.active) for c in pdeact.data] == [(b.id, False)]
    assert certs.deactivate(certificate_ids=[a.id]).data[0].active is False

    for cid in (a.id, b.id):
        d = certs.delete(cid)
        assert d.object == "certificate.deleted" and d.id == cid
        assert_request_id(d._request_id)
        with pytest.raises(openai.NotFoundError):
            certs.retrieve(cid)
    assert certs.list().data == []
    empty = certs.list()
    assert empty.has_more is False and empty.last_id is None
    assert pcerts.list(proj.id).data == []


def test_archived_project_ends_activations(server: Server):
    client = make_client(server)
    certs = client.admin.organization.certificates
    pem, _ = make_cert("archived-project root")
    c = certs.create(certificate=pem)
    projects = client.admin.organization.projects
    p = projects.create(name="to archive")
    client.admin.organization.projects.certificates.activate(p.id, certificate_ids=[c.id])
    with pytest.raises(openai.ConflictError):
        certs.delete(c.id)
    archived = projects.archive(p.id)
    assert archived.status == "archived" and isinstance(archived.archived_at, int)
    with pytest.raises(openai.BadRequestError) as ei:
        client.admin.organization.projects.certificates.activate(p.id, certificate_ids=[c.id])
    assert ei.value.code == "project_archived"
    # deactivate on an archived project is an idempotent no-op; delete no longer blocked
    client.admin.organization.projects.certificates.deactivate(p.id, certificate_ids=[c.id])
    assert certs.delete(c.id).id == c.id


# --------------------------------------------------------------------------------------------
# Auto-pagination over more than 20 certificates


def test_auto_pagination(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    certs = client.admin.organization.certificates
    uploaded = [certs.create(certificate=make_cert(f"page root {i}")[0], name=f"c{i:02}").id for i in range(23)]
    assert len(set(uploaded)) == 23

    # default page: 20 items, has_more
    first = certs.list()
    assert len(first.data) == 20 and first.has_more is True and first.last_id == first.data[-1].id

    counter.reset()
    seen = [c.id for c in certs.list(limit=5)]  # iterating the page auto-paginates
    assert len(seen) == 23 and set(seen) == set(uploaded), "every id exactly once"
    assert seen == list(reversed(uploaded)), "desc by created_at, ties by insertion"
    assert len(counter.requests) == 5, counter.requests  # 5+5+5+5+3

    # explicit page walk
    page = certs.list(limit=5, order="asc")
    pages = [page]
    while page.has_next_page():
        page = page.get_next_page()
        pages.append(page)
    assert [len(p.data) for p in pages] == [5, 5, 5, 5, 3]
    assert [p.has_more for p in pages] == [True, True, True, True, False]
    assert [c.id for p in pages for c in p.data] == uploaded

    # a deleted object stays a valid cursor
    p1 = certs.list(limit=5)
    certs.delete(p1.last_id)
    rest = [c.id for c in certs.list(limit=5, after=p1.last_id)]
    assert rest == list(reversed(uploaded))[5:]

    # the project list paginates the same way
    proj = client.admin.organization.projects.create(name="paging")
    pseen = [c.id for c in client.admin.organization.projects.certificates.list(proj.id, limit=4)]
    assert pseen == [i for i in reversed(uploaded) if i != p1.last_id]


# --------------------------------------------------------------------------------------------
# Errors map to the SDK's exception classes


def test_errors(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    certs = client.admin.organization.certificates

    # not a CA
    leaf_pem, _ = make_cert("not a ca", ca=False)
    with pytest.raises(openai.BadRequestError) as ei:
        certs.create(certificate=leaf_pem)
    assert ei.value.status_code == 400
    assert ei.value.code == "invalid_certificate" and ei.value.param == "certificate"
    assert ei.value.type == "invalid_request_error"
    assert_request_id(ei.value.request_id)

    # garbage and private keys
    with pytest.raises(openai.BadRequestError) as ei:
        certs.create(certificate="hello")
    assert ei.value.code == "invalid_certificate"
    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    ca_pem, _ = make_cert("with key")
    with pytest.raises(openai.BadRequestError) as ei:
        certs.create(certificate=ca_pem + key_pem)
    assert ei.value.code == "private_key_not_allowed"

    # duplicate: 409, not retried
    c = certs.create(certificate=ca_pem)
    counter.reset()
    with pytest.raises(openai.ConflictError) as ei:
        certs.create(certificate=ca_pem)
    assert ei.value.code == "certificate_already_exists" and c.id in ei.value.message
    assert len(counter.requests) == 1

    # unknown ids
    with pytest.raises(openai.NotFoundError) as ei:
        certs.retrieve("cert_doesnotexist")
    assert ei.value.status_code == 404
    assert_request_id(ei.value.request_id)
    with pytest.raises(openai.NotFoundError):
        certs.update("cert_doesnotexist", name="x")
    with pytest.raises(openai.NotFoundError):
        certs.delete("cert_doesnotexist")
    with pytest.raises(openai.NotFoundError) as ei:
        certs.activate(certificate_ids=[c.id, "cert_doesnotexist"])
    assert ei.value.param == "certificate_ids" and "cert_doesnotexist" in ei.value.message
    assert certs.list().data[0].active is False, "nothing changed"
    with pytest.raises(openai.NotFoundError):
        client.admin.organization.projects.certificates.list("proj_doesnotexist")

    # toggle limits
    with pytest.raises(openai.BadRequestError) as ei:
        certs.activate(certificate_ids=[f"cert_{i}" for i in range(11)])
    assert ei.value.param == "certificate_ids"
    with pytest.raises(openai.BadRequestError):
        certs.deactivate(certificate_ids=[])
    with pytest.raises(openai.BadRequestError):
        certs.activate(certificate_ids=[c.id, c.id])

    # bad query parameters
    with pytest.raises(openai.BadRequestError) as ei:
        certs.list(limit=101)
    assert ei.value.param == "limit"
    with pytest.raises(openai.BadRequestError) as ei:
        certs.list(after="cert_neverissued")
    assert ei.value.param == "after"

    # the SDK refuses an empty path id before sending anything
    counter.reset()
    with pytest.raises(ValueError):
        certs.retrieve("")
    assert counter.requests == []

    # wrong key: 401, not retried
    bad_counter = Counter()
    bad = make_client(server, key="sk-admin-" + "0" * 64, counter=bad_counter)
    with pytest.raises(openai.AuthenticationError) as ei:
        bad.admin.organization.certificates.list()
    assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
    assert_request_id(ei.value.request_id)
    assert len(bad_counter.requests) == 1
    with pytest.raises(openai.AuthenticationError):
        make_client(server, key="garbage").admin.organization.certificates.activate(certificate_ids=[c.id])


def test_organizations_are_isolated(server: Server):
    key_b, org_b = create_org(server.database, "Second org")
    assert key_b.startswith("sk-admin-") and org_b["id"] != server.org["id"]
    a = make_client(server).admin.organization.certificates
    b = make_client(server, key=key_b).admin.organization.certificates
    pem, _ = make_cert("shared root")
    ca = a.create(certificate=pem, name="in A")
    assert b.list().data == []
    with pytest.raises(openai.NotFoundError):
        b.retrieve(ca.id)
    with pytest.raises(openai.NotFoundError):
        b.activate(certificate_ids=[ca.id])
    # the same certificate may be uploaded by another organization: its own object
    cb = b.create(certificate=pem, name="in B")
    assert cb.id != ca.id
    assert [c.id for c in b.list()] == [cb.id]


def test_graceful_shutdown(server: Server):
    client = make_client(server)
    assert client.admin.organization.certificates.list().data == []
    assert server.stop() == 0
    assert server.proc.returncode == 0
