"""Admin writers and readers. Each writer owns its objects (certificates, projects, deny-list
entries, CRLs, admin keys) and keeps a model of what every acknowledged write made them, plus a
ledger of the audit event each acknowledged write must have left. The writers share the
organization's 50-certificate limit, so their uploads race for it on different replicas."""

import contextlib
import random
import re
import threading
import time

from api import Unserved
import pki

ID = re.compile(r"\b(?:cert|proj|key|revcert)_[A-Za-z0-9_-]+")


def succeeded(r):
    return r.status == 200


def gone(r):
    """A delete's success: 200, or 404 after an earlier attempt whose outcome is unknown (it
    went through before the replica went away)."""
    return r.status == 200 or (r.ambiguous and r.status == 404)


class Ledger:
    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []  # (event type, resource id, what)

    def add(self, etype, rid, what):
        with self.lock:
            self.entries.append((etype, rid, what))


class Cert:
    def __init__(self, cid, name, ca, leaf):
        self.id, self.name, self.ca, self.leaf = cid, name, ca, leaf
        self.org = False
        self.projects = set()
        self.deleted = False
        self.crl = None  # set of revoked serials when a CRL is stored
        self.revoked = None  # deny-list entry id of the leaf
        self.unknown = False  # an unacknowledged write left it in a state the model cannot know
        self.version = 0
        self.busy = False
        self.changed = 0.0

    def admitted(self):
        """The gateway's expected decision for the leaf at organization scope."""
        if self.deleted or not self.org or self.revoked:
            return False
        return not (self.crl and self.leaf.serial in self.crl)

    def active_anywhere(self):
        return self.org or bool(self.projects)


