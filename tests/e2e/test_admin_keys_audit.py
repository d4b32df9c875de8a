"""End-to-end: admin API keys, the audit log and the Default project, through the official
`openai` Python SDK (3.51) against a real `certgate serve`, on SQLite and PostgreSQL.

Every endpoint and every audit-log filter is called the way the SDK calls it.
"""

from __future__ import annotations

import os
import stat
import time

import openai
import pytest

from conftest import Server, cli, create_org
from test_sdk import Counter, assert_request_id, make_cert, make_client

# --------------------------------------------------------------------------------------------
# Admin API keys


def test_admin_keys(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    keys = client.admin.organization.admin_api_keys
    owner_id = "user_" + server.org["id"].removeprefix("org-")

    first = list(keys.list())
    assert len(first) == 1
    k0 = first[0]
    assert k0.object == "organization.admin_api_key" and k0.id.startswith("key_")
    assert k0.redacted_value == "sk-admin..." + server.admin_key[-4:]
    assert k0.expires_at is None
    assert k0.owner.type == "user" and k0.owner.object == "organization.user"
    assert k0.owner.role == "owner" and k0.owner.id == owner_id
    assert k0.owner.name == server.org["name"] and k0.owner.created_at == server.org["created_at"]

    # create: the value, once
    made = keys.create(name="CI deploys", expires_in_seconds=3600)
    assert made.object == "organization.admin_api_key" and made.name == "CI deploys"
    assert made.value.startswith("sk-admin-") and made.redacted_value == "sk-admin..." + made.value[-4:]
    assert made.expires_at == made.created_at + 3600
    assert abs(made.created_at - time.time()) < 300
    assert made.last_used_at is None and made.owner.id == owner_id
    assert_request_id(made._request_id)

    # retrieve: the same key, no value
    got = keys.retrieve(made.id)
    assert got.id == made.id and got.name == "CI deploys" and got.expires_at == made.expires_at
    assert "value" not in got.model_dump()

    # the new key works and sees the same keys; its use shows within a minute
    ci = make_client(server, key=made.value).admin.organization.admin_api_keys
    assert {k.id for k in ci.list()} == {k0.id, made.id}
    deadline = time.monotonic() + 10
    while keys.retrieve(made.id).last_used_at is None:
        assert time.monotonic() < deadline, "last_used_at not recorded"
        time.sleep(0.1)

    # list: ascending by default, desc on request, auto-pagination on the last id
    third = keys.create(name="third")
    assert [k.id for k in keys.list()] == [k0.id, made.id, third.id]
    assert [k.id for k in keys.list(order="desc")] == [third.id, made.id, k0.id]
    counter.reset()
    assert [k.id for k in keys.list(limit=1)] == [k0.id, made.id, third.id]
    assert len(counter.requests) == 3, counter.requests
    page = keys.list(limit=2)
    assert page.has_more is True and [k.id for k in page.data] == [k0.id, made.id]

    # delete: the answer; the key stops working; its id 404s but stays a cursor
    deleted = keys.delete(made.id)
    assert deleted.object == "organization.admin_api_key.deleted"
    assert deleted.id == made.id and deleted.deleted is True
    assert_request_id(deleted._request_id)
    with pytest.raises(openai.AuthenticationError) as ei:
        ci.list()
    assert ei.value.code == "invalid_api_key"
    with pytest.raises(openai.NotFoundError):
        keys.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        keys.delete(made.id)
    assert [k.id for k in keys.list(after=made.id)] == [third.id]
    assert [k.id for k in keys.list()] == [k0.id, third.id]


def test_last_key_guard(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    keys = client.admin.organization.admin_api_keys
    (only,) = list(keys.list())
    counter.reset()
    with pytest.raises(openai.ConflictError) as ei:
        keys.delete(only.id)
    err = ei.value
    assert err.status_code == 409 and err.code == "last_admin_key"
    assert err.response.headers.get("x-should-retry") == "false"
    assert len(counter.requests) == 1, "a 409 the SDK must not retry"
    assert [k.id for k in keys.list()] == [only.id], "nothing changed"
    # With another key, the first may go (even deleting itself).
    other = keys.create(name="successor")
    keys.delete(only.id)
    with pytest.raises(openai.AuthenticationError):
        keys.list()
    successor = make_client(server, key=other.value).admin.organization.admin_api_keys
    assert [k.id for k in successor.list()] == [other.id]


def test_admin_key_errors(server: Server):
    keys = make_client(server).admin.organization.admin_api_keys
    cases = [
        (dict(name=""), "name"),
        (dict(name="x" * 257), "name"),
        (dict(name="x", expires_in_seconds=0), "expires_in_seconds"),
        (dict(name="x", expires_in_seconds=31_536_001), "expires_in_seconds"),
        (dict(name="x", extra_body={"expires_in_seconds": "soon"}), "expires_in_seconds"),
        (dict(name="x", extra_body={"scopes": ["all"]}), "scopes"),
    ]
    for kwargs, param in cases:
        with pytest.raises(openai.BadRequestError) as ei:
            keys.create(**kwargs)
        assert ei.value.param == param, (kwargs, ei.value.body)
        assert ei.value.type == "invalid_request_error"
    for kwargs, param in [(dict(limit=0), "limit"), (dict(limit=101), "limit"),
                          (dict(after="key_neverissued"), "after")]:
        with pytest.raises(openai.BadRequestError) as ei:
            keys.list(**kwargs)
        assert ei.value.param == param
    with pytest.raises(openai.NotFoundError):
        keys.retrieve("key_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        keys.delete("key_doesnotexist")
    assert len(list(keys.list())) == 1, "refusals made nothing"
    assert [e.type for e in make_client(server).admin.organization.audit_logs.list(
        event_types=["api_key.created"])] == ["api_key.created"]


def test_keys_are_tenant_isolated(server: Server):
    key_b, _ = create_org(server.database, "Other")
    a = make_client(server).admin.organization.admin_api_keys
    b = make_client(server, key=key_b).admin.organization.admin_api_keys
    (mine,) = list(a.list())
    (theirs,) = list(b.list())
    assert mine.id != theirs.id
    with pytest.raises(openai.NotFoundError):
        b.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        b.delete(mine.id)


# --------------------------------------------------------------------------------------------
# The Default project


def test_default_project(server: Server):
    projects = make_client(server).admin.organization.projects
    (default,) = list(projects.list())
    assert default.name == "Default project" and default.status == "active"
    with pytest.raises(openai.BadRequestError) as ei:
        projects.update(default.id, name="Renamed")
    assert ei.value.code == "default_project_update"
    with pytest.raises(openai.BadRequestError) as ei:
        projects.archive(default.id)
    assert ei.value.code == "default_project_archive"
    assert projects.retrieve(default.id).name == "Default project"


# --------------------------------------------------------------------------------------------
# The audit log


def ids(page) -> list[str]:
    return [e.id for e in page]


def types(page) -> list[str]:
    return [e.type for e in page]


def test_audit_log_events_and_filters(server: Server):
    client = make_client(server)
    org = client.admin.organization
    logs = org.audit_logs
    my_key = list(org.admin_api_keys.list())[0].id
    owner_id = "user_" + server.org["id"].removeprefix("org-")

    # The organization's birth: its Default project, its first key; actor null.
    born = list(logs.list())
    assert types(born) == ["api_key.created", "project.created"]
    assert all(e.actor is None for e in born)
    assert born[1].project_created.data.name == "Default project"
    assert born[1].project.name == "Default project"
    assert born[0].api_key_created.id == my_key

    pem, _ = make_cert("audited root")
    c = org.certificates.create(certificate=pem, name="Root")
    org.certificates.update(c.id, name="Root v2")
    p = org.projects.create(name="Payments")
    org.projects.update(p.id, name="Billing")
    org.projects.certificates.activate(p.id, certificate_ids=[c.id])
    org.certificates.activate(certificate_ids=[c.id])
    t_mid = int(time.time())
    time.sleep(1.1)  # effective_at is in seconds: a boundary between the halves
    org.certificates.deactivate(certificate_ids=[c.id])
    org.projects.archive(p.id)
    org.certificates.delete(c.id)
    k = org.admin_api_keys.create(name="second")
    second = make_client(server, key=k.value).admin.organization
    p2 = second.projects.create(name="By the second key")
    org.admin_api_keys.delete(k.id)

    everything = list(logs.list())
    assert types(everything) == [
        "api_key.deleted", "project.created", "api_key.created", "certificate.deleted",
        "project.archived", "certificates.deactivated", "certificates.activated",
        "certificates.activated", "project.updated", "project.created", "certificate.updated",
        "certificate.created", "api_key.created", "project.created",
    ]
    e = {(x.type, i): x for i, x in enumerate(everything)}
    by_type = lambda t: [x for x in everything if x.type == t]  # noqa: E731
    for x in everything[:-2]:
        assert x.id.startswith("audit_log-") and isinstance(x.effective_at, int)
        assert x.actor.type == "api_key" and x.actor.api_key.type == "user"
        assert x.actor.api_key.user.id == owner_id
    assert everything[1].actor.api_key.id == k.id
    assert by_type("certificate.created")[0].certificate_created.name == "Root"
    assert by_type("certificate.created")[0].project is None
    assert by_type("certificate.updated")[0].certificate_updated.name == "Root v2"
    deleted = by_type("certificate.deleted")[0].certificate_deleted
    assert deleted.id == c.id and deleted.name == "Root v2" and deleted.certificate == pem
    activated = by_type("certificates.activated")
    assert activated[1].project.id == p.id and activated[1].project.name == "Billing"
    assert activated[0].project is None
    assert [x.id for x in activated[0].certificates_activated.certificates] == [c.id]
    assert by_type("project.updated")[0].project_updated.changes_requested.title == "Billing"
    assert by_type("project.archived")[0].project_archived.id == p.id
    assert by_type("api_key.deleted")[0].api_key_deleted.id == k.id
    assert by_type("api_key.created")[0].api_key_created.data.scopes == []
    assert len(e) == 14

    # event_types
    assert types(logs.list(event_types=["certificate.created", "certificate.deleted"])) == [
        "certificate.deleted", "certificate.created"]
    assert list(logs.list(event_types=["login.succeeded"])) == []
    # project_ids: the project acted on
    assert types(logs.list(project_ids=[p.id])) == [
        "project.archived", "certificates.activated", "project.updated", "project.created"]
    assert types(logs.list(project_ids=[p.id, p2.id]))[0] == "project.created"
    # actor_ids: a key id, or the owner's user id for every key-made event
    assert types(logs.list(actor_ids=[k.id])) == ["project.created"]
    assert len(list(logs.list(actor_ids=[my_key]))) == 11
    assert len(list(logs.list(actor_ids=[owner_id]))) == 12
    assert list(logs.list(actor_ids=["user_nobody"])) == []
    # resource_ids: a toggle matches each certificate it names
    assert types(logs.list(resource_ids=[c.id])) == [
        "certificate.deleted", "certificates.deactivated", "certificates.activated",
        "certificates.activated", "certificate.updated", "certificate.created"]
    assert types(logs.list(resource_ids=[k.id])) == ["api_key.deleted", "api_key.created"]
    # actor_emails and tenant_only match nothing here
    assert list(logs.list(actor_emails=["owner@example.com"])) == []
    assert list(logs.list(tenant_only=True)) == []
    assert len(list(logs.list(tenant_only=False))) == 14
    # effective_at, each bound
    late = list(logs.list(effective_at={"gt": t_mid}))
    assert types(late)[-1] == "certificates.deactivated" and len(late) == 6
    assert len(list(logs.list(effective_at={"gte": t_mid + 1}))) == 6
    early = list(logs.list(effective_at={"lte": t_mid}))
    assert types(early)[0] == "certificates.activated" and len(early) == 8
    assert len(list(logs.list(effective_at={"lt": t_mid + 1}))) == 8
    assert len(list(logs.list(effective_at={"gte": 0, "lt": 1}))) == 0
    # together (AND)
    assert types(logs.list(effective_at={"gt": t_mid}, resource_ids=[c.id],
                           event_types=["certificates.deactivated", "certificate.deleted"])) == [
        "certificate.deleted", "certificates.deactivated"]


def test_audit_log_pagination(server: Server):
    counter = Counter()
    client = make_client(server, counter=counter)
    logs = client.admin.organization.audit_logs
    for i in range(9):
        client.admin.organization.projects.create(name=f"p{i}")
    all_ids = ids(logs.list())
    assert len(all_ids) == 11 and all_ids == sorted(all_ids, reverse=True)
    # the SDK pages forward on last_id
    counter.reset()
    assert ids(logs.list(limit=3)) == all_ids
    assert len(counter.requests) == 4, counter.requests
    page = logs.list(limit=3, after=all_ids[2])
    assert [x.id for x in page.data] == all_ids[3:6] and page.has_more is True
    assert page.first_id == all_ids[3] and page.last_id == all_ids[5]
    # before: the nearest newer events, newest first
    page = logs.list(limit=3, before=all_ids[6])
    assert [x.id for x in page.data] == all_ids[3:6] and page.has_more is True
    page = logs.list(limit=3, before=all_ids[2])
    assert [x.id for x in page.data] == all_ids[:2] and page.has_more is False


def test_audit_log_errors(server: Server):
    counter = Counter()
    logs = make_client(server, counter=counter).admin.organization.audit_logs
    key_b, _ = create_org(server.database, "Other")
    theirs = list(make_client(server, key=key_b).admin.organization.audit_logs.list())
    for kwargs, param in [
        (dict(effective_at={"gte": "yesterday"}), "effective_at[gte]"),
        (dict(effective_at={"lt": 1.5}), "effective_at[lt]"),
        (dict(limit=0), "limit"),
        (dict(limit=101), "limit"),
        (dict(after="audit_log-nope"), "after"),
        (dict(before="audit_log-nope"), "before"),
        (dict(after=theirs[0].id), "after"),
    ]:
        counter.reset()
        with pytest.raises(openai.BadRequestError) as ei:
            list(logs.list(**kwargs))
        assert ei.value.param == param, (kwargs, ei.value.body)
        assert ei.value.code is None and ei.value.type == "invalid_request_error"
        assert len(counter.requests) == 1
    assert {x.id for x in logs.list()}.isdisjoint({x.id for x in theirs}), "tenant-isolated"


# --------------------------------------------------------------------------------------------
# The CLI: key commands, --admin-key-file, the audit actor null


def test_cli_keys_and_key_file(server: Server, tmp_path):
    org_id = server.org["id"]
    path = tmp_path / "ci.key"
    out = cli(server.database, "key", "create", "--org", org_id, "--name", "from cli",
              "--expires-in", "600", "--admin-key-file", str(path))
    assert "sk-admin-" not in out.stdout + out.stderr
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    value = path.read_text().strip()
    again = cli(server.database, "key", "create", "--org", org_id, "--name", "x",
                "--admin-key-file", str(path), check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert path.read_text().strip() == value

    via_cli = make_client(server, key=value).admin.organization
    made = [k for k in via_cli.admin_api_keys.list() if k.name == "from cli"][0]
    assert made.expires_at == made.created_at + 600
    created = list(via_cli.audit_logs.list(resource_ids=[made.id]))
    assert types(created) == ["api_key.created"] and created[0].actor is None

    revoked = cli(server.database, "key", "revoke", made.id)
    assert '"deleted":true' in revoked.stdout
    with pytest.raises(openai.AuthenticationError):
        via_cli.admin_api_keys.list()
    (only,) = list(make_client(server).admin.organization.admin_api_keys.list())
    refused = cli(server.database, "key", "revoke", only.id, check=False)
    assert refused.returncode != 0 and "--force" in refused.stderr
    logs = make_client(server).admin.organization.audit_logs
    assert [x.actor for x in logs.list(event_types=["api_key.deleted"])] == [None]
    orgs = cli(server.database, "org", "list")
    assert org_id in orgs.stdout
