"""Gateway traffic: keep-alive clients, a new TLS handshake per request, WebSockets through the
gateway to the echo upstream, the propagation probe, and the decision probe that compares what
the gateways do with what the writers' models say. Every client that finds a gateway away
retries on the other one."""

import base64
import http.client
import os
import random
import socket
import ssl
import statistics
import struct
import threading
import time

from api import Unserved


def context(ca_file, leaf):
    ctx = ssl.create_default_context(cafile=ca_file)
    if leaf is not None:
        ctx.load_cert_chain(leaf.cert_path, leaf.key_path)
    return ctx


class GwConn:
    """One keep-alive HTTPS connection to a gateway, with a client certificate."""

    def __init__(self, gw, ctx):
        self.gw, self.ctx = gw, ctx
        self.c = None

    def get(self, path="/v1/models", headers=None):
        if self.c is None:
            host, port = self.gw.addr
            self.c = http.client.HTTPSConnection(host, port, context=self.ctx, timeout=30)
        try:
            self.c.request("GET", path, headers=headers or {})
            r = self.c.getresponse()
            body = r.read()
            return r.status, body
        except (OSError, http.client.HTTPException):
            self.close()
            raise

    def close(self):
        if self.c is not None:
            self.c.close()
            self.c = None


def judge(rec, gw, status, body, legit, what):
    """Statuses from a gateway: 5xx only as 503 in its restart window; a legitimate client is
    never refused."""
    t = rec.now()
    if status >= 500:
        if status == 503 and gw.in_window(t):
            rec.count("gateway_503_in_restart_window")
            return False
        rec.violation("%s answered %d outside its restart window (%s): %s" % (gw.name, status, what, body[:200]))
        return False
    if legit and status != 200:
        rec.violation("%s refused a legitimate client (%s): %d %s" % (gw.name, what, status, body[:200]))
    return True


def paced(rate, stop, fn):
    interval = 1.0 / rate
    nxt = time.monotonic()
    k = 0
    while not stop.is_set():
        fn(k)
        k += 1
        nxt += interval
        delay = nxt - time.monotonic()
        if delay > 0:
            stop.wait(delay)
        else:
            nxt = time.monotonic()


def request_any(rec, gateways, start, make_conn, legit, what, deadline=60.0):
    """GET through gateway START, else the others in turn, until one answers."""
    end = time.monotonic() + deadline
    attempt = 0
    while True:
        gw = gateways[(start + attempt) % len(gateways)]
        conn = make_conn(gw)
        try:
            status, body = conn.get()
        except (OSError, http.client.HTTPException):
            rec.count("gateway_failovers")
            attempt += 1
            if time.monotonic() > end:
                rec.violation("%s: no gateway answered for %.0f s" % (what, deadline))
                return None
            time.sleep(min(0.5, 0.02 * attempt))
            continue
        rec.count("gateway_requests")
        if judge(rec, gw, status, body, legit, what):
            return status
        attempt += 1
        if time.monotonic() > end:
            return None


def keepalive_client(rec, gateways, ctx, rate, stop, n):
    conns = {}

    def conn(gw):
        return conns.setdefault(gw.name, GwConn(gw, ctx))

    paced(rate, stop, lambda k: request_any(rec, gateways, n, conn, True, "keep-alive"))
    for c in conns.values():
        c.close()


def handshake_client(rec, gateways, ctx, rate, stop):
    def one(k):
        made = []

        def conn(gw):
            c = GwConn(gw, ctx)
            made.append(c)
            return c

        request_any(rec, gateways, k, conn, True, "new handshake")
        for c in made:
            c.close()
        rec.count("gateway_handshakes")

    paced(rate, stop, one)


# ---------------------------------------------------------------------- WebSocket
def ws_open(gw, ctx):
    host, port = gw.addr
    raw = socket.create_connection((host, port), timeout=10)
    s = ctx.wrap_socket(raw, server_hostname=host)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            "GET /v1/realtime HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, port, key)
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during upgrade")
        head += chunk
    status = int(head.split(b" ", 2)[1])
    rest = head.split(b"\r\n\r\n", 1)[1]
    return s, status, rest, head