class Writer(threading.Thread):
    def __init__(self, n, rec, api, ledger, workdir, rate, cap, stop):
        super().__init__(name="writer-%d" % n, daemon=True)
        self.n, self.rec, self.api, self.ledger = n, rec, api, ledger
        self.workdir, self.rate, self.cap, self.stop = workdir, rate, cap, stop
        self.lock = threading.Lock()
        self.certs = {}
        self.projects = {}  # id -> [name, archived]
        self.revs = {}  # deny-list id -> present
        self.keys = {}  # key id -> [value, present]
        self.seq = 0
        self.prefer = n
        self.rng = random.Random(n)

    # ------------------------------------------------------------------ plumbing
    def _fresh(self, kind):
        self.seq += 1
        return "soak-w%d-%s-%d" % (self.n, kind, self.seq)

    def call(self, method, path, body=None, key=None):
        self.prefer += 1
        return self.api.call(method, path, body, prefer=self.prefer % len(self.api.serves), key=key)

    def unexpected(self, what, r):
        if r.ambiguous:
            self.rec.count("ambiguous_unresolved")
        else:
            self.rec.violation("writer %d: %s answered %d %s" % (self.n, what, r.status, str(r.data)[:300]))

    def touch(self, certs, busy):
        with self.lock:
            for c in certs:
                c.busy = busy
                c.version += 1
                c.changed = time.monotonic()

    @contextlib.contextmanager
    def write(self, what, method, path, body=None, certs=(), ok=succeeded):
        """One admin write, as a `with` block: yields the answer when `ok` judges it a success,
        else None after reporting it (a violation, unless an earlier attempt's outcome is
        unknown) and marking CERTS unknown to the model. CERTS are busy (the decision sampler
        leaves them alone) from before the request until the block has updated the model."""
        self.touch(certs, True)
        try:
            r = self.call(method, path, body)
            if ok(r):
                yield r
            else:
                for c in certs:
                    c.unknown = True
                self.unexpected(what, r)
                yield None
        finally:
            self.touch(certs, False)

    def key_check(self, value, status, what):
        """A key's answer on every serve replica (reads after a write see it at once)."""
        for i in range(len(self.api.serves)):
            g = self.api.call("GET", "/organization/certificates?limit=1", prefer=i, key=value)
            if g.status != status:
                self.rec.violation("writer %d: %s answered %d by %s" % (self.n, what, g.status, g.replica.name))

    def live(self):
        return [c for c in self.certs.values() if not c.deleted and not c.unknown]

    def live_projects(self):
        return [p for p, v in self.projects.items() if not v[1]]

    # ------------------------------------------------------------------ operations
    def op_upload(self):
        name = self._fresh("ca")
        ca = pki.Ca(name)
        leaf = ca.leaf(self.workdir, name + "-leaf")
        r = self.call("POST", "/organization/certificates", {"certificate": ca.pem, "name": name})
        cid = None
        if r.status == 200:
            cid = r.data["id"]
        elif r.ambiguous and r.code() == "certificate_already_exists":
            m = ID.search(r.message())
            cid = m.group(0) if m else None
        elif r.code() == "certificate_limit_reached":
            self.rec.count("uploads_refused_at_limit")
            return
        if not cid:
            return self.unexpected("upload", r)
        with self.lock:
            self.certs[cid] = Cert(cid, name, ca, leaf)
        self.ledger.add("certificate.created", cid, "upload")
        self.rec.count("writes_uploads")

    def op_rename(self, c):
        name = self._fresh("renamed")
        renamed = lambda r: r.status == 200 and r.data.get("name") == name  # noqa: E731
        with self.write("rename", "POST", "/organization/certificates/" + c.id, {"name": name}, [c], renamed) as r:
            if r:
                c.name = name
                self.ledger.add("certificate.updated", c.id, "rename")

    def op_toggle(self, certs, on, project=None):
        ids = [c.id for c in certs]
        path = "/organization/certificates/" if project is None else "/organization/projects/%s/certificates/" % project
        path += "activate" if on else "deactivate"
        with self.write("toggle %s %s" % (on, project), "POST", path, {"certificate_ids": ids}, certs) as r:
            if not r:
                return
            for c in certs:
                if project is None:
                    c.org = on
                elif on:
                    c.projects.add(project)
                else:
                    c.projects.discard(project)
            for cid in ids:
                self.ledger.add("certificates.activated" if on else "certificates.deactivated", cid, "toggle")

    def op_project_create(self):
        name = self._fresh("project")
        with self.write("project create", "POST", "/organization/projects", {"name": name}) as r:
            if r:
                self.projects[r.data["id"]] = [name, False]
                self.ledger.add("project.created", r.data["id"], "project create")

    def op_project_rename(self, pid):
        name = self._fresh("project")
        with self.write("project rename", "POST", "/organization/projects/" + pid, {"name": name}) as r:
            if not r:
                self.projects.pop(pid)
                return
            self.projects[pid][0] = name
            self.ledger.add("project.updated", pid, "project rename")

    def op_project_archive(self, pid):
        affected = [c for c in self.live() if pid in c.projects]
        archived = lambda r: r.status == 200 or (r.ambiguous and r.status == 400)  # noqa: E731
        # Certificates active in the project are left alone when the archive fails: the
        # project leaves the model instead.
        self.touch(affected, True)
        try:
            r = self.call("POST", "/organization/projects/%s/archive" % pid)
            if not archived(r):
                self.projects.pop(pid)
                return self.unexpected("project archive", r)
            self.projects[pid][1] = True
            for c in affected:
                c.projects.discard(pid)
            self.ledger.add("project.archived", pid, "project archive")
        finally:
            self.touch(affected, False)

    def op_rotate(self, frm, to, retire):
        scopes_org = frm.org
        scopes = set(frm.projects)
        body = {"from": frm.id, "to": to.id, "retire_from": retire}
        done = lambda r: r.status == 200 or (r.ambiguous and r.code() == "certificate_not_active")  # noqa: E731
        with self.write("rotate", "POST", "/organization/certificates/rotate", body, [frm, to], done) as r:
            if not r:
                return
            if scopes_org:
                to.org = True
            to.projects |= scopes
            if retire:
                frm.org = False
                frm.projects = set()
            self.ledger.add("certificates.activated", to.id, "rotate")
            if retire:
                self.ledger.add("certificates.deactivated", frm.id, "rotate")
            if r.status == 200 and (r.data.get("organization") != scopes_org or set(r.data.get("projects")) != scopes):
                self.rec.violation("writer %d: rotate answered scopes %s, expected %s %s" % (self.n, r.data, scopes_org, scopes))

    def op_delete(self, c):
        with self.write("delete", "DELETE", "/organization/certificates/" + c.id, None, [c], gone) as r:
            if r:
                c.deleted = True
                self.ledger.add("certificate.deleted", c.id, "delete")

    def op_deny(self, c):
        body = {"sha256_fingerprint": c.leaf.fingerprint, "reason": "soak"}
        with self.write("deny-list add", "POST", "/organization/revoked_certificates", body, [c]) as r:
            if r:
                c.revoked = r.data["id"]
                self.revs[c.revoked] = True
                self.ledger.add("certificate.revoked", c.revoked, "deny-list add")

    def op_undeny(self, c):
        with self.write("deny-list remove", "DELETE", "/organization/revoked_certificates/" + c.revoked, None, [c], gone) as r:
            if r:
                self.revs[c.revoked] = False
                self.ledger.add("certificate.unrevoked", c.revoked, "deny-list remove")
                c.revoked = None

    def op_crl(self, c):
        serials = {c.leaf.serial} if self.rng.random() < 0.5 else set()
        body = {"crl": c.ca.crl(sorted(serials))}
        stored = lambda r: r.status == 200 and r.data.get("revoked_count") == len(serials)  # noqa: E731
        with self.write("crl put", "PUT", "/organization/certificates/%s/crl" % c.id, body, [c], stored) as r:
            if r:
                c.crl = serials
                self.ledger.add("certificate.crl_updated", c.id, "crl put")

    def op_crl_delete(self, c):
        with self.write("crl delete", "DELETE", "/organization/certificates/%s/crl" % c.id, None, [c], gone) as r:
            if r:
                c.crl = None
                self.ledger.add("certificate.crl_deleted", c.id, "crl delete")

    def op_key_create(self):
        with self.write("key create", "POST", "/organization/admin_api_keys", {"name": self._fresh("key")}) as r:
            if not r:
                return
            self.keys[r.data["id"]] = [r.data["value"], True]
            self.ledger.add("api_key.created", r.data["id"], "key create")
        self.key_check(r.data["value"], 200, "new key")

    def op_key_delete(self, kid):
        with self.write("key delete", "DELETE", "/organization/admin_api_keys/" + kid, None, (), gone) as r:
            if not r:
                self.keys.pop(kid)
                return
            self.keys[kid][1] = False
            self.ledger.add("api_key.deleted", kid, "key delete")
        self.key_check(self.keys[kid][0], 401, "deleted key")

    # ------------------------------------------------------------------ the loop
    def step(self):
        rng = self.rng
        live = self.live()
        projects = self.live_projects()
        choice = rng.random()
        if len(live) < self.cap and (choice < 0.15 or len(live) < 3):
            return self.op_upload()
        if choice < 0.22:
            idle = [c for c in live if not c.active_anywhere()]
            if idle and len(live) > self.cap // 2:
                return self.op_delete(rng.choice(idle))
            busy = [c for c in live if c.active_anywhere()]
            if busy:
                c = rng.choice(busy)
                if c.org:
                    return self.op_toggle([c], False)
                return self.op_toggle([c], False, rng.choice(sorted(c.projects)))
            return
        if choice < 0.40 and live:
            certs = rng.sample(live, min(len(live), rng.randint(1, 3)))
            return self.op_toggle(certs, rng.random() < 0.55)
        if choice < 0.52 and live:
            if len(projects) < 2:
                return self.op_project_create()
            certs = rng.sample(live, min(len(live), rng.randint(1, 3)))
            return self.op_toggle(certs, rng.random() < 0.55, rng.choice(projects))
        if choice < 0.57:
            if len(projects) >= 3:
                return self.op_project_archive(rng.choice(projects))
            if projects and rng.random() < 0.5:
                return self.op_project_rename(rng.choice(projects))
            return self.op_project_create()
        if choice < 0.64 and len(live) >= 2:
            active = [c for c in live if c.active_anywhere()]
            if active:
                frm = rng.choice(active)
                to = rng.choice([c for c in live if c is not frm])
                return self.op_rotate(frm, to, rng.random() < 0.5)
        if choice < 0.74 and live:
            c = rng.choice(live)
            return self.op_undeny(c) if c.revoked else self.op_deny(c)
        if choice < 0.84 and live:
            c = rng.choice(live)
            return self.op_crl_delete(c) if c.crl is not None and rng.random() < 0.4 else self.op_crl(c)
        if choice < 0.90:
            present = [k for k, v in self.keys.items() if v[1]]
            if len(present) >= 2 or (present and rng.random() < 0.4):
                return self.op_key_delete(rng.choice(present))
            return self.op_key_create()
        if live:
            return self.op_rename(rng.choice(live))

    def run(self):
        interval = 1.0 / self.rate
        nxt = time.monotonic()
        while not self.stop.is_set():
            try:
                self.step()
            except Unserved as e:
                self.rec.violation("writer %d: %s" % (self.n, e))
            except Exception as e:  # a bug in the soak itself must not pass silently
                self.rec.violation("writer %d crashed: %r" % (self.n, e))
                raise
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                self.stop.wait(delay)
            else:
                nxt = time.monotonic()


