"""Admin writers and readers. Each writer owns its objects (certificates, projects, deny-list
entries, CRLs, admin keys) and keeps a model of what every acknowledged write made them, plus a
ledger of the audit event each acknowledged write must have left. The writers share the
organization's 50-certificate limit, so their uploads race for it on different replicas."""

import random
import re
import threading
import time

from api import Unserved
import pki

ID = re.compile(r"\b(?:cert|proj|key|revcert)_[A-Za-z0-9_-]+")


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
        self.touch([c], True)
        r = self.call("POST", "/organization/certificates/" + c.id, {"name": name})
        if r.status == 200 and r.data.get("name") == name:
            c.name = name
            self.ledger.add("certificate.updated", c.id, "rename")
        else:
            c.unknown = True
            self.unexpected("rename", r)
        self.touch([c], False)

    def op_toggle(self, certs, on, project=None):
        ids = [c.id for c in certs]
        path = "/organization/certificates/" if project is None else "/organization/projects/%s/certificates/" % project
        self.touch(certs, True)
        r = self.call("POST", path + ("activate" if on else "deactivate"), {"certificate_ids": ids})
        if r.status == 200:
            for c in certs:
                if project is None:
                    c.org = on
                elif on:
                    c.projects.add(project)
                else:
                    c.projects.discard(project)
            for cid in ids:
                self.ledger.add("certificates.activated" if on else "certificates.deactivated", cid, "toggle")
        else:
            for c in certs:
                c.unknown = True
            self.unexpected("toggle %s %s" % (on, project), r)
        self.touch(certs, False)

    def op_project_create(self):
        name = self._fresh("project")
        r = self.call("POST", "/organization/projects", {"name": name})
        if r.status != 200:
            return self.unexpected("project create", r)
        self.projects[r.data["id"]] = [name, False]
        self.ledger.add("project.created", r.data["id"], "project create")

    def op_project_rename(self, pid):
        name = self._fresh("project")
        r = self.call("POST", "/organization/projects/" + pid, {"name": name})
        if r.status != 200:
            self.projects.pop(pid)
            return self.unexpected("project rename", r)
        self.projects[pid][0] = name
        self.ledger.add("project.updated", pid, "project rename")

    def op_project_archive(self, pid):
        affected = [c for c in self.live() if pid in c.projects]
        self.touch(affected, True)
        r = self.call("POST", "/organization/projects/%s/archive" % pid)
        if r.status == 200 or (r.ambiguous and r.status == 400):
            self.projects[pid][1] = True
            for c in affected:
                c.projects.discard(pid)
            self.ledger.add("project.archived", pid, "project archive")
        else:
            self.projects.pop(pid)
            self.unexpected("project archive", r)
        self.touch(affected, False)

    def op_rotate(self, frm, to, retire):
        scopes_org = frm.org
        scopes = set(frm.projects)
        self.touch([frm, to], True)
        r = self.call(
            "POST", "/organization/certificates/rotate", {"from": frm.id, "to": to.id, "retire_from": retire}
        )
        done = r.status == 200 or (r.ambiguous and r.code() == "certificate_not_active")
        if done:
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
        else:
            frm.unknown = to.unknown = True
            self.unexpected("rotate", r)
        self.touch([frm, to], False)

    def op_delete(self, c):
        self.touch([c], True)
        r = self.call("DELETE", "/organization/certificates/" + c.id)
        if r.status == 200 or (r.ambiguous and r.status == 404):
            c.deleted = True
            self.ledger.add("certificate.deleted", c.id, "delete")
        else:
            c.unknown = True
            self.unexpected("delete", r)
        self.touch([c], False)

    def op_deny(self, c):
        self.touch([c], True)
        body = {"sha256_fingerprint": c.leaf.fingerprint, "reason": "soak"}
        r = self.call("POST", "/organization/revoked_certificates", body)
        if r.status == 200:
            c.revoked = r.data["id"]
            self.revs[c.revoked] = True
            self.ledger.add("certificate.revoked", c.revoked, "deny-list add")
        else:
            c.unknown = True
            self.unexpected("deny-list add", r)
        self.touch([c], False)

    def op_undeny(self, c):
        self.touch([c], True)
        r = self.call("DELETE", "/organization/revoked_certificates/" + c.revoked)
        if r.status == 200 or (r.ambiguous and r.status == 404):
            self.revs[c.revoked] = False
            self.ledger.add("certificate.unrevoked", c.revoked, "deny-list remove")
            c.revoked = None
        else:
            c.unknown = True
            self.unexpected("deny-list remove", r)
        self.touch([c], False)

    def op_crl(self, c):
        serials = {c.leaf.serial} if self.rng.random() < 0.5 else set()
        self.touch([c], True)
        r = self.call("PUT", "/organization/certificates/%s/crl" % c.id, {"crl": c.ca.crl(sorted(serials))})
        if r.status == 200 and r.data.get("revoked_count") == len(serials):
            c.crl = serials
            self.ledger.add("certificate.crl_updated", c.id, "crl put")
        else:
            c.unknown = True
            self.unexpected("crl put", r)
        self.touch([c], False)

    def op_crl_delete(self, c):
        self.touch([c], True)
        r = self.call("DELETE", "/organization/certificates/%s/crl" % c.id)
        if r.status == 200 or (r.ambiguous and r.status == 404):
            c.crl = None
            self.ledger.add("certificate.crl_deleted", c.id, "crl delete")
        else:
            c.unknown = True
            self.unexpected("crl delete", r)
        self.touch([c], False)

    def op_key_create(self):
        r = self.call("POST", "/organization/admin_api_keys", {"name": self._fresh("key")})
        if r.status != 200:
            return self.unexpected("key create", r)
        self.keys[r.data["id"]] = [r.data["value"], True]
        self.ledger.add("api_key.created", r.data["id"], "key create")
        # The new key works at once on every replica (reads after a write see it).
        for i in range(len(self.api.serves)):
            g = self.api.call("GET", "/organization/certificates?limit=1", prefer=i, key=r.data["value"])
            if g.status != 200:
                self.rec.violation("writer %d: new key refused by %s: %d" % (self.n, g.replica.name, g.status))

    def op_key_delete(self, kid):
        r = self.call("DELETE", "/organization/admin_api_keys/" + kid)
        if not (r.status == 200 or (r.ambiguous and r.status == 404)):
            self.keys.pop(kid)
            return self.unexpected("key delete", r)
        self.keys[kid][1] = False
        self.ledger.add("api_key.deleted", kid, "key delete")
        for i in range(len(self.api.serves)):
            g = self.api.call("GET", "/organization/certificates?limit=1", prefer=i, key=self.keys[kid][0])
            if g.status != 401:
                self.rec.violation("writer %d: deleted key answered %d by %s" % (self.n, g.status, g.replica.name))

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
