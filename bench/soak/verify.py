"""The end of the soak: every acknowledged write's effect (read back from every serve replica)
and its audit event, and every trust invariant, through every gateway and the check endpoint."""

import http.client

from admin import ID
from traffic import GwConn, context


def audit_index(api):
    """Every audit event of the organization: (type, id) -> how many events of that type name
    that id."""
    from collections import Counter

    index = Counter()
    after = None
    total = 0
    while True:
        path = "/organization/audit_logs?limit=100" + ("&after=" + after if after else "")
        r = api.call("GET", path)
        if r.status != 200:
            raise RuntimeError("audit log page answered %d %s" % (r.status, r.data))
        for e in r.data["data"]:
            for rid in set(ID.findall(str(e))):
                index[(e["type"], rid)] += 1
            total += 1
        if not r.data.get("has_more"):
            return index, total
        after = r.data["last_id"]


def verify_ledger(rec, api, ledger):
    """Each acknowledged write has its event: for every (type, id), at least as many events as
    acknowledged writes (a retried write may have left one more)."""
    from collections import Counter

    index, total = audit_index(api)
    wanted = Counter((etype, rid) for etype, rid, _ in ledger.entries)
    what = {(etype, rid): w for etype, rid, w in ledger.entries}
    missing = 0
    for k, n in wanted.items():
        if index.get(k, 0) < n:
            missing += n - index.get(k, 0)
            if missing <= 20:
                rec.violation("%d acknowledged %s (%s) but %d %s audit events" % (n, what[k], k[1], index.get(k, 0), k[0]))
    return {"acknowledged_writes": len(ledger.entries), "audit_events": total, "missing_events": missing}


def verify_state(rec, api, writers):
    """Each writer's model read back from every serve replica."""
    checked = 0
    for i, serve in enumerate(api.serves):
        for w in writers:
            for c in list(w.certs.values()):
                if c.unknown:
                    continue
                r = api.call("GET", "/organization/certificates/%s?include[]=details" % c.id, prefer=i)
                checked += 1
                if c.deleted:
                    if r.status != 404:
                        rec.violation("%s: deleted %s answers %d" % (serve.name, c.id, r.status))
                    continue
                if r.status != 200:
                    rec.violation("%s: acknowledged %s answers %d (write lost)" % (serve.name, c.id, r.status))
                    continue
                d = r.data
                projects = set(d.get("activations", {}).get("projects", []))
                crl = d.get("certificate_details", {}).get("crl")
                problems = []
                if d.get("name") != c.name:
                    problems.append("name %r, model %r" % (d.get("name"), c.name))
                org = d.get("activations", {}).get("organization")
                if org != c.org:
                    problems.append("active for the organization %s, model %s" % (org, c.org))
                if projects != c.projects:
                    problems.append("projects %s, model %s" % (sorted(projects), sorted(c.projects)))
                if (crl is None) != (c.crl is None) or (crl and crl.get("revoked_count") != len(c.crl)):
                    problems.append("crl %s, model %s" % (crl, c.crl))
                if problems:
                    rec.violation("%s: %s: %s" % (serve.name, c.id, "; ".join(problems)))
            for pid, (name, archived) in list(w.projects.items()):
                r = api.call("GET", "/organization/projects/" + pid, prefer=i)
                checked += 1
                want = "archived" if archived else "active"
                if r.status != 200 or r.data.get("name") != name or r.data.get("status") != want:
                    rec.violation("%s: project %s answers %d %s, model %s %s" % (serve.name, pid, r.status, r.data, name, want))
            for rid, present in list(w.revs.items()):
                r = api.call("GET", "/organization/revoked_certificates/" + rid, prefer=i)
                checked += 1
                if r.status != (200 if present else 404):
                    rec.violation("%s: deny-list entry %s answers %d, model %s" % (serve.name, rid, r.status, present))
            for kid, (_, present) in list(w.keys.items()):
                r = api.call("GET", "/organization/admin_api_keys/" + kid, prefer=i)
                checked += 1
                if r.status != (200 if present else 404):
                    rec.violation("%s: admin key %s answers %d, model %s" % (serve.name, kid, r.status, present))
        r = api.call("GET", "/organization/certificates?limit=100", prefer=i)
        if r.status != 200 or len(r.data["data"]) > 50 or r.data.get("has_more"):
            rec.violation("%s: the organization holds more than 50 certificates" % serve.name)
    return checked


