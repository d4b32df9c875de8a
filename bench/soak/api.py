"""The soak's Admin API client: keep-alive connections to every serve replica, and a call that
moves to the next replica when one is away (refused, reset, or 503 inside its restart window).
Every 5xx is judged here: a 503 inside the answering replica's own restart window is expected,
anything else is a violation."""

import http.client
import json
import threading
import time


class Unserved(Exception):
    pass


class Resp:
    def __init__(self, status, data, replica, ambiguous):
        self.status, self.data, self.replica, self.ambiguous = status, data, replica, ambiguous

    def code(self):
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return self.data["error"].get("code")
        return None

    def message(self):
        if isinstance(self.data, dict) and isinstance(self.data.get("error"), dict):
            return self.data["error"].get("message") or ""
        return ""


class Api:
    def __init__(self, rec, serves, key):
        self.rec, self.serves, self.key = rec, serves, key
        self.local = threading.local()

    def _conn(self, i):
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        c = conns.get(i)
        if c is None:
            host, port = self.serves[i].addr
            c = conns[i] = http.client.HTTPConnection(host, port, timeout=30)
        return c

    def _drop(self, i):
        c = self.local.conns.pop(i, None)
        if c:
            c.close()

    def call(self, method, path, body=None, prefer=0, key=None, deadline=90.0):
        """METHOD /v1PATH on replica PREFER, else the next ones in turn, until one answers
        (other than a 503 in its restart window) or DEADLINE seconds pass. `ambiguous` is set
        when an earlier attempt may have reached the server (its outcome unknown)."""
        headers = {"Authorization": "Bearer " + (key or self.key)}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        n = len(self.serves)
        ambiguous = False
        end = time.monotonic() + deadline
        attempt = 0
        while True:
            i = (prefer + attempt) % n
            replica = self.serves[i]
            attempt += 1
            try:
                c = self._conn(i)
                c.request(method, "/v1" + path, body=payload, headers=headers)
                r = c.getresponse()
                raw = r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                self._drop(i)
                if method != "GET":
                    ambiguous = True
                self.rec.count("admin_failovers")
                if time.monotonic() > end:
                    raise Unserved("%s %s: no serve replica answered for %.0f s" % (method, path, deadline))
                time.sleep(min(0.5, 0.02 * attempt))
                continue
            t = self.rec.now()
            self.rec.count("admin_requests")
            if status >= 500:
                if status == 503 and replica.in_window(t):
                    self.rec.count("admin_503_in_restart_window")
                else:
                    self.rec.violation(
                        "%s answered %d outside its restart window to %s %s: %s"
                        % (replica.name, status, method, path, raw[:200])
                    )
                if method != "GET":
                    ambiguous = True
                if time.monotonic() > end:
                    raise Unserved("%s %s: only 5xx for %.0f s" % (method, path, deadline))
                time.sleep(min(0.5, 0.02 * attempt))
                continue
            try:
                data = json.loads(raw) if raw else None
            except ValueError:
                data = raw
            return Resp(status, data, replica, ambiguous)
