"""End-to-end: certificate insight (docs/decisions.md D19-D21) with the official `openai` SDK
(3.51) and strict response validation, against a real `certgate serve` on SQLite and PostgreSQL.

- `include[]=details` (sent with `extra_query`, as the SDK knows only `content`) keeps every
  answer valid for the SDK's models, and every field agrees with what Python `cryptography`
  computes for the same certificates (RSA 2048, P-256, P-384, Ed25519; names with escapes,
  multi-valued RDNs and OIDs without a short name): an implementation independent of
  certgate's.
- The check and rotate endpoints, which the SDK does not know, through the SDK's own
  `client.post` (the way to reach an undocumented route), with its error classes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib

import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import Server
from test_sdk import make_client

ADMIN = {"security": {"admin_api_key_auth": True}}
DETAILS = {"include[]": "details"}

# A name with everything RFC 4514 escaping has to get right.
TRICKY = x509.Name([
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "DE")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Acme, "Inc."; <x>')]),
    # Multi-valued RDN.
    x509.RelativeDistinguishedName([
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "#ops"),
        x509.NameAttribute(NameOID.USER_ID, "u+1"),
    ]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "pki@example.com")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.SERIAL_NUMBER, "42=x")]),
    x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, " Zürich CA\\ ")]),
])


def new_key(kind: str):
    return {
        "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ecdsa-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ecdsa-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
    }[kind]()


def sign(builder: x509.CertificateBuilder, key) -> x509.Certificate:
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


def make_ca(kind: str, name: x509.Name, *, serial: int, not_before: dt.datetime | None = None,
            days: int = 365):
    key = new_key(kind)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    start = not_before or now - dt.timedelta(hours=1)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    cert = sign(builder, key)
    return cert, key


def make_leaf(ca: x509.Certificate, ca_key) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    return sign(builder, ca_key).public_bytes(serialization.Encoding.PEM).decode()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def expected_details(cert: x509.Certificate, kind: str) -> dict:
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return {
        "valid_at": int(cert.not_valid_before_utc.timestamp()),
        "expires_at": int(cert.not_valid_after_utc.timestamp()),
        "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(),
        "spki_sha256": base64.b64encode(hashlib.sha256(spki).digest()).decode(),
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial_number": format(cert.serial_number, "x"),
        "key_algorithm": kind,
        "status": "valid",
        "crl": None,
    }


def test_details_agree_with_cryptography_and_keep_the_sdk_valid(server: Server):
    client = make_client(server)
    certs = client.admin.organization.certificates
    project = client.admin.organization.projects.create(name="insight")
    made = {}
    for i, kind in enumerate(["rsa-2048", "ecdsa-p256", "ecdsa-p384", "ed25519"]):
        cert, _ = make_ca(kind, TRICKY, serial=0x00F0_0000_0000_0000_0ABC + i)
        up = certs.create(certificate=pem(cert), name=kind)
        made[up.id] = (cert, kind)
    first = next(iter(made))
    certs.activate(certificate_ids=[first])
    client.admin.organization.projects.certificates.activate(project.id, certificate_ids=[first])

    for cid, (cert, kind) in made.items():
        want = expected_details(cert, kind)
        assert want["subject"].startswith("CN=\\ Zürich CA\\\\\\ ,2.5.4.5=42=x,"), want["subject"]
        got = certs.retrieve(cid, extra_query=DETAILS)  # strict validation passes
        assert got.object == "certificate" and got.id == cid
        assert got.to_dict()["certificate_details"] == want, kind
        activations = {"organization": cid == first, "projects": [project.id] if cid == first else []}
        assert got.to_dict()["activations"] == activations
        # Beside content, through the SDK's own parameter.
        both = certs.retrieve(cid, include=["content"], extra_query=DETAILS)
        assert both.certificate_details.content == pem(cert)
        assert both.to_dict()["certificate_details"]["subject"] == want["subject"]

    # Lists, auto-paginated by the SDK (the query rides along to every page).
    listed = list(certs.list(limit=2, extra_query=DETAILS))
    assert sorted(c.id for c in listed) == sorted(made)
    for c in listed:
        cert, kind = made[c.id]
        assert c.object == "organization.certificate"
        assert c.to_dict()["certificate_details"] == expected_details(cert, kind)
        assert c.active == (c.id == first)
    in_project = list(client.admin.organization.projects.certificates.list(
        project.id, extra_query=DETAILS))
    assert {c.id: c.active for c in in_project} == {cid: cid == first for cid in made}
    assert all("activations" in c.to_dict() for c in in_project)
    # Without the extension nothing changes.
    plain = certs.retrieve(first)
    assert set(plain.to_dict()["certificate_details"]) == {"valid_at", "expires_at"}
    assert "activations" not in plain.to_dict()
    assert all("activations" not in c.to_dict() for c in certs.list())
    with pytest.raises(openai.BadRequestError) as e:
        certs.retrieve(first, extra_query={"include[]": "everything"})
    assert e.value.param == "include"


def test_check_and_rotate_through_the_sdk(server: Server):
    client = make_client(server)
    certs = client.admin.organization.certificates
    old, old_key = make_ca("ecdsa-p256", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")]),
                           serial=1)
    new, new_key_ = make_ca("rsa-2048", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "new")]),
                            serial=2)
    old_id = certs.create(certificate=pem(old), name="old").id
    new_id = certs.create(certificate=pem(new), name="new").id
    certs.activate(certificate_ids=[old_id])
    project = client.admin.organization.projects.create(name="payments")
    client.admin.organization.projects.certificates.activate(project.id, certificate_ids=[old_id])

    def check(leaf: str, project_id: str | None = None) -> dict:
        body = {"certificate": leaf}
        if project_id is not None:
            body["project_id"] = project_id
        return client.post("/organization/certificates/check", body=body, cast_to=object,
                           options=ADMIN)

    old_client, new_client = make_leaf(old, old_key), make_leaf(new, new_key_)
    assert check(old_client) == {
        "object": "organization.certificate_check", "admitted": True, "code": None,
        "message": check(old_client)["message"], "certificate": {"id": old_id, "name": "old"},
    }
    refused = check(new_client, project.id)
    assert refused["admitted"] is False and refused["code"] == "client_certificate_untrusted"
    assert refused["certificate"] is None
    with pytest.raises(openai.BadRequestError) as e:
        check(old_client, "proj_unknown")
    assert e.value.code == "unknown_project" and e.value.param == "project_id"
    with pytest.raises(openai.BadRequestError) as e:
        check("not a certificate")
    assert e.value.code == "invalid_certificate" and e.value.param == "certificate"

    def rotate(**body) -> dict:
        return client.post("/organization/certificates/rotate", body=body, cast_to=object,
                           options=ADMIN)

    # Stage, then retire.
    assert rotate(**{"from": old_id, "to": new_id}) == {
        "object": "organization.certificate_rotation", "from": old_id, "to": new_id,
        "organization": True, "projects": [project.id], "retired": False,
    }
    assert check(new_client, project.id)["admitted"] is True
    assert check(old_client, project.id)["admitted"] is True
    assert rotate(**{"from": old_id, "to": new_id, "retire_from": True})["retired"] is True
    assert check(new_client, project.id)["certificate"] == {"id": new_id, "name": "new"}
    assert check(old_client)["code"] == "client_certificate_untrusted"
    # One event per scope, read with the SDK: the retirement, then (older) the two toggles
    # that first activated `old`.
    events = list(client.admin.organization.audit_logs.list(
        event_types=["certificates.activated", "certificates.deactivated"], resource_ids=[old_id]))
    assert [e.type for e in events] == ["certificates.deactivated"] * 2 + ["certificates.activated"] * 2
    assert {getattr(e.project, "id", None) for e in events[:2]} == {None, project.id}
    staged_events = list(client.admin.organization.audit_logs.list(
        event_types=["certificates.activated"], resource_ids=[new_id]))
    assert len(staged_events) == 4, "the stage and the retirement each activated it in 2 scopes"

    # Refusals, with the SDK's error classes (no retries: x-should-retry is false).
    with pytest.raises(openai.NotFoundError) as e:
        rotate(**{"from": "cert_nope", "to": new_id})
    assert e.value.param == "from"
    with pytest.raises(openai.BadRequestError) as e:
        rotate(**{"from": new_id, "to": new_id})
    assert e.value.param == "to"
    with pytest.raises(openai.BadRequestError) as e:
        rotate(**{"from": old_id, "to": new_id})
    assert e.value.code == "certificate_not_active" and e.value.param == "from"
    future, _ = make_ca("ed25519", x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "future")]),
                        serial=3, not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2))
    future_id = certs.create(certificate=pem(future)).id
    with pytest.raises(openai.BadRequestError) as e:
        rotate(**{"from": new_id, "to": future_id, "retire_from": True})
    assert e.value.code == "certificate_not_yet_valid" and e.value.param == "to"
    staged = certs.retrieve(future_id, extra_query=DETAILS).to_dict()
    assert staged["certificate_details"]["status"] == "not_yet_valid"
    assert staged["activations"] == {"organization": False, "projects": []}