def gateway_status(gw, ca_file, leaf, headers=None):
    c = GwConn(gw, context(ca_file, leaf))
    try:
        status, body = c.get(headers=headers)
        return status, body
    except (OSError, http.client.HTTPException) as e:
        return None, repr(e).encode()
    finally:
        c.close()


def check_endpoint(api, i, leaf, project=None):
    body = {"certificate": leaf.pem}
    if project:
        body["project_id"] = project
    r = api.call("POST", "/organization/certificates/check", body, prefer=i)
    if r.status != 200:
        return None, r.data
    return r.data["admitted"], r.data.get("code")


def verify_decisions(rec, api, writers, gateways, ca_file, fixed, authz=None):
    """FIXED: [(leaf, expected admitted, expected code or None)]. Every writer's certificate
    (the last 100 deleted ones too) at organization scope, and at each live project's scope."""
    cases = list(fixed)
    project_cases = []
    archived = []
    for w in writers:
        certs = [c for c in w.certs.values() if not c.unknown]
        deleted = [c for c in certs if c.deleted][-100:]
        for c in [c for c in certs if not c.deleted] + deleted:
            code = None
            if not c.deleted and c.org and not c.admitted():
                code = "client_certificate_revoked"
            cases.append((c.leaf, c.admitted(), code))
        for pid, (_, gone) in w.projects.items():
            if gone:
                archived.append(pid)
                continue
            for c in certs:
                if not c.deleted:
                    project_cases.append((c, pid))
    decisions = 0
    for leaf, want, code in cases:
        for gw in gateways:
            status, body = gateway_status(gw, ca_file, leaf)
            decisions += 1
            if status is None or (status == 200) != want or (code and code.encode() not in body):
                rec.violation("%s: %s answered %s, expected %s %s" % (gw.name, leaf.name, status, want, code or ""))
        for i, serve in enumerate(api.serves):
            admitted, got = check_endpoint(api, i, leaf)
            decisions += 1
            if admitted != want or (code and got != code):
                rec.violation("%s check: %s admitted=%s %s, expected %s %s" % (serve.name, leaf.name, admitted, got, want, code or ""))
        if authz:
            for a in authz:
                status = a.decide(leaf)
                decisions += 1
                if status is None or (status == 200) != want:
                    rec.violation("%s: %s answered %s, expected %s" % (a.name, leaf.name, status, want))
    for c, pid in project_cases:
        answers = set()
        for gw in gateways:
            status, _ = gateway_status(gw, ca_file, c.leaf, {"OpenAI-Project": pid})
            answers.add(status == 200)
            decisions += 1
        for i in range(len(api.serves)):
            admitted, _ = check_endpoint(api, i, c.leaf, pid)
            answers.add(admitted)
            decisions += 1
        revoked = c.revoked or (c.crl and c.leaf.serial in c.crl)
        want = (c.org or pid in c.projects) and not revoked
        if len(answers) != 1:
            rec.violation("%s at %s: gateways and check endpoint disagree" % (c.id, pid))
        elif answers != {want}:
            rec.violation("%s at %s: admitted=%s, the model says %s" % (c.id, pid, answers, want))
    for pid in archived[-10:]:
        for gw in gateways:
            status, body = gateway_status(gw, ca_file, fixed[0][0], {"OpenAI-Project": pid})
            decisions += 1
            if status != 400 or b"unknown_project" not in body:
                rec.violation("%s: archived project %s answered %s" % (gw.name, pid, status))
    return decisions