class WsReader:
    def __init__(self, s, buf):
        self.s, self.buf = s, buf

    def need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        b0, b1 = self.need(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self.need(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self.need(8))
        return b0 & 0x0F, self.need(n)


def ws_send(s, opcode, payload):
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack(">BB", 0x80 | opcode, 0x80 | n) if n < 126 else struct.pack(">BBH", 0x80 | opcode, 0xFE, n)
    s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def websocket_client(rec, gateways, ctx, stop, n, lifetime, every):
    """Holds a WebSocket for LIFETIME seconds sending a message every EVERY seconds and expecting
    its echo; then closes it and opens the next on the other gateway. A close other than the
    gateway's own shutdown (1001 in its restart window) is a violation."""
    k = n
    while not stop.is_set():
        gw = gateways[k % len(gateways)]
        k += 1
        try:
            s, status, rest, head = ws_open(gw, ctx)
        except (OSError, ValueError, IndexError):
            rec.count("websocket_failovers")
            stop.wait(0.2)
            continue
        if status != 101:
            judge(rec, gw, status, head, True, "websocket upgrade")
            s.close()
            stop.wait(0.2)
            continue
        rec.count("websockets_opened")
        r = WsReader(s, rest)
        s.settimeout(10)
        opened = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() - opened < lifetime:
                msg = os.urandom(8).hex().encode()
                ws_send(s, 1, msg)
                opcode, payload = r.frame()
                while opcode in (9, 10):
                    opcode, payload = r.frame()
                if opcode == 8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                    if code == 1001 and gw.in_window(rec.now()):
                        rec.count("websockets_closed_by_restart")
                    else:
                        rec.violation("%s closed a legitimate WebSocket with %s %r" % (gw.name, code, payload[2:]))
                    break
                if payload != msg:
                    rec.violation("%s: WebSocket echo mismatch" % gw.name)
                rec.count("websocket_messages")
                stop.wait(every)
            else:
                ws_send(s, 8, struct.pack(">H", 1000))
        except (OSError, EOFError, struct.error):
            if gw.in_window(rec.now()):
                rec.count("websockets_closed_by_restart")
            else:
                rec.violation("%s: a legitimate WebSocket broke outside its restart window" % gw.name)
        finally:
            s.close()


# ---------------------------------------------------------------------- propagation
class Propagation(threading.Thread):
    """Every EVERY seconds, activates or deactivates the probe CA through one serve replica and
    polls one gateway (a keep-alive connection, so each request is judged afresh) until it
    sees the change; the time from the write's acknowledgement to that request is the sample.
    Samples that overlap the restart window of the replica written to or polled are left out."""

    def __init__(self, rec, api, ledger, gateways, ctx, cert_id, every, stop):
        super().__init__(name="propagation", daemon=True)
        self.rec, self.api, self.ledger, self.gateways = rec, api, ledger, gateways
        self.ctx, self.cert_id, self.every, self.stop = ctx, cert_id, every, stop
        self.samples = []  # (t, ms, on, serve, gateway)
        self.state = False

    def one(self, k):
        on = not self.state
        serve_i = k % len(self.api.serves)
        gw = self.gateways[(k // len(self.api.serves)) % len(self.gateways)]
        t_start = self.rec.now()
        r = self.api.call(
            "POST",
            "/organization/certificates/" + ("activate" if on else "deactivate"),
            {"certificate_ids": [self.cert_id]},
            prefer=serve_i,
        )
        if r.status != 200:
            self.rec.violation("propagation toggle answered %d %s" % (r.status, r.data))
            return
        acked = time.monotonic()
        self.state = on
        self.ledger.add("certificates.activated" if on else "certificates.deactivated", self.cert_id, "propagation")
        conn = GwConn(gw, self.ctx)
        seen = None
        try:
            while time.monotonic() - acked < 10:
                status, body = conn.get()
                if status >= 500:
                    break
                if (status == 200) == on:
                    seen = time.monotonic()
                    break
                time.sleep(0.002)
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        t_end = self.rec.now()
        if r.replica.overlaps_window(t_start, t_end) or gw.overlaps_window(t_start, t_end):
            self.rec.count("propagation_samples_in_restart_window")
            return
        if seen is None:
            self.rec.violation("%s did not see %s within 10 s" % (gw.name, "an activation" if on else "a deactivation"))
            return
        self.samples.append((t_start, (seen - acked) * 1000, on, r.replica.name, gw.name))

    def run(self):
        k = 0
        while not self.stop.wait(self.every):
            try:
                self.one(k)
            except Unserved as e:
                self.rec.violation("propagation: %s" % e)
            k += 1


def p99(values):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]


def propagation_summary(samples, duration, warm):
    """p50/p99 of the first and the last fifth of the samples taken after warm-up."""
    s = [x for x in samples if x[0] >= warm]
    if len(s) < 10:
        return None
    fifth = max(5, len(s) // 5)
    first, last = [x[1] for x in s[:fifth]], [x[1] for x in s[-fifth:]]
    return {
        "samples": len(s),
        "window_samples": fifth,
        "start_p50_ms": statistics.median(first),
        "start_p99_ms": p99(first),
        "end_p50_ms": statistics.median(last),
        "end_p99_ms": p99(last),
        "max_ms": max(x[1] for x in s),
    }


# ---------------------------------------------------------------------- decisions
class DecisionProbe(threading.Thread):
    """Every EVERY seconds: one writer's certificate whose state has been settled for longer
    than SETTLE seconds is tried through a gateway (a new handshake); the answer must be the
    model's (admitted, or refused), and the fixed deny-listed and CRL-revoked leaves must be
    refused as revoked."""

    def __init__(self, rec, writers, gateways, ca_file, revoked_leaves, every, settle, stop):
        super().__init__(name="decisions", daemon=True)
        self.rec, self.writers, self.gateways, self.ca_file = rec, writers, gateways, ca_file
        self.revoked, self.every, self.settle, self.stop = revoked_leaves, every, settle, stop
        self.rng = random.Random(7)
        self.ctxs = {}

    def ctx(self, leaf):
        if leaf.name not in self.ctxs:
            self.ctxs[leaf.name] = context(self.ca_file, leaf)
        return self.ctxs[leaf.name]

    def ask(self, gw, leaf):
        c = GwConn(gw, self.ctx(leaf))
        try:
            return c.get()
        except (OSError, http.client.HTTPException):
            return None
        finally:
            c.close()

    def one(self, k):
        gw = self.gateways[k % len(self.gateways)]
        for leaf in self.revoked:
            got = self.ask(gw, leaf)
            if got and got[0] < 500 and (got[0] != 403 or b"client_certificate_revoked" not in got[1]):
                self.rec.violation("%s did not refuse revoked leaf %s: %d" % (gw.name, leaf.name, got[0]))
        w = self.rng.choice(self.writers)
        now = time.monotonic()
        with w.lock:
            settled = [c for c in w.certs.values() if not c.busy and not c.unknown and now - c.changed > self.settle]
            if not settled:
                return
            c = self.rng.choice(settled)
            version, expected = c.version, c.admitted()
        got = self.ask(gw, c.leaf)
        with w.lock:
            if c.version != version or c.busy:
                return
        if got is None or (got[0] >= 500 and gw.in_window(self.rec.now())):
            return
        self.rec.count("decision_probes")
        if (got[0] == 200) != expected:
            self.rec.violation(
                "%s decided %d for %s, the model says %s" % (gw.name, got[0], c.id, "admit" if expected else "refuse")
            )

    def run(self):
        k = 0
        while not self.stop.wait(self.every):
            self.one(k)
            k += 1