class Reader(threading.Thread):
    """Admin reads of every kind, spread over the replicas: lists (the 50 limit holds on every
    look), retrieves with details, projects, the deny-list, CRLs, keys and the audit log."""

    def __init__(self, rec, api, writers, rate, stop):
        super().__init__(name="reader", daemon=True)
        self.rec, self.api, self.writers, self.rate, self.stop = rec, api, writers, rate, stop
        self.rng = random.Random(99)

    def step(self, k):
        n = len(self.api.serves)
        paths = [
            "/organization/certificates?limit=100",
            "/organization/projects?limit=100",
            "/organization/revoked_certificates?limit=20",
            "/organization/admin_api_keys?limit=20",
            "/organization/audit_logs?limit=20",
        ]
        w = self.rng.choice(self.writers)
        with w.lock:
            live = [c.id for c in w.certs.values() if not c.deleted]
        if live:
            cid = self.rng.choice(live)
            paths += ["/organization/certificates/%s?include[]=details" % cid, "/organization/certificates/%s/crl" % cid]
        path = paths[k % len(paths)]
        r = self.api.call("GET", path, prefer=k % n)
        self.rec.count("admin_reads")
        if r.status not in (200, 404):
            self.rec.violation("read %s answered %d %s" % (path, r.status, str(r.data)[:200]))
        if path.startswith("/organization/certificates?") and r.status == 200:
            if len(r.data["data"]) > 50 or r.data.get("has_more"):
                self.rec.violation("more than 50 certificates in the organization: %d" % len(r.data["data"]))

    def run(self):
        k = 0
        interval = 1.0 / self.rate
        while not self.stop.wait(interval):
            k += 1
            try:
                self.step(k)
            except Unserved as e:
                self.rec.violation("reader: %s" % e)
