"""The replicas under soak: starting, SIGTERM/SIGKILL and restarting them, their restart windows,
and samples of each one's resident memory, open file descriptors and threads from /proc."""

import os
import signal
import subprocess
import threading
import time
import urllib.request

# A 503 counts as part of a replica's own restart when it comes at most this long after the
# replica was ready again (a request already on its way when readiness was seen).
WINDOW_MARGIN = 1.0


class Record:
    """What every load thread reports into: violations, counters, and response statuses."""

    def __init__(self):
        self.lock = threading.Lock()
        self.violations = []
        self.counts = {}
        self.t0 = time.monotonic()

    def now(self):
        return time.monotonic() - self.t0

    def violation(self, text):
        with self.lock:
            if len(self.violations) < 2000:
                self.violations.append("%8.1fs %s" % (self.now(), text))
            self.counts["violations"] = self.counts.get("violations", 0) + 1

    def count(self, name, n=1):
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n


class Replica:
    def __init__(self, name, role, argv, ready_url, workdir, env=None):
        self.name, self.role, self.argv, self.ready_url = name, role, argv, ready_url
        self.workdir, self.env = workdir, env
        self.proc = None
        self.incarnation = 0
        self.windows = []  # [start, end or None] in Record time
        self.exits = []  # (signal name, exit code, seconds to exit)
        self.samples = []  # (t, incarnation, rss_kib, fds, threads)
        self.lock = threading.Lock()
        self.first_argv = None  # the very first start may differ (bootstrap)

    def start(self, rec, argv=None):
        self.incarnation += 1
        log = open(os.path.join(self.workdir, "%s.%d.log" % (self.name, self.incarnation)), "w")
        out = open(os.path.join(self.workdir, "%s.%d.stdout" % (self.name, self.incarnation)), "w")
        env = dict(os.environ, RUST_LOG=os.environ.get("SOAK_RUST_LOG", "warn"), **(self.env or {}))
        with self.lock:
            self.proc = subprocess.Popen(argv or self.argv, stdout=out, stderr=log, env=env)
        log.close()
        out.close()
        self.wait_ready(rec)

    def wait_ready(self, rec, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited at start with %s" % (self.name, self.proc.returncode))
            try:
                with urllib.request.urlopen(self.ready_url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s never became ready at %s" % (self.name, self.ready_url))

    def pid(self):
        with self.lock:
            p = self.proc
        return p.pid if p and p.poll() is None else None

    def stop(self, rec, sig, grace):
        """Sends SIG, waits for the exit (a SIGTERM must end in at most GRACE + 5 s with status
        0), and opens the restart window that `restart` closes."""
        with self.lock:
            self.windows.append([rec.now(), None])
            proc = self.proc
        t = time.monotonic()
        proc.send_signal(sig)
        try:
            code = proc.wait(timeout=grace + 5)
        except subprocess.TimeoutExpired:
            rec.violation("%s did not exit within %.0f s of %s" % (self.name, grace + 5, sig.name))
            proc.kill()
            code = proc.wait()
        took = time.monotonic() - t
        self.exits.append((sig.name, code, round(took, 2)))
        if sig == signal.SIGTERM and code != 0:
            rec.violation("%s exited with status %s after SIGTERM" % (self.name, code))

    def restart(self, rec, sig, grace, down):
        self.stop(rec, sig, grace)
        time.sleep(down)
        self.start(rec)
        with self.lock:
            self.windows[-1][1] = rec.now()

    def in_window(self, t):
        with self.lock:
            for start, end in self.windows:
                if start <= t and (end is None or t <= end + WINDOW_MARGIN):
                    return True
        return False

    def overlaps_window(self, a, b):
        with self.lock:
            for start, end in self.windows:
                end = float("inf") if end is None else end + WINDOW_MARGIN
                if a <= end and start <= b:
                    return True
        return False

    def sample(self, rec):
        pid = self.pid()
        if not pid:
            return
        try:
            rss = threads = None
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1])
                    elif line.startswith("Threads:"):
                        threads = int(line.split()[1])
            fds = len(os.listdir("/proc/%d/fd" % pid))
        except OSError:
            return
        self.samples.append((rec.now(), self.incarnation, rss, fds, threads))

    def terminate(self):
        with self.lock:
            p = self.proc
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def sampler(rec, replicas, stop, every):
    while not stop.wait(every):
        for r in replicas:
            r.sample(rec)


def schedule(replicas, duration, rounds):
    """Restart times: ROUNDS rounds, each restarting every replica in turn, spread between 10%
    and 70% of the run, so every replica's last life (at least 30% of the run) shows whether it
    stays flat. The middle round's first serve replica gets SIGKILL instead of SIGTERM."""
    events = []
    n = len(replicas) * rounds
    start, end = duration * 0.10, duration * 0.70
    step = (end - start) / max(1, n)
    kill_round = rounds // 2
    for k in range(n):
        rnd, idx = divmod(k, len(replicas))
        sig = signal.SIGKILL if (rnd == kill_round and idx == 0) else signal.SIGTERM
        events.append((start + k * step, replicas[idx], sig))
    return events


def chaos(rec, events, stop, grace, down, log):
    for at, replica, sig in events:
        while rec.now() < at:
            if stop.wait(min(0.5, at - rec.now())):
                return
        log("restart %s (%s)" % (replica.name, sig.name))
        try:
            replica.restart(rec, sig, grace, down)
        except RuntimeError as e:
            rec.violation(str(e))
            return
        log("%s ready again (incarnation %d)" % (replica.name, replica.incarnation))


def growth(replica, warm, window):
    """Growth of RSS, fds and threads over the replica's last life (median of the WINDOW seconds
    after WARM vs median of its last WINDOW seconds), and its warm level in the last life vs the
    first life. Returns a dict, or None when the last life was too short to judge."""
    import statistics

    if not replica.samples:
        return None
    last = replica.samples[-1][1]
    first = replica.samples[0][1]

    def life(inc):
        s = [x for x in replica.samples if x[1] == inc]
        return s

    def level(s, a, b, k):
        v = [x[k] for x in s if a <= x[0] - s[0][0] <= b]
        return statistics.median(v) if v else None

    out = {}
    s = life(last)
    span = s[-1][0] - s[0][0] if s else 0
    if span < warm + 2 * window:
        return None
    for k, name in ((2, "rss_kib"), (3, "fds"), (4, "threads")):
        base = level(s, warm, warm + window, k)
        end = level(s, span - window, span, k)
        out[name] = (base, end)
        f = life(first)
        if first != last and f and f[-1][0] - f[0][0] >= warm + window:
            out[name + "_first_life"] = level(f, warm, warm + window, k)
    out["life_seconds"] = round(span)
    return out
