"""certgate soak: replicas under steady mixed load, restarted in turn (SIGTERM, and once
SIGKILL), then checked. Run through bench/soak/run.sh, which builds the binary and makes the
database; `soak.py --help` lists the parameters. Exit status 1 on any violation."""

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import admin  # noqa: E402
import cluster  # noqa: E402
import pki  # noqa: E402
import traffic  # noqa: E402
import verify  # noqa: E402
from api import Api  # noqa: E402


def log(msg):
    print("[soak %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def parse():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True)
    p.add_argument("--database", required=True, help="sqlite://FILE or postgres://…/DB")
    p.add_argument("--work", required=True)
    p.add_argument("--duration", type=float, default=1800, help="seconds of load (default 1800)")
    p.add_argument("--serves", type=int, default=2)
    p.add_argument("--gateways", type=int, default=2)
    p.add_argument("--authz", type=int, default=0, help="certgate authz replicas (0 while the role is absent)")
    p.add_argument("--writers", type=int, default=2)
    p.add_argument("--write-rate", type=float, default=4.0, help="admin writes/s, all writers together")
    p.add_argument("--read-rate", type=float, default=5.0, help="admin reads/s")
    p.add_argument("--keepalive-rate", type=float, default=20.0, help="gateway requests/s on keep-alive connections")
    p.add_argument("--handshake-rate", type=float, default=5.0, help="gateway requests/s, each on a new TLS handshake")
    p.add_argument("--websockets", type=int, default=4, help="WebSockets held open through the gateways")
    p.add_argument("--ws-lifetime", type=float, default=30.0)
    p.add_argument("--propagation-every", type=float, default=2.0)
    p.add_argument("--probe-every", type=float, default=1.0)
    p.add_argument("--rounds", type=int, default=3, help="restart rounds (every replica once per round)")
    p.add_argument("--down", type=float, default=2.0, help="seconds a stopped replica stays away")
    p.add_argument("--grace", type=float, default=10.0, help="the replicas' --shutdown-grace")
    p.add_argument("--cap", type=int, default=25, help="certificates each writer keeps at most")
    p.add_argument("--growth", type=float, default=0.10, help="allowed growth of RSS, fds, threads")
    p.add_argument("--propagation-ratio", type=float, default=1.5)
    p.add_argument("--propagation-slack-ms", type=float, default=50.0)
    p.add_argument("--sabotage", action="store_true",
                   help="self-check: before the checks, rename and toggle one certificate and delete its upload's "
                        "audit event behind the API's back; the run must then fail")
    return p.parse_args()


class Authz:
    """A `certgate authz` replica's forward-auth endpoint (spec §13.2)."""

    def __init__(self, replica, port):
        self.replica, self.name, self.port = replica, replica.name, port

    def decide(self, leaf):
        req = urllib.request.Request(
            "http://127.0.0.1:%d/v1/models" % self.port,
            headers={"X-SSL-Client-Cert": urllib.parse.quote(leaf.pem)},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
        except OSError:
            return None


def sabotage(database, writer):
    """Writes lost (a name, an activation) and an audit event gone, made directly in the
    database (with the trust generation bumped, as a real write would): the checks must report
    the state, the decisions of every gateway and check endpoint, and the audit log."""
    c = next(c for c in writer.certs.values() if not c.deleted and not c.unknown)
    sql = (
        "UPDATE certificates SET name = 'sabotaged', active_org = 1 - active_org WHERE id = '{0}';"
        "DELETE FROM audit_events WHERE type = 'certificate.created' AND id IN "
        "(SELECT event_id FROM audit_event_resources WHERE resource_id = '{0}');"
        "UPDATE trust_state SET generation = generation + 1;".format(c.id)
    )
    if database.startswith("sqlite://"):
        import sqlite3

        db = sqlite3.connect(database[len("sqlite://"):])
        db.executescript(sql)
        db.close()
    else:
        subprocess.run(["psql", database, "-qc", sql], check=True)
    log("sabotage: renamed and toggled %s and deleted its certificate.created event behind the API's back" % c.id)


def main():
    a = parse()
    os.makedirs(a.work, exist_ok=True)
    pkidir = os.path.join(a.work, "pki")
    os.makedirs(pkidir, exist_ok=True)
    rec = cluster.Record()
    ledger = admin.Ledger()
    stop = threading.Event()
    replicas = []
    upstream = None

    def shutdown(*_):
        stop.set()

    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGTERM, shutdown)
    try:
        upfile = os.path.join(a.work, "upstream.addr")
        upstream = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "upstream.py"), upfile])
        for _ in range(200):
            if os.path.exists(upfile):
                break
            time.sleep(0.05)
        up = open(upfile).read().strip()

        server_ca = pki.Ca("soak server CA")
        server = server_ca.server(pkidir)
        ca_file = os.path.join(pkidir, "server-ca.pem")
        open(ca_file, "w").write(server_ca.pem)
        stable = pki.Ca("soak stable CA")
        legit = stable.leaf(pkidir, "legit")
        denied = stable.leaf(pkidir, "deny-listed")
        crled = stable.leaf(pkidir, "crl-revoked")
        probe_ca = pki.Ca("soak propagation CA")
        probe_leaf = probe_ca.leaf(pkidir, "propagation")

        # serve replicas; the first start of the first one bootstraps the organization.
        serves = []
        for i in range(a.serves):
            port, mport = free_port(), free_port()
            argv = [a.bin, "serve", "--listen", "127.0.0.1:%d" % port, "--database", a.database,
                    "--metrics-listen", "127.0.0.1:%d" % mport, "--shutdown-grace", "%gs" % a.grace, "--no-bootstrap"]
            r = cluster.Replica("serve%d" % i, "serve", argv, "http://127.0.0.1:%d/readyz" % port, a.work)
            r.addr = ("127.0.0.1", port)
            serves.append(r)
        keyfile = os.path.join(a.work, "admin.key")
        serves[0].start(rec, serves[0].argv[:-1] + ["--admin-key-file", keyfile])
        boot = json.loads(open(os.path.join(a.work, "serve0.1.stdout")).read().strip().splitlines()[0])
        org = boot["organization"]["id"]
        key = open(keyfile).read().strip()
        replicas.append(serves[0])
        for r in serves[1:]:
            r.start(rec)
            replicas.append(r)
        api = Api(rec, serves, key)

        def must(r, what):
            if r.status != 200:
                raise RuntimeError("setup: %s answered %d %s" % (what, r.status, r.data))
            return r.data

        stable_id = must(api.call("POST", "/organization/certificates", {"certificate": stable.pem, "name": "stable"}), "upload")["id"]
        must(api.call("POST", "/organization/certificates/activate", {"certificate_ids": [stable_id]}), "activate")
        rev = must(api.call("POST", "/organization/revoked_certificates", {"sha256_fingerprint": denied.fingerprint}), "deny")
        must(api.call("PUT", "/organization/certificates/%s/crl" % stable_id, {"crl": stable.crl([crled.serial])}), "crl")
        probe_id = must(api.call("POST", "/organization/certificates", {"certificate": probe_ca.pem, "name": "propagation"}), "upload")["id"]
        for etype, rid in (("certificate.created", stable_id), ("certificates.activated", stable_id),
                           ("certificate.revoked", rev["id"]), ("certificate.crl_updated", stable_id),
                           ("certificate.created", probe_id)):
            ledger.add(etype, rid, "setup")

        gateways = []
        for i in range(a.gateways):
            port, hport = free_port(), free_port()
            argv = [a.bin, "gateway", "--listen", "127.0.0.1:%d" % port, "--health-listen", "127.0.0.1:%d" % hport,
                    "--organization", org, "--database", a.database, "--tls-cert", server.cert_path,
                    "--tls-key", server.key_path, "--upstream", "http://" + up, "--shutdown-grace", "%gs" % a.grace]
            r = cluster.Replica("gateway%d" % i, "gateway", argv, "http://127.0.0.1:%d/readyz" % hport, a.work)
            r.addr = ("127.0.0.1", port)
            r.start(rec)
            gateways.append(r)
        authz = []
        for i in range(a.authz):
            port, gport, mport = free_port(), free_port(), free_port()
            argv = [a.bin, "authz", "--http-listen", "127.0.0.1:%d" % port, "--grpc-listen", "127.0.0.1:%d" % gport,
                    "--metrics-listen", "127.0.0.1:%d" % mport, "--organization", org, "--database", a.database]
            r = cluster.Replica("authz%d" % i, "authz", argv, "http://127.0.0.1:%d/readyz" % mport, a.work)
            r.start(rec)
            authz.append(Authz(r, port))
        # Restart order interleaves the roles: serve0, gateway0, serve1, gateway1, ...
        order = []
        for i in range(max(len(serves), len(gateways), len(authz))):
            for group in (serves, gateways, [z.replica for z in authz]):
                if i < len(group):
                    order.append(group[i])
        for r in order:
            if r not in replicas:
                replicas.append(r)
        log("organization %s; %s; upstream %s; work %s" % (org, ", ".join(r.name for r in replicas), up, a.work))

        # ------------------------------------------------------------------ load
        rec.t0 = time.monotonic()
        legit_ctx = traffic.context(ca_file, legit)
        writers = [admin.Writer(i, rec, api, ledger, pkidir, a.write_rate / a.writers, a.cap, stop) for i in range(a.writers)]
        prop = traffic.Propagation(rec, api, ledger, gateways, traffic.context(ca_file, probe_leaf), probe_id, a.propagation_every, stop)
        probe = traffic.DecisionProbe(rec, writers, gateways, ca_file, [denied, crled], a.probe_every, 5.0, stop)
        threads = list(writers) + [admin.Reader(rec, api, writers, a.read_rate, stop), prop, probe]
        threads.append(threading.Thread(target=cluster.sampler, args=(rec, replicas, stop, 5.0), daemon=True))
        for n in range(2):
            threads.append(threading.Thread(target=traffic.keepalive_client,
                                            args=(rec, gateways, legit_ctx, a.keepalive_rate / 2, stop, n), daemon=True))
        threads.append(threading.Thread(target=traffic.handshake_client, args=(rec, gateways, legit_ctx, a.handshake_rate, stop), daemon=True))
        for n in range(a.websockets):
            threads.append(threading.Thread(target=traffic.websocket_client,
                                            args=(rec, gateways, legit_ctx, stop, n, a.ws_lifetime, 1.0), daemon=True))
        events = cluster.schedule(order, a.duration, a.rounds)
        chaos_stop = threading.Event()
        chaos = threading.Thread(target=cluster.chaos, args=(rec, events, chaos_stop, a.grace, a.down, log), daemon=True)
        for t in threads:
            t.start()
        chaos.start()
        end = time.monotonic() + a.duration
        last = 0
        while not stop.is_set() and time.monotonic() < end:
            stop.wait(1)
            if rec.now() - last >= 60:
                last = rec.now()
                log("%4.0fs %s" % (rec.now(), json.dumps(rec.counts, sort_keys=True)))
        if stop.is_set():
            chaos_stop.set()
            log("interrupted at %.0fs: stopping every replica" % rec.now())
            return 1
        chaos.join(timeout=a.grace + a.down + 120)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        log("load stopped at %.0fs; verifying" % rec.now())

        # ------------------------------------------------------------------ the checks
        time.sleep(3)
        if a.sabotage:
            sabotage(a.database, writers[0])
        report = {"duration_s": a.duration, "backend": a.database.split(":")[0],
                  "replicas": [r.name for r in replicas], "counts": dict(rec.counts)}
        report["state_reads"] = verify.verify_state(rec, api, writers)
        report["audit"] = verify.verify_ledger(rec, api, ledger)
        kinds = {}
        for _, _, what in ledger.entries:
            kinds[what] = kinds.get(what, 0) + 1
        report["acknowledged_by_kind"] = kinds
        fixed = [(legit, True, None), (denied, False, "client_certificate_revoked"), (crled, False, "client_certificate_revoked")]
        report["final_decisions"] = verify.verify_decisions(rec, api, writers, gateways, ca_file, fixed, authz)
        warm = max(5.0, min(120.0, a.duration * 0.05))
        window = max(5.0, min(60.0, a.duration * 0.05))
        report["resources"] = {}
        slack = {"rss_kib": 0, "fds": 3, "threads": 3}
        for r in replicas:
            g = cluster.growth(r, warm, window)
            report["resources"][r.name] = {"growth": g, "exits": r.exits, "restarts": r.incarnation - 1}
            if g is None:
                continue
            for k in ("rss_kib", "fds", "threads"):
                base, last_v = g[k]
                pairs = [(base, last_v, "over its last life")]
                if g.get(k + "_first_life") is not None:
                    pairs.append((g[k + "_first_life"], base, "from its first life to its last"))
                for b, e, what in pairs:
                    if b and e > b * (1 + a.growth) and e - b > slack[k]:
                        rec.violation("%s: %s grew from %s to %s %s" % (r.name, k, b, e, what))
        kills = sum(1 for r in replicas for e in r.exits if e[0] == "SIGKILL")
        if kills < 1 and a.rounds > 0:
            rec.violation("no replica was killed with SIGKILL")
        ps = traffic.propagation_summary(prop.samples, a.duration, warm)
        report["propagation"] = ps
        if ps is None:
            rec.violation("too few propagation samples to compare start and end")
        elif ps["end_p99_ms"] > ps["start_p99_ms"] * a.propagation_ratio + a.propagation_slack_ms:
            rec.violation("propagation p99 rose from %.1f ms to %.1f ms" % (ps["start_p99_ms"], ps["end_p99_ms"]))
        report["counts"] = dict(rec.counts)
        report["violations"] = rec.violations
        with open(os.path.join(a.work, "report.json"), "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(json.dumps(report, indent=1, default=str))
        import report as report_md

        summary = report_md.markdown(json.loads(json.dumps(report, default=str)))
        with open(os.path.join(a.work, "report.md"), "w") as f:
            f.write(summary + "\n")
        print(summary)
        if rec.violations:
            log("FAILED: %d violations (first ones above; all in %s/report.json)" % (rec.counts.get("violations", 0), a.work))
            return 1
        log("passed: no violation")
        return 0
    finally:
        stop.set()
        for r in replicas:
            r.terminate()
        if upstream:
            upstream.terminate()
            upstream.wait()


if __name__ == "__main__":
    sys.exit(main())
